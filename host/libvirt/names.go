// Package libvirt follows libvirt domains for the host supervisor: it
// discovers domains that carry hvmon's agent channel, feeds their
// lifecycle events and QEMU monitor events to the supervisor, and passes
// the supervisor's QMP commands through libvirt (QemuMonitorCommand), so a
// supervised VM works the same whether hvmon or libvirt owns its QMP
// socket.
//
// The watcher needs cgo and libvirt's client library (Debian: libvirt-dev
// to build, libvirt0 to run). The domain XML helpers and event names in
// this file and domain.go are pure Go.
package libvirt

import "fmt"

// Lifecycle event and detail names, indexed by libvirt's enum values
// (virDomainEventType and its virDomainEvent*DetailType enums, which are
// part of libvirt's stable ABI).
var (
	eventNames = []string{"defined", "undefined", "started", "suspended", "resumed", "stopped", "shutdown", "pmsuspended", "crashed"}

	detailNames = map[string][]string{
		"defined":     {"added", "updated", "renamed", "from_snapshot"},
		"undefined":   {"removed", "renamed"},
		"started":     {"booted", "migrated", "restored", "from_snapshot", "wakeup", "recreated"},
		"suspended":   {"paused", "migrated", "ioerror", "watchdog", "restored", "from_snapshot", "api_error", "postcopy", "postcopy_failed", "guest_shutdown"},
		"resumed":     {"unpaused", "migrated", "from_snapshot", "postcopy", "postcopy_failed"},
		"stopped":     {"shutdown", "destroyed", "crashed", "migrated", "saved", "failed", "from_snapshot", "recreated"},
		"shutdown":    {"finished", "guest", "host"},
		"pmsuspended": {"memory", "disk"},
		"crashed":     {"panicked", "crashloaded"},
	}

	stateNames = []string{"nostate", "running", "blocked", "paused", "shutdown", "shutoff", "crashed", "pmsuspended"}
)

// LifecycleNames returns libvirt's names for a lifecycle event and its
// detail; values libvirt added after this table read "event-N"/"detail-N".
func LifecycleNames(event, detail int) (string, string) {
	e := fmt.Sprintf("event-%d", event)
	if event >= 0 && event < len(eventNames) {
		e = eventNames[event]
	}
	d := fmt.Sprintf("detail-%d", detail)
	if ds := detailNames[e]; detail >= 0 && detail < len(ds) {
		d = ds[detail]
	}
	return e, d
}

// StateName returns libvirt's name for a domain state (virDomainState).
func StateName(state int) string {
	if state >= 0 && state < len(stateNames) {
		return stateNames[state]
	}
	return fmt.Sprintf("state-%d", state)
}
