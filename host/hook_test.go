package host

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/hook"
	"hvmon.dev/hvmon/internal/boundedfile"
)

func testHookMessage(vm, op string, required bool) *hook.Message {
	return &hook.Message{
		Driver: "qemu", Args: hook.Args{Object: vm, Op: op, SubOp: "begin", Extra: "-"},
		Domain:  hook.Domain{Name: vm, UUID: "4dea22b3-1d52-d8f3-2516-782e98ab3fa0", AttestationRequired: required},
		XMLSHA3: strings.Repeat("ab", 32), XMLSize: 3000,
	}
}

func TestHookJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hooks.jsonl")
	j, err := OpenHookJournal(path, HookJournalOptions{Keep: 3, PendingPerVM: 2})
	if err != nil {
		t.Fatal(err)
	}
	at := testNow
	for i, c := range []struct{ vm, op string }{{"a", "prepare"}, {"a", "start"}, {"b", "start"}, {"a", "started"}} {
		ev, err := j.Record(HookEvent{Received: at.Add(time.Duration(i) * time.Second), Message: *testHookMessage(c.vm, c.op, false), HookDecision: HookDecision{Allow: true}})
		if err != nil || ev.Seq != uint64(i+1) {
			t.Fatalf("Record #%d = seq %d, %v", i, ev.Seq, err)
		}
	}
	// Memory keeps the newest 3; the file keeps all.
	if l := j.List("", 0); len(l) != 3 || l[0].Seq != 2 || l[2].Seq != 4 {
		t.Fatalf("List(all) = %+v", l)
	}
	if l := j.List("a", 1); len(l) != 1 || l[0].Op != "started" {
		t.Fatalf("List(a, 1) = %+v", l)
	}
	// Pending holds at most 2 per VM, the newest, and hands them out once.
	if p := j.Pending("a", ""); len(p) != 2 || p[0].Op != "start" || p[1].Op != "started" {
		t.Fatalf("Pending(a) = %+v", p)
	}
	if p := j.Pending("a", ""); len(p) != 0 {
		t.Fatalf("second Pending(a) = %+v, want none", p)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Record(HookEvent{Message: *testHookMessage("a", "start", false)}); err == nil {
		t.Fatal("Record after Close succeeded")
	}

	// A crash in the middle of an append leaves a partial line: it is cut
	// away at open and the sequence goes on.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"seq":5,"received":"2026-11`)
	f.Close()
	j, err = OpenHookJournal(path, HookJournalOptions{})
	if err != nil {
		t.Fatalf("reopen after a partial line: %v", err)
	}
	l := j.List("", 0)
	if len(l) != 4 || l[0].Op != "prepare" || !l[0].Received.Equal(at) || l[3].Domain.UUID == "" || !l[3].Allow {
		t.Fatalf("read back %+v", l)
	}
	if p := j.Pending("b", ""); len(p) != 0 {
		t.Errorf("events read back are pending: %+v", p)
	}
	ev, err := j.Record(HookEvent{Message: *testHookMessage("b", "release", false)})
	if err != nil || ev.Seq != 5 {
		t.Fatalf("Record after reopen = seq %d, %v; want 5", ev.Seq, err)
	}
	j.Close()
	b, _ := os.ReadFile(path)
	if n := bytes.Count(b, []byte("\n")); n != 5 || b[len(b)-1] != '\n' {
		t.Fatalf("journal has %d lines:\n%s", n, b)
	}

	// A damaged line that is not the last one is skipped and logged, and
	// stays in the file: the events around it are read back, the daemon
	// starts, and the sequence goes on after the highest.
	bad := filepath.Join(t.TempDir(), "hooks.jsonl")
	damaged := append([]byte("not json\n"+strings.Repeat("x", 3*maxJournalLine)+"\n"), b...)
	os.WriteFile(bad, damaged, 0o600)
	var logged bytes.Buffer
	j, err = OpenHookJournal(bad, HookJournalOptions{Logger: hclog.New(&hclog.LoggerOptions{Output: &logged})})
	if err != nil {
		t.Fatalf("OpenHookJournal(damaged) = %v", err)
	}
	if n := j.Skipped(); n != 2 || !strings.Contains(logged.String(), "line=1") || !strings.Contains(logged.String(), "line=2") {
		t.Errorf("skipped %d lines, logged:\n%s", n, logged.String())
	}
	if l := j.List("", 0); len(l) != 5 {
		t.Errorf("read back %d events after the damage, want 5", len(l))
	}
	if ev, err := j.Record(HookEvent{Message: *testHookMessage("b", "release", false)}); err != nil || ev.Seq != 6 {
		t.Errorf("Record after damage = seq %d, %v; want 6", ev.Seq, err)
	}
	j.Close()
	if after, _ := os.ReadFile(bad); !bytes.HasPrefix(after, damaged) {
		t.Error("the damaged journal was changed, not only appended to")
	}
	// Sequence numbers must grow: a repeated one is skipped too.
	os.WriteFile(bad, []byte("{\"seq\":2}\n{\"seq\":2}\n"), 0o600)
	if j, err := OpenHookJournal(bad, HookJournalOptions{}); err != nil || j.Skipped() != 1 {
		t.Errorf("OpenHookJournal(repeated seq) = %v, want one line skipped", err)
	} else {
		j.Close()
	}
	// A journal that is not a regular file is refused, at once.
	fifo := filepath.Join(t.TempDir(), "hooks.jsonl")
	syscall.Mkfifo(fifo, 0o600)
	if _, err := OpenHookJournal(fifo, HookJournalOptions{}); !errors.Is(err, boundedfile.ErrNotRegular) {
		t.Errorf("OpenHookJournal(a FIFO) = %v", err)
	}
}

// testGuest returns guest evidence without hardware evidence, signed by a
// fresh guest key, for a report on vm at at.
func testGuest(t *testing.T, vm string, ev attest.Event, nonce []byte, at time.Time) []byte {
	t.Helper()
	gk, err := attest.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	g := &attest.GuestEvidence{IssuedAt: at, Nonce: nonce, Event: ev, VM: vm, Platform: "none", GuestKey: gk.PublicKey().Bytes(),
		Claims: []attest.Claim{{Region: attest.Region{ID: "weights", Size: 4096}, Workload: vm, Platform: "none",
			Snapshot: attest.Snapshot{RegionID: "weights", Root: attest.Digest{1}, Size: 4096, TakenAt: at, PageSize: 4096}}}}
	b, err := attest.SignGuestEvidence(gk, g, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHookAPI(t *testing.T) {
	dir := t.TempDir()
	store, err := NewFileStore(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	own, _ := attest.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	peer, _ := attest.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))
	rogue, _ := attest.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))
	ctx := context.Background()
	put := func(k *attest.PrivateKey, vm string, mutate func(*attest.Report)) {
		t.Helper()
		_, r := testSigned(t, k, vm, 0, attest.EventMigrateOut, testNow)
		if mutate != nil {
			mutate(r)
		}
		b, err := attest.Sign(k, r, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.Put(ctx, vm, b, r); err != nil {
			t.Fatal(err)
		}
	}
	withGuest := func(r *attest.Report) { r.Guest = testGuest(t, r.Workload, r.Event, r.Nonce, r.IssuedAt) }
	put(own, "own", withGuest)
	put(peer, "peer", withGuest)
	put(rogue, "rogue", withGuest)
	put(own, "no-agent", func(r *attest.Report) { r.Host.Agent = "unavailable" })
	// Claims the signer made itself, on no TEE: they verify, but they are
	// not the guest's.
	put(own, "signer-claims", func(r *attest.Report) {
		r.Platform = "none"
		r.Claims = []attest.Claim{{Region: attest.Region{ID: "weights", Size: 4096}, Workload: r.Workload, Platform: "none",
			Snapshot: attest.Snapshot{RegionID: "weights", Root: attest.Digest{1}, Size: 4096, TakenAt: r.IssuedAt, PageSize: 4096}}}
	})
	put(own, "refused", func(r *attest.Report) { r.Host.Agent, r.Host.Detail = "bad-evidence", "no chain to a pinned root" })
	// An older verifying report does not excuse a newer one that does not verify.
	put(own, "newest-bad", withGuest)
	_, r := testSigned(t, rogue, "newest-bad", 1, attest.EventMigrateOut, testNow.Add(time.Minute))
	withGuest(r)
	b, _ := attest.Sign(rogue, r, nil)
	store.Put(ctx, "newest-bad", b, r)

	j, err := OpenHookJournal(filepath.Join(dir, "data", "hooks.jsonl"), HookJournalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	reg := prometheus.NewRegistry()
	var (
		mu   sync.Mutex
		seen []HookEvent // OnEvent runs in the handler, before the answer
	)
	hooks, err := NewHookService(HookOptions{Journal: j, Store: store, TrustedKeys: []*attest.PublicKey{own.PublicKey(), peer.PublicKey()}, Registerer: reg,
		OnEvent: func(ev HookEvent) { mu.Lock(); seen = append(seen, ev); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	sup, err := New(Options{Signer: own, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Close()
	sock := filepath.Join(dir, "api.sock")
	ln, err := ListenAPI(sock, "")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: APIHandler(sup, store, nil, hooks.Routes)}
	go srv.Serve(ln)
	defer srv.Close()
	c := NewAPIClient(sock)

	for _, tc := range []struct {
		vm, op   string
		required bool
		allow    bool
		reason   string
	}{
		{"own", "prepare", true, true, ""},
		{"unknown", "start", true, true, ""}, // not gated by the daemon: only migrate is
		{"own", "migrate", false, true, "verifies under key " + own.KeyID().String()},
		{"own", "migrate", true, true, "verifies under key " + own.KeyID().String()},
		{"peer", "migrate", true, true, "verifies under key " + peer.KeyID().String()},
		{"rogue", "migrate", false, false, "does not verify: signing key is not trusted"},
		{"no-agent", "migrate", false, false, "does not verify: incomplete report"},
		{"signer-claims", "migrate", false, true, "verifies"},
		{"signer-claims", "migrate", true, false, "carries no guest evidence (agent ok) and the domain requires attestation"},
		{"refused", "migrate", false, false, "the host refused the guest's evidence: no chain to a pinned root"},
		{"newest-bad", "migrate", false, false, "seq 1"},
		{"unknown", "migrate", false, false, `no stored report for "unknown"`},
	} {
		d, err := c.Hook(ctx, testHookMessage(tc.vm, tc.op, tc.required))
		if err != nil {
			t.Fatalf("Hook(%s %s) = %v", tc.vm, tc.op, err)
		}
		if d.Allow != tc.allow || !strings.Contains(d.Reason, tc.reason) || d.Seq == 0 {
			t.Errorf("Hook(%s %s, required %v) = %+v, want allow %v with reason containing %q", tc.vm, tc.op, tc.required, d, tc.allow, tc.reason)
		}
	}

	// The daemon's record.
	evs, err := c.Hooks(ctx, "own", 0)
	if err != nil || len(evs) != 3 || evs[0].Op != "prepare" || evs[1].Op != "migrate" || !evs[2].Allow || evs[2].Reason == "" || evs[2].XMLSHA3 != strings.Repeat("ab", 32) {
		t.Fatalf("Hooks(own) = %+v, %v", evs, err)
	}
	if evs, _ := c.Hooks(ctx, "", 2); len(evs) != 2 || evs[1].VM() != "unknown" {
		t.Errorf("Hooks(all, 2) = %+v", evs)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != len(j.List("", 0)) || seen[0].Seq != 1 || seen[0].VM() != "own" {
		t.Errorf("OnEvent saw %d events (first %+v), the journal holds %d", len(seen), seen[0], len(j.List("", 0)))
	}
	if p := j.Pending("own", ""); len(p) != 3 {
		t.Errorf("Pending(own) = %d events, want 3", len(p))
	}
	if n := testutil.ToFloat64(hooksCounter(t, hooks, "rogue", "migrate", "deny")); n != 1 {
		t.Errorf("hvmon_hook_events_total{rogue,migrate,deny} = %v, want 1", n)
	}
	if n := testutil.ToFloat64(hooksCounter(t, hooks, "own", "prepare", "allow")); n != 1 {
		t.Errorf("hvmon_hook_events_total{own,prepare,allow} = %v, want 1", n)
	}

	// Malformed events are refused with 400 and not recorded.
	before := len(j.List("", 0))
	for name, mutate := range map[string]func(*hook.Message){
		"network driver": func(m *hook.Message) { m.Driver = "network" },
		"unknown op":     func(m *hook.Message) { m.Op = "explode" },
		"name mismatch":  func(m *hook.Message) { m.Domain.Name = "other" },
		"bad digest":     func(m *hook.Message) { m.XMLSHA3 = "abc" },
		"no size":        func(m *hook.Message) { m.XMLSize = 0 },
		"empty extra":    func(m *hook.Message) { m.Extra = "" },
	} {
		m := testHookMessage("own", "start", false)
		mutate(m)
		if _, err := c.Hook(ctx, m); err == nil || !strings.Contains(err.Error(), "HTTP 400") {
			t.Errorf("%s: Hook = %v, want HTTP 400", name, err)
		}
	}
	var out HookDecision
	if err := c.do(ctx, http.MethodPost, "/v1/hook", map[string]any{"driver": "qemu", "bogus": 1}, &out); err == nil {
		t.Error("an unknown field was accepted")
	}
	if after := len(j.List("", 0)); after != before {
		t.Errorf("refused events were recorded: %d -> %d", before, after)
	}
}

func hooksCounter(t *testing.T, h *HookService, labels ...string) prometheus.Collector {
	t.Helper()
	c, err := h.events.GetMetricWithLabelValues(labels...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestHookJournalWriteFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hooks.jsonl")
	j, err := OpenHookJournal(path, HookJournalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	j.f.Close() // the file goes bad under the journal
	if _, err := j.Record(HookEvent{Message: *testHookMessage("a", "start", false)}); err == nil || errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Record on a closed file = %v, want a write error", err)
	}
	if l := j.List("", 0); len(l) != 0 {
		t.Errorf("an event that was not written is listed: %+v", l)
	}
}

func TestConfigTrustPeers(t *testing.T) {
	c, err := ParseConfig([]byte("key = \"/k\"\ntrust_peers = [\"/etc/hvmon/peers/b.pub\", \"/etc/hvmon/peers/c.pub\"]\n"), "t.hcl")
	if err != nil || len(c.TrustPeers) != 2 || c.TrustPeers[1] != "/etc/hvmon/peers/c.pub" {
		t.Fatalf("ParseConfig(trust_peers) = %+v, %v", c, err)
	}
}

// TestHookJournalPendingByUUID: a domain is known by its UUID too: a new
// domain defined under an old name does not inherit the old one's hook
// events, in a report (Pending with its UUID) or by name alone.
func TestHookJournalPendingByUUID(t *testing.T) {
	j, err := OpenHookJournal(filepath.Join(t.TempDir(), "hooks.jsonl"), HookJournalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	record := func(uuid, op string) {
		m := testHookMessage("web", op, false)
		m.Domain.UUID = uuid
		if _, err := j.Record(HookEvent{Received: testNow, Message: *m, HookDecision: HookDecision{Allow: true}}); err != nil {
			t.Fatal(err)
		}
	}
	const old, fresh = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
	record(old, "prepare")
	record(old, "release")
	// The old domain is gone; a new one takes its name.
	record(fresh, "prepare")
	record(fresh, "start")
	if p := j.Pending("web", fresh); len(p) != 2 || p[0].Domain.UUID != fresh || p[1].Domain.UUID != fresh {
		t.Fatalf("Pending(web, new UUID) = %+v", p)
	}
	record(fresh, "started")
	if p := j.Pending("web", strings.ToUpper(old)); len(p) != 0 {
		t.Errorf("Pending(web, old UUID) = %+v: another domain's events", p)
	}
	record(old, "started")
	record(fresh, "stopped")
	if p := j.Pending("web", ""); len(p) != 1 || p[0].Op != "stopped" {
		t.Errorf("Pending(web) after the name changed hands = %+v", p)
	}
}

// TestHookJournalRotation: past MaxSize the file moves aside (path.1,
// path.2, ... up to Rotated, the oldest dropped) and a new one starts;
// numbering goes on across rotations and restarts, also when the restart
// finds the new file still empty.
func TestHookJournalRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hooks.jsonl")
	opts := HookJournalOptions{MaxSize: 2000, Rotated: 2}
	j, err := OpenHookJournal(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	record := func(j *HookJournal) uint64 {
		ev, err := j.Record(HookEvent{Received: testNow, Message: *testHookMessage("vm-1", "start", false), HookDecision: HookDecision{Allow: true}})
		if err != nil {
			t.Fatal(err)
		}
		return ev.Seq
	}
	var last uint64
	for range 40 {
		last = record(j)
	}
	for _, p := range []string{path, path + ".1", path + ".2"} {
		st, err := os.Stat(p)
		if err != nil || st.Size() > opts.MaxSize+int64(maxJournalLine) {
			t.Errorf("%s: %v", p, err)
		}
	}
	if _, err := os.Stat(path + ".3"); !os.IsNotExist(err) {
		t.Errorf("%s.3 kept beyond Rotated: %v", path, err)
	}
	// Rotate until the live file is empty, then restart: seq goes on.
	for {
		st, _ := os.Stat(path)
		if st.Size() == 0 {
			break
		}
		last = record(j)
	}
	j.Close()
	j2, err := OpenHookJournal(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	if got := record(j2); got != last+1 {
		t.Errorf("seq after a restart on a just-rotated journal = %d, want %d", got, last+1)
	}
}
