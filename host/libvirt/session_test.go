//go:build cgo

package libvirt

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	golibvirt "libvirt.org/go/libvirt"

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
