// Package logd is hvmon's transparency log server: it accepts signed
// reports from allowlisted hosts, sequences them into a tlog-tiles log
// (docs/FORMAT.md §15) and answers each submission with a tlog-proof@v1
// once the entry is in a published checkpoint. It serves the log's
// checkpoint and tiles for verifiers and monitors.
//
// logd is the only hvmon package that links the log's storage (Tessera and
// its drivers); every reader of the log uses package tlog instead.
package logd
