// Package integration will hold the tests that run hvmon against a real
// QEMU and a real libvirtd; the README's test command installs what they
// need. The file-based flow is covered today by cmd/hvmon's script tests
// and scripts/demo-files.sh.
package integration
