// Package integration holds the tests that run hvmon against real QEMU
// VMs (build tag "integration"): the agent in a guest, the lifecycle the
// demo shows, faults, latency, migration downtime, a 300-VM storm and a
// kill -9 of the daemon in the middle of one. The
// README's test command (make test) installs what they need and runs them.
package integration
