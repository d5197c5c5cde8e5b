package host

import (
	"context"
	"crypto/sha3"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"hvmon.dev/hvmon/attest"
)

func TestFitText(t *testing.T) {
	for _, s := range []string{"", "plain text", "ünïcödé ✓", strings.Repeat("a", MaxObservedText)} {
		if got := fitText(s); got != s {
			t.Errorf("fitText(%.40q) = %.40q, want it unchanged", s, got)
		}
	}
	long := strings.Repeat("é", MaxObservedText) // 2 bytes a character
	sum := sha3.Sum256([]byte(long))
	got := fitText(long)
	if len(got) > MaxObservedText || !utf8.ValidString(got) || !strings.HasSuffix(got, fmt.Sprintf("… [truncated from %d bytes, sha3-256 %s]", len(long), hex.EncodeToString(sum[:]))) {
		t.Errorf("fitText(long) = %q", got)
	}
	if got := fitText("a\x00b\xffc\u202ed\n"); got != `a\x00b\xffc\u202ed\x0a [escaped from 10 bytes, sha3-256 `+hexSum("a\x00b\xffc\u202ed\n")+"]" {
		t.Errorf("fitText(controls) = %q", got)
	}
}

func hexSum(s string) string {
	h := sha3.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestFitFacts(t *testing.T) {
	facts := map[string]string{"": "empty name", "facts_dropped": "forged", "qmp_status": "running", "rejected_evidence_hash": "abc"}
	for i := range 200 {
		facts[fmt.Sprintf("api_%03d", i)] = strings.Repeat("v", 5000)
	}
	facts[strings.Repeat("n", 3000)] = "long name"
	got := fitFacts(facts)
	if len(got) != MaxObservedFacts {
		t.Fatalf("%d facts, want %d", len(got), MaxObservedFacts)
	}
	if got["qmp_status"] != "running" || got["rejected_evidence_hash"] != "abc" {
		t.Errorf("the host's own facts were not kept first: %v", got["qmp_status"])
	}
	note := got[factsDropped]
	if !strings.HasPrefix(note, "142 fact(s) dropped: ") || !strings.Contains(note, `""`) || strings.Contains(note, "forged") {
		t.Errorf("facts_dropped = %.200q", note)
	}
	for k, v := range got {
		if len(k) > MaxObservedText || len(v) > MaxObservedText || k == "" {
			t.Errorf("fact %.40q of %d bytes not fitted", k, len(v))
		}
	}
	// Exactly MaxObservedFacts facts all fit: nothing is dropped.
	exact := map[string]string{}
	for i := range MaxObservedFacts {
		exact[fmt.Sprint(i)] = "x"
	}
	if got := fitFacts(exact); len(got) != MaxObservedFacts || got[factsDropped] != "" {
		t.Errorf("64 facts: %d kept, note %q", len(got), got[factsDropped])
	}
}

// TestHostileFacts: API callers and QEMU bring facts; too many, too long
// or odd ones still give a stored report that verifies.
func TestHostileFacts(t *testing.T) {
	r := newRig(t)
	facts := map[string]string{}
	for i := range 500 {
		facts[fmt.Sprintf("k%d\x1b[1m", i)] = strings.Repeat("\xff", 2000)
	}
	e, err := r.sup.Attest(context.Background(), "vm-1", attest.EventOnDemand, facts)
	if err != nil {
		t.Fatal(err)
	}
	res := r.verify(e)
	checkFits(t, res.Report.Host)
	if res.Guest == nil || res.Report.Host.Facts[factsDropped] == "" {
		t.Fatalf("guest evidence %v, facts_dropped %q", res.Guest != nil, res.Report.Host.Facts[factsDropped])
	}
}

// TestHostileIdentifiers: a fake QEMU names a snapshot job with an id of
// 100,000 bytes of odd characters; the snapshot report is stored and
// verifies, its job_id fact truncated with the original's digest.
func TestHostileIdentifiers(t *testing.T) {
	r := newRig(t)
	id := strings.Repeat("job/../\x00é\u202e", 10000)
	r.mu.Lock()
	r.jobs[id] = "snapshot-save"
	for i := range 5000 { // and endless other jobs, which the worker does not hoard
		r.jobs[fmt.Sprintf("backup-%d", i)] = "backup"
	}
	r.mu.Unlock()
	r.qemu.Inject("JOB_STATUS_CHANGE", map[string]any{"id": id, "status": "created"})
	r.qemu.Inject("JOB_STATUS_CHANGE", map[string]any{"id": id, "status": "concluded"})
	es := r.waitReports(1)
	res := r.verify(es[0])
	if es[0].Event != attest.EventSnapshot {
		t.Fatalf("event %s, want snapshot", es[0].Event)
	}
	checkFits(t, res.Report.Host)
	if j := res.Report.Host.Facts["job_id"]; !strings.Contains(j, "truncated from "+fmt.Sprint(len(id))+" bytes, sha3-256 "+hexSum(id)) {
		t.Errorf("job_id = %.80q…", j)
	}
	// A request through the worker's loop orders its earlier writes before
	// this read.
	if _, err := r.sup.Attest(context.Background(), "vm-1", attest.EventOnDemand, nil); err != nil {
		t.Fatal(err)
	}
	r.sup.mu.Lock()
	v := r.sup.vms["vm-1"]
	r.sup.mu.Unlock()
	if n := len(v.lc.(*qmpLifecycle).jobs); n > maxJobs+1 {
		t.Errorf("the worker remembers %d jobs, more than %d", n, maxJobs+1)
	}
}

func FuzzFitText(f *testing.F) {
	for _, s := range []string{"", "ok", "a\x00\x1b[31m\u202e\xff", strings.Repeat("é", 600), strings.Repeat("x", 1025)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := fitText(s)
		if len(got) > MaxObservedText || !utf8.ValidString(got) || strings.ContainsFunc(got, unsafeRune) {
			t.Fatalf("fitText(%q) = %q: not fitted", s, got)
		}
		if (got == s) != (len(s) <= MaxObservedText && utf8.ValidString(s) && !strings.ContainsFunc(s, unsafeRune)) {
			t.Fatalf("fitText(%q) = %q: changed a fitting text, or kept one that does not fit", s, got)
		}
		// What the host signs is what the format accepts.
		b, _ := json.Marshal(got)
		var back string
		if json.Unmarshal(b, &back) != nil || back != got {
			t.Fatalf("fitted text does not round-trip")
		}
	})
}

// TestMetricsBounded: QMP event names and region ids are chosen by QEMU
// and the guest; inventing new ones without end adds no series past the
// bounds, and names that are not QEMU's are counted as "other".
func TestMetricsBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	for i := range 5000 {
		m.event("vm-1", fmt.Sprintf("EVENT_%d", i))
		m.event("vm-1", strings.Repeat("x", 10000)+fmt.Sprint(i))
		m.regionChanged("vm-1", fmt.Sprintf("r%d", i))
	}
	if n := testutil.CollectAndCount(m.events); n > maxEventLabels+1 {
		t.Errorf("%d event series, want at most %d", n, maxEventLabels+1)
	}
	if n := testutil.CollectAndCount(m.changes); n > maxRegionLabels+1 {
		t.Errorf("%d region series, want at most %d", n, maxRegionLabels+1)
	}
	if got := testutil.ToFloat64(m.events.WithLabelValues("vm-1", "other")); got != 5000+5000-maxEventLabels {
		t.Errorf("other = %v", got)
	}
}
