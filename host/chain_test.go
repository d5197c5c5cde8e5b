package host

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/policy"
	"hvmon.dev/hvmon/qmp/qmptest"
)

// testClock is a clock a test sets and steps.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// auditStore verifies every report in the store as of its own issued-at
// under keys, and audits them as one history, as hvmon log verify does.
func auditStore(t *testing.T, s *FileStore, keys ...*attest.PrivateKey) *policy.ChainAudit {
	t.Helper()
	var pubs []*attest.PublicKey
	for _, k := range keys {
		pubs = append(pubs, k.PublicKey())
	}
	es, err := s.List(context.Background(), Query{})
	if err != nil {
		t.Fatal(err)
	}
	var in []policy.ChainReport
	for _, e := range es {
		b, err := s.read(e)
		if err != nil {
			t.Fatal(err)
		}
		res, err := attest.Verify(b, attest.VerifyOptions{TrustedKeys: pubs, Now: e.Time})
		in = append(in, policy.ChainReport{Name: filepath.Base(e.Path), Result: res, Err: err})
	}
	return policy.AuditChain(in)
}

func contraindications(a *policy.ChainAudit) string {
	var b strings.Builder
	for _, f := range a.Findings {
		if f.Status == policy.Contraindicated {
			fmt.Fprintf(&b, "  %s %s %s: %s\n", f.Check, f.Reason, f.Subject, f.Detail)
		}
	}
	return b.String()
}

// A host whose clock steps back, then restarts, continues its chain from
// the report with the highest seq, not from the newest file-name time: no
// seq is signed twice, and prev names the true last report.
func TestSupervisorResumesAfterClockStepBack(t *testing.T) {
	clock := &testClock{t: testNow}
	r := newRigOpts(t, func(c *VMConfig) { c.Agent = "" }, func(o *Options) { o.Now = clock.Now })
	ctx := context.Background()
	attestAt := func(at time.Time) Entry {
		t.Helper()
		clock.Set(at)
		e, err := r.sup.Attest(ctx, "vm-1", attest.EventOnDemand, nil)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	for i := range 3 {
		attestAt(testNow.Add(time.Duration(i) * time.Second))
	}
	// The clock steps back an hour; the running supervisor carries on.
	last := attestAt(testNow.Add(-time.Hour))
	if last.Seq != 3 {
		t.Fatalf("after the step: seq %d, want 3", last.Seq)
	}
	// The daemon restarts, its clock still behind the first reports.
	r.sup.Close()
	r.start()
	next := attestAt(testNow.Add(-time.Hour + time.Second))
	res := r.verify(next)
	if next.Seq != 4 || res.Report.Prev == nil || *res.Report.Prev != last.Hash {
		t.Fatalf("after the restart: seq %d, prev %v; want seq 4 after %s", next.Seq, res.Report.Prev, last.Hash)
	}
	es, _ := r.store.List(ctx, Query{VM: "vm-1"})
	seen := map[uint64]bool{}
	for _, e := range es {
		if seen[e.Seq] {
			t.Errorf("seq %d signed twice", e.Seq)
		}
		seen[e.Seq] = true
	}
	if a := auditStore(t, r.store, r.key); a.Status == policy.Contraindicated {
		t.Errorf("the audit of the store is contraindicated:\n%s", contraindications(a))
	}
}

// sharedHost is one host of TestSupervisorSharedStoreTwoHosts: its own
// key, name and QEMU, the store it shares.
type sharedHost struct {
	t    *testing.T
	name string
	key  *attest.PrivateKey
	qemu *qmptest.Server
	sup  *Supervisor
}

func (h *sharedHost) start(store Store) {
	sup, err := New(Options{Signer: h.key, HostName: h.name, Store: store})
	if err != nil {
		h.t.Fatal(err)
	}
	h.sup = sup
	h.t.Cleanup(sup.Close)
}

func (h *sharedHost) add(agent string) {
	if err := h.sup.Add(context.Background(), VMConfig{Name: "vm-1", QMP: h.qemu.Path, Agent: agent}); err != nil {
		h.t.Fatal(err)
	}
	waitFor(h.t, func() bool { v := h.sup.VMs(); return len(v) == 1 && v[0].Connected })
}

func (h *sharedHost) attest(events ...attest.Event) {
	for _, ev := range events {
		if _, err := h.sup.Attest(context.Background(), "vm-1", ev, nil); err != nil {
			h.t.Fatalf("%s: %s: %v", h.name, ev, err)
		}
	}
}

// Two hosts share one store and follow one VM in turn, migrating it back
// and forth (the guest, its agent and its chain travel; each host's daemon
// takes the VM up when it arrives and lets it go when it leaves, once
// through a daemon restart). Each host continues its own chain, and the
// chain audit of the whole store affirms.
func TestSupervisorSharedStoreTwoHosts(t *testing.T) {
	dir, err := os.MkdirTemp("", "hvmon-shared")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	agent := newFakeAgent(t, dir)
	store, err := NewFileStore(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	var hosts []*sharedHost
	for i, name := range []string{"hv-a", "hv-b"} {
		qdir := filepath.Join(dir, name)
		os.Mkdir(qdir, 0o755)
		q, err := qmptest.New(qdir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(q.Close)
		key, _ := attest.NewKeyFromSeed(bytes.Repeat([]byte{byte(i + 1)}, 32))
		hosts = append(hosts, &sharedHost{t: t, name: name, key: key, qemu: q})
	}
	a, b := hosts[0], hosts[1]

	a.start(store)
	a.add(agent.Path)
	a.attest(attest.EventBoot, attest.EventPeriodic, attest.EventMigrateOut)
	a.sup.Remove("vm-1")

	b.start(store)
	b.add(agent.Path)
	b.attest(attest.EventMigrateIn, attest.EventPeriodic, attest.EventMigrateOut)
	b.sup.Close() // hv-b's daemon stops while the VM is away

	a.add(agent.Path) // the same daemon takes the VM up again
	a.attest(attest.EventMigrateIn, attest.EventPeriodic, attest.EventMigrateOut)
	a.sup.Remove("vm-1")

	b.start(store) // a restarted daemon
	b.add(agent.Path)
	b.attest(attest.EventMigrateIn, attest.EventShutdown)

	audit := auditStore(t, store, a.key, b.key)
	if audit.Status != policy.Affirming {
		t.Fatalf("the audit of the shared store is %s, want affirming:\n%s", audit.Status, contraindications(audit))
	}
	// Each host's chain counts from 0 by one, whatever the other signed.
	seqs := map[string][]uint64{}
	for _, e := range audit.VMs[0].Timeline {
		seqs[e.Host] = append(seqs[e.Host], e.Seq)
	}
	if got := fmt.Sprint(seqs); got != "map[hv-a:[0 1 2 3 4 5] hv-b:[0 1 2 3 4]]" {
		t.Errorf("host seqs in timeline order = %s", got)
	}
	handovers := 0
	for _, f := range audit.Findings {
		if f.Reason == policy.ReasonHandover && f.Status == policy.Affirming {
			handovers++
		}
	}
	if handovers != 3 {
		t.Errorf("%d proven handovers, want 3", handovers)
	}
}

// legacyName renames a stored report to the name hvmon gave it before
// names carried the chain tag.
func legacyName(t testing.TB, e Entry) {
	t.Helper()
	old := filepath.Join(filepath.Dir(e.Path), fmt.Sprintf("%013d-%020d-%s-%s.cose", e.Time.UnixMilli(), e.Seq, e.Event, e.Hash))
	if err := os.Rename(e.Path, old); err != nil {
		t.Fatal(err)
	}
}

// A store written before names carried the chain tag: List still parses
// the names (with no tag), and a supervisor finds the head of its own
// chain by reading the untagged reports above it.
func TestSupervisorResumesUntaggedStore(t *testing.T) {
	dir, err := os.MkdirTemp("", "hvmon-legacy")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	q, err := qmptest.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	store, _ := NewFileStore(filepath.Join(dir, "store"))
	own, _ := attest.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	peer, _ := attest.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))
	ctx := context.Background()
	put := func(k *attest.PrivateKey, host string, seq uint64, prev *attest.Digest, at time.Time) Entry {
		t.Helper()
		r := &attest.Report{IssuedAt: at, ExpiresAt: at.Add(time.Minute), Nonce: bytes.Repeat([]byte{1}, 32), Event: attest.EventOnDemand,
			Workload: "vm-1", Platform: "host", Attester: attest.Identity{Name: host}, Seq: seq, Prev: prev,
			Host: &attest.Observations{Host: host, EventAt: at, Agent: "none", Detail: "no agent"}}
		b, err := attest.Sign(k, r, nil)
		if err != nil {
			t.Fatal(err)
		}
		e, err := store.Put(ctx, "vm-1", b, r)
		if err != nil {
			t.Fatal(err)
		}
		legacyName(t, e)
		return e
	}
	// hv-a signs seq 0..2; hv-b, sharing the store, 0..4 after it.
	var prev *attest.Digest
	var head Entry
	for i := range 3 {
		head = put(own, "hv-a", uint64(i), prev, testNow.Add(time.Duration(i)*time.Second))
		prev = &head.Hash
	}
	prev = nil
	for i := range 5 {
		e := put(peer, "hv-b", uint64(i), prev, testNow.Add(time.Duration(10+i)*time.Second))
		prev = &e.Hash
	}
	es, _ := store.List(ctx, Query{VM: "vm-1"})
	if len(es) != 8 || es[0].Chain != "" || es[0].Seq != 0 || es[7].Seq != 4 {
		t.Fatalf("List of untagged names = %+v", es)
	}
	sup, _ := New(Options{Signer: own, HostName: "hv-a", Store: store})
	t.Cleanup(sup.Close)
	if err := sup.Add(ctx, VMConfig{Name: "vm-1", QMP: q.Path}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { v := sup.VMs(); return len(v) == 1 && v[0].Connected })
	e, err := sup.Attest(ctx, "vm-1", attest.EventOnDemand, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := store.Get(ctx, e.Hash)
	in, _ := attest.Inspect(b)
	if e.Seq != 3 || in.Report.Prev == nil || *in.Report.Prev != head.Hash || e.Chain != ChainTag(own.KeyID(), "hv-a") {
		t.Fatalf("resumed at seq %d prev %v chain %q; want seq 3 after %s, tagged", e.Seq, in.Report.Prev, e.Chain, head.Hash)
	}
	if a := auditStore(t, store, own, peer); a.Status == policy.Contraindicated {
		t.Errorf("the audit of the store is contraindicated:\n%s", contraindications(a))
	}
}

// TestChainTagNames: the tag is in the name Put writes, List reads it
// back, and no event name passes for a tag.
func TestChainTagNames(t *testing.T) {
	s, _ := NewFileStore(t.TempDir())
	k, _ := attest.NewKeyFromSeed(make([]byte, 32))
	for _, ev := range attest.Events() {
		b, r := testSigned(t, k, "vm-1", 1, ev, testNow)
		e, err := s.Put(context.Background(), "vm-1", b, r)
		if err != nil {
			t.Fatal(err)
		}
		want := ChainTag(k.KeyID(), "h")
		if e.Chain != want || !strings.Contains(filepath.Base(e.Path), "-"+want+"-"+string(ev)+"-") {
			t.Errorf("Put(%s) = chain %q path %s, want chain %s in the name", ev, e.Chain, e.Path, want)
		}
		if isChainTag(string(ev)) || isChainTag(strings.SplitN(string(ev), "-", 2)[0]) {
			t.Errorf("event %s passes for a chain tag", ev)
		}
		legacyName(t, e)
	}
	es, _ := s.List(context.Background(), Query{})
	if len(es) != len(attest.Events()) {
		t.Fatalf("List = %d entries, want %d", len(es), len(attest.Events()))
	}
	for _, e := range es {
		if e.Chain != "" || !e.Event.Valid() {
			t.Errorf("untagged name read as chain %q event %q", e.Chain, e.Event)
		}
	}
	if ChainTag(k.KeyID(), "h") == ChainTag(k.KeyID(), "h2") || ChainTag(k.KeyID(), "h") == ChainTag(attest.Digest{}, "h") {
		t.Error("ChainTag does not tell key or host name apart")
	}
}

// BenchmarkChainHead measures what Supervisor.Add reads to find the head
// of its chain in a VM directory of n reports, beside the same run's
// baseline: the newest entry by name, which is all the resume read before
// (and which is wrong with a stepped clock or a shared store).
//
//	go test -run '^$' -bench ChainHead ./host/
func BenchmarkChainHead(b *testing.B) {
	const n = 1000
	own, _ := attest.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	peer, _ := attest.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))
	for _, c := range []struct {
		name     string
		signer   *attest.PrivateKey // who signed the reports
		untagged bool
	}{
		{"tagged/own", own, false},
		{"tagged/other-host", peer, false},
		{"untagged/own", own, true},
		{"untagged/other-host", peer, true},
	} {
		dir := b.TempDir()
		store, _ := NewFileStore(dir)
		for i := range n {
			sb, r := testSigned(b, c.signer, "vm-1", uint64(i), attest.EventPeriodic, testNow.Add(time.Duration(i)*time.Second))
			e, err := store.Put(context.Background(), "vm-1", sb, r)
			if err != nil {
				b.Fatal(err)
			}
			if c.untagged {
				legacyName(b, e)
			}
		}
		sup, _ := New(Options{Signer: own, HostName: "h", Store: store})
		b.Run(c.name+"/baseline-newest", func(b *testing.B) {
			for b.Loop() {
				if es, err := store.List(context.Background(), Query{VM: "vm-1", Limit: 1}); err != nil || len(es) != 1 {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/chain-head", func(b *testing.B) {
			for b.Loop() {
				head, err := sup.chainHead(context.Background(), "vm-1")
				if err != nil || (head != nil) != (c.signer == own) {
					b.Fatalf("head %v, %v", head, err)
				}
			}
		})
	}
}
