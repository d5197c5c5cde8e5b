// Package host will hold the host supervisor (hvmon daemon): the VM
// registry, the lifecycle state machine, report assembly around guest
// evidence, the durable report store and the local API. It is not written
// yet; see docs/ARCHITECTURE.md.
package host
