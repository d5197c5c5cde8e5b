// Package qmp will hold hvmon's QMP client: go-qemu's qmp.Monitor interface
// on a transport with replies matched by id, contexts on every call, a
// non-blocking event queue and reconnection, plus typed helpers for the
// commands hvmon needs. It is not written yet; see docs/ARCHITECTURE.md.
package qmp
