//go:build cgo

package libvirt

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	golibvirt "libvirt.org/go/libvirt"

	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/internal/dropq"
	"hvmon.dev/hvmon/qmp"
)

// TestStreamMessagesFit: what a stream writes never exceeds
// qmp.MaxMessageSize, which the worker's client would answer by dropping
// the stream: a reply too large becomes an error for its command, an event
// too large an EventDropped; an event's oversize details are not kept.
func TestStreamMessagesFit(t *testing.T) {
	huge := strings.Repeat("x", qmp.MaxMessageSize)
	id := json.RawMessage(`"hvmon-7"`)
	reply := map[string]any{"return": huge, "id": id}
	b, _ := json.Marshal(reply)
	var got struct {
		ID    json.RawMessage `json:"id"`
		Error struct{ Class, Desc string }
	}
	if err := json.Unmarshal(fitMessage(reply, b), &got); err != nil || string(got.ID) != string(id) || got.Error.Class != "GenericError" {
		t.Fatalf("oversize reply became %+v, %v", got, err)
	}
	ev := newEvent("BIG", map[string]any{"s": huge}, time.Now())
	b, _ = json.Marshal(ev)
	var e qmp.Event
	if err := json.Unmarshal(fitMessage(ev, b), &e); err != nil || e.Event != qmp.EventDropped {
		t.Fatalf("oversize event became %+v, %v", e, err)
	}
	small := newEvent("STOP", nil, time.Now())
	b, _ = json.Marshal(small)
	if string(fitMessage(small, b)) != string(b) {
		t.Error("a small event changed")
	}
	m := monitorEvent(&golibvirt.DomainQemuMonitorEvent{Event: "X", Details: `{"s":"` + strings.Repeat("y", maxEventDetails) + `"}`})
	if m.Data["hvmon_oversize"] == nil || m.Data["s"] != nil {
		t.Errorf("oversize details kept: %v keys", len(m.Data))
	}
}

// TestDeliverOrder: a stream gets the events queued while none was
// connected before the description of the domain as it is now, so a
// snapshot revert made while the stream reconnected is not described
// before its own stop (which the lifecycle machine would take for an
// unobserved shutdown); a "started" event comes after a description; an
// event whose write fails is the next stream's first.
func TestDeliverOrder(t *testing.T) {
	s := &session{queue: dropq.New[event](16)}
	for _, e := range []event{
		lifecycleEvent("stopped", "from_snapshot"),
		lifecycleEvent("started", "from_snapshot"),
		lifecycleEvent("resumed", "from_snapshot"),
	} {
		s.push(e)
	}
	var got []string
	descriptions := 0
	describe := func() event {
		descriptions++
		return newEvent(host.EventLibvirtDomain, map[string]any{"n": descriptions}, time.Now())
	}
	name := func(v any) string {
		e := v.(event)
		if e.Event == host.EventLibvirtDomain {
			return fmt.Sprintf("describe#%v", e.Data["n"])
		}
		return e.Data["event"].(string)
	}
	done := make(chan struct{})
	close(done)
	s.deliver(func(v any) error { got = append(got, name(v)); return nil }, describe, done)
	want := "stopped describe#1 started resumed describe#2"
	if strings.Join(got, " ") != want {
		t.Fatalf("delivered %q, want %q", strings.Join(got, " "), want)
	}

	// A stream that breaks on its second write: the event it could not
	// take leads the next stream, which then describes the domain.
	s.push(lifecycleEvent("suspended", "paused"))
	s.push(lifecycleEvent("resumed", "unpaused"))
	got = nil
	writes := 0
	s.deliver(func(v any) error {
		if writes++; writes == 2 {
			return errors.New("pipe closed")
		}
		got = append(got, name(v))
		return nil
	}, describe, done)
	if strings.Join(got, " ") != "suspended" {
		t.Fatalf("broken stream delivered %q", strings.Join(got, " "))
	}
	got = nil
	s.deliver(func(v any) error { got = append(got, name(v)); return nil }, describe, done)
	if want := "resumed describe#3"; strings.Join(got, " ") != want {
		t.Fatalf("next stream delivered %q, want %q", strings.Join(got, " "), want)
	}
}
