//go:build integration

package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/hook"
	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/internal/keyfile"
	"hvmon.dev/hvmon/policy"
)

// ack is a report the daemon said it stored: an API answer or a "report"
// log line.
type ack struct {
	VM   string
	Seq  uint64
	Hash attest.Digest
	How  string
}

// stormJob is one API request of the storm.
type stormJob struct {
	vm       string
	periodic bool // POST /v1/events with event periodic; else POST /v1/vms/{vm}/attest
}

func (r *stormRig) send(ctx context.Context, j stormJob) (host.APIEntry, error) {
	if j.periodic {
		return r.api.Event(ctx, host.AttestRequest{VM: j.vm, Event: attest.EventPeriodic})
	}
	return r.api.Attest(ctx, j.vm, attest.EventOnDemand, nil)
}

// scrapeStored reads hvmon_reports_total{outcome="stored"} per VM from the
// daemon's /metrics.
func scrapeStored(ctx context.Context, addr string) (map[string]int, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: HTTP %d", resp.StatusCode)
	}
	out := map[string]int{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "hvmon_reports_total{") || !strings.Contains(line, `outcome="stored"`) {
			continue
		}
		_, after, _ := strings.Cut(line, `vm="`)
		vm, _, _ := strings.Cut(after, `"`)
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %v", line, err)
		}
		out[vm] += int(v)
	}
	return out, sc.Err()
}

// reportLines parses the "report" lines of a daemon's JSON log. A last
// line cut short by the kill is skipped; any other bad line is an error.
func reportLines(t *testing.T, log string) []ack {
	t.Helper()
	var out []ack
	lines := strings.Split(log, "\n")
	for i, l := range lines {
		if !strings.Contains(l, `"@message":"report"`) {
			continue
		}
		var m struct {
			VM   string `json:"vm"`
			Seq  uint64 `json:"seq"`
			Hash string `json:"hash"`
		}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			if i == len(lines)-1 {
				continue
			}
			t.Fatalf("daemon log line %d: %v: %s", i+1, err, l)
		}
		h, err := attest.ParseDigest(m.Hash)
		if err != nil || m.VM == "" {
			t.Fatalf("daemon log line %d names no VM or hash: %s", i+1, l)
		}
		out = append(out, ack{VM: m.VM, Seq: m.Seq, Hash: h, How: "log"})
	}
	return out
}

// storeState is what the store holds, read with the daemon stopped.
type storeState struct {
	entries []host.Entry
	byVM    map[string][]host.Entry // sorted by seq
	temp    int                     // temporary files of interrupted writes
}

func readStore(t *testing.T, ctx context.Context, dir string) storeState {
	t.Helper()
	store := &host.FileStore{Dir: dir}
	es, err := store.List(ctx, host.Query{})
	if err != nil {
		t.Fatal(err)
	}
	st := storeState{entries: es, byVM: map[string][]host.Entry{}}
	for _, e := range es {
		st.byVM[e.VM] = append(st.byVM[e.VM], e)
	}
	for _, vs := range st.byVM {
		slices.SortFunc(vs, func(a, b host.Entry) int { return int(a.Seq) - int(b.Seq) })
	}
	filepath.WalkDir(filepath.Join(dir, "reports"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasPrefix(d.Name(), ".") {
			st.temp++
		}
		return nil
	})
	return st
}

// checkChains checks every VM's host chain in the store: seq counts up from
// 0 by one, no seq twice, prev names the report before, every file hashes
// to its name. It returns the number of reports checked and, per VM, how
// many guest evidences (distinct guest seqs) the reports carry.
func checkChains(t *testing.T, ctx context.Context, dir string, st storeState) (int, map[string]int) {
	t.Helper()
	store := &host.FileStore{Dir: dir}
	n := 0
	guests := map[string]int{}
	for vm, es := range st.byVM {
		gseqs := map[uint64]bool{}
		for i, e := range es {
			if e.Seq != uint64(i) {
				if i > 0 && e.Seq == es[i-1].Seq {
					t.Fatalf("%s: seq %d signed twice: %s and %s", vm, e.Seq, es[i-1].Hash, e.Hash)
				}
				t.Fatalf("%s: report %d of the chain has seq %d (a gap)", vm, i, e.Seq)
			}
			b, _, err := store.Get(ctx, e.Hash)
			if err != nil {
				t.Fatalf("%s seq %d: %v", vm, e.Seq, err)
			}
			in, err := attest.Inspect(b)
			if err != nil {
				t.Fatalf("%s seq %d: %v", vm, e.Seq, err)
			}
			r := in.Report
			if r.Seq != e.Seq || r.Workload != vm {
				t.Fatalf("%s: file %s holds seq %d of %q", vm, e.Path, r.Seq, r.Workload)
			}
			switch {
			case i == 0 && r.Prev != nil:
				t.Fatalf("%s seq 0 has prev %s", vm, r.Prev)
			case i > 0 && (r.Prev == nil || *r.Prev != es[i-1].Hash):
				t.Fatalf("%s seq %d: prev %v, want %s (seq %d)", vm, e.Seq, r.Prev, es[i-1].Hash, es[i-1].Seq)
			}
			if in.Guest != nil {
				if gseqs[in.Guest.Seq] {
					t.Fatalf("%s: guest evidence seq %d in two reports", vm, in.Guest.Seq)
				}
				gseqs[in.Guest.Seq] = true
			}
			n++
		}
		guests[vm] = len(gseqs)
	}
	return n, guests
}

// auditStore verifies every stored report against the host key and audits
// the histories (policy.AuditChain, what hvmon verify --chain does). It
// returns the findings that do not affirm, by VM.
func auditStore(t *testing.T, ctx context.Context, dir string, st storeState, key *attest.PublicKey) map[string][]policy.Finding {
	t.Helper()
	store := &host.FileStore{Dir: dir}
	var in []policy.ChainReport
	for _, e := range st.entries {
		b, _, err := store.Get(ctx, e.Hash)
		if err != nil {
			t.Fatal(err)
		}
		res, err := attest.Verify(b, attest.VerifyOptions{TrustedKeys: []*attest.PublicKey{key}, Now: e.Time})
		if err != nil {
			t.Fatalf("%s seq %d does not verify: %v", e.VM, e.Seq, err)
		}
		in = append(in, policy.ChainReport{Name: filepath.Base(e.Path), Result: res})
	}
	out := map[string][]policy.Finding{}
	for _, h := range policy.AuditChain(in).VMs {
		for _, f := range h.Findings {
			if f.Status != policy.Affirming {
				out[h.VM] = append(out[h.VM], f)
			}
		}
	}
	return out
}

// checkAcked fails the test for every acknowledged report the store does
// not hold as acknowledged.
func checkAcked(t *testing.T, st storeState, acks []ack) {
	t.Helper()
	byHash := map[attest.Digest]host.Entry{}
	for _, e := range st.entries {
		byHash[e.Hash] = e
	}
	missing := 0
	for _, a := range acks {
		e, ok := byHash[a.Hash]
		if !ok || e.VM != a.VM || e.Seq != a.Seq {
			missing++
			if missing <= 10 {
				t.Errorf("acknowledged (%s) report %s seq %d %s is not in the store (found %+v)", a.How, a.VM, a.Seq, a.Hash, e)
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged reports are missing", missing, len(acks))
	}
}

// hookJournalLines reads the hook journal: its complete lines (each must
// be a JSON object) and whether a partial last line follows them.
func hookJournalLines(t *testing.T, path string) (lines int, partial bool) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return lines, true
		}
		if !json.Valid(b[:i]) {
			t.Fatalf("hook journal line %d is not JSON: %q", lines+1, b[:i])
		}
		lines++
		b = b[i+1:]
	}
	return lines, false
}

// key is the daemon's public key.
func (r *stormRig) key(t *testing.T) *attest.PublicKey {
	k, err := keyfile.LoadPublic(r.keyPath + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// runCLI runs the hvmon binary and returns its exit code and output.
func runCLI(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

// TestStormKill: kill -9 of the daemon in the middle of a storm — 300 boot
// events, 900 API requests from 24 clients and a stream of libvirt hook
// events — then a restart and more events. Every report that was
// acknowledged (an API answer, a "report" log line, a count in the last
// /metrics scrape before the kill) is in the store; every VM's host chain
// continues across the restart (seq by one, prev the hash of the last
// stored report); no seq is signed twice; the chain audits (hvmon log
// verify, hvmon verify --chain) accept the store; every acknowledged hook
// event is in the journal after the restart, and its numbering continues.
func TestStormKill(t *testing.T) {
	const (
		n        = 300
		rounds   = 3   // API requests per VM
		clients  = 24  // concurrent API clients
		killAt   = 150 // API answers before the kill
		maxHooks = 500 // hook events before the kill (the daemon lists the newest 1024)
	)
	r := newStormRig(t, n, true)
	r.start("info", "--log-json")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	r.waitConnected(ctx)

	var (
		mu         sync.Mutex
		apiAcks    []ack
		unanswered []stormJob
		hookSeqs   []uint64
		scrape     map[string]int
		scrapes    int
	)
	var inflight atomic.Int64
	var killed atomic.Bool

	scrapeCtx, stopScrape := context.WithCancel(ctx)
	var bg sync.WaitGroup
	bg.Add(1)
	go func() {
		defer bg.Done()
		for scrapeCtx.Err() == nil {
			// A scrape that succeeds was answered before the kill.
			if m, err := scrapeStored(scrapeCtx, r.metrics); err == nil {
				mu.Lock()
				scrape, scrapes = m, scrapes+1
				mu.Unlock()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	jobs := make(chan stormJob)
	go func() {
		defer close(jobs)
		for round := range rounds {
			for i := range n {
				select {
				case jobs <- stormJob{vm: stormVM(i), periodic: round == 1}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	var neverSent atomic.Int64
	var workers sync.WaitGroup
	for range clients {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for j := range jobs {
				if killed.Load() {
					neverSent.Add(1)
					continue
				}
				inflight.Add(1)
				e, err := r.send(ctx, j)
				inflight.Add(-1)
				mu.Lock()
				switch {
				case err == nil:
					apiAcks = append(apiAcks, ack{VM: e.VM, Seq: e.Seq, Hash: e.Hash, How: "api"})
				case killed.Load():
					unanswered = append(unanswered, j)
				default:
					t.Errorf("%s before the kill: %v", j.vm, err)
				}
				mu.Unlock()
			}
		}()
	}
	var hookErrors atomic.Int64
	for w := range 2 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for k := w; k < maxHooks && !killed.Load(); k += 2 {
				vm := stormVM(k % n)
				op := []string{hook.OpPrepare, hook.OpStarted}[k%2]
				sum := hex.EncodeToString(bytes.Repeat([]byte{byte(k)}, 32))
				m := &hook.Message{Driver: "qemu", Args: hook.Args{Object: vm, Op: op, SubOp: "begin", Extra: "-"},
					Domain: hook.Domain{Name: vm}, XMLSHA3: sum, XMLSize: 100}
				d, err := r.api.Hook(ctx, m)
				switch {
				case err == nil:
					mu.Lock()
					hookSeqs = append(hookSeqs, d.Seq)
					mu.Unlock()
				case killed.Load():
					hookErrors.Add(1)
				default:
					t.Errorf("hook event for %s before the kill: %v", vm, err)
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	// The boot storm starts once the API storm runs; the kill comes once
	// enough requests were answered, while others and boot reports are in
	// flight.
	var inflightAtKill int64
	booted := false
	for {
		mu.Lock()
		answered := len(apiAcks)
		mu.Unlock()
		if !booted && answered >= killAt-10 {
			booted = true
			for _, q := range r.servers {
				go q.Inject("VSERPORT_CHANGE", map[string]any{"id": "agentport0", "open": true})
			}
		}
		if f := inflight.Load(); booted && answered >= killAt && f > 0 {
			killed.Store(true)
			inflightAtKill = inflight.Load()
			if err := r.d.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("only %d API answers before the deadline\n%s", answered, tail(r.log(), 4000))
		}
		time.Sleep(time.Millisecond)
	}
	r.d.Wait()
	workers.Wait()
	stopScrape()
	bg.Wait()
	if scrapes == 0 {
		t.Fatal("no /metrics scrape succeeded before the kill")
	}

	// The daemon is dead: what is in the store now is what it left.
	logAcks := reportLines(t, r.log())
	atKill := readStore(t, ctx, r.dataDir)
	byHash := map[attest.Digest]bool{}
	for _, e := range atKill.entries {
		byHash[e.Hash] = true
	}
	checkAcked(t, atKill, apiAcks)
	checkAcked(t, atKill, logAcks)
	scraped := 0
	for vm, c := range scrape {
		scraped += c
		if have := len(atKill.byVM[vm]); c > have {
			t.Errorf("%s: the last /metrics scrape before the kill counted %d stored reports, the store holds %d", vm, c, have)
		}
	}
	acked := map[attest.Digest]bool{}
	for _, a := range slices.Concat(apiAcks, logAcks) {
		acked[a.Hash] = true
	}
	unacked := 0
	for _, e := range atKill.entries {
		if !acked[e.Hash] {
			unacked++ // stored, then killed before the log line and the answer
		}
	}
	checkChains(t, ctx, r.dataDir, atKill)
	journal := filepath.Join(r.dataDir, "hooks.jsonl")
	jLines, jPartial := hookJournalLines(t, journal)
	if jLines < len(hookSeqs) {
		t.Fatalf("hook journal holds %d events, %d were acknowledged", jLines, len(hookSeqs))
	}
	// A write the kill cut short leaves at most a partial last line; make
	// one, as a crash in the middle of an append would: the restarted
	// daemon must drop it, not read it back.
	if f, err := os.OpenFile(journal, os.O_WRONLY|os.O_APPEND, 0); err != nil {
		t.Fatal(err)
	} else {
		f.WriteString(`{"seq":99999,"received":"2026-`)
		f.Close()
	}
	bootsAtKill := 0
	for _, e := range atKill.entries {
		if e.Event == attest.EventBoot {
			bootsAtKill++
		}
	}

	// Restart: the same configuration and data directory.
	r.start("info", "--log-json")
	r.waitConnected(ctx)
	hooksBack, err := r.api.Hooks(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	journaled := map[uint64]bool{}
	var maxJournaled uint64
	for _, ev := range hooksBack {
		journaled[ev.Seq] = true
		maxJournaled = max(maxJournaled, ev.Seq)
	}
	for _, s := range hookSeqs {
		if !journaled[s] {
			t.Fatalf("acknowledged hook event seq %d is not in the journal after the restart", s)
		}
	}
	d, err := r.api.Hook(ctx, &hook.Message{Driver: "qemu", Args: hook.Args{Object: stormVM(0), Op: hook.OpStarted, SubOp: "begin", Extra: "-"},
		Domain: hook.Domain{Name: stormVM(0)}, XMLSHA3: strings.Repeat("ab", 32), XMLSize: 100})
	if err != nil || d.Seq != maxJournaled+1 {
		t.Fatalf("first hook event after the restart: seq %d, %v; want %d", d.Seq, err, maxJournaled+1)
	}
	// More events: the requests the kill left unanswered again, then one
	// on-demand report for every VM.
	var after []ack
	again := slices.Clone(unanswered)
	for i := range n {
		again = append(again, stormJob{vm: stormVM(i)})
	}
	work := make(chan stormJob)
	for range clients {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for j := range work {
				e, err := r.send(ctx, j)
				mu.Lock()
				if err != nil {
					t.Errorf("%s after the restart: %v", j.vm, err)
				} else {
					after = append(after, ack{VM: e.VM, Seq: e.Seq, Hash: e.Hash, How: "api after the restart"})
				}
				mu.Unlock()
			}
		}()
	}
	for _, j := range again {
		work <- j
	}
	close(work)
	workers.Wait()
	if t.Failed() {
		t.FailNow()
	}
	r.d.Process.Signal(os.Interrupt)
	if err := r.d.Wait(); err != nil {
		t.Fatalf("daemon after the restart: %v\n%s", err, tail(r.log(), 4000))
	}
	logAfter := reportLines(t, r.log())
	if lines, partial := hookJournalLines(t, journal); partial || lines != jLines+1 {
		t.Fatalf("hook journal after the restart: %d lines (partial last line: %v), want %d whole lines", lines, partial, jLines+1)
	}

	final := readStore(t, ctx, r.dataDir)
	checkAcked(t, final, slices.Concat(apiAcks, logAcks, after, logAfter))
	checked, guests := checkChains(t, ctx, r.dataDir, final)
	// Each chain continues across the restart: the first report signed
	// after it follows the last one stored before it.
	for i := range n {
		vm := stormVM(i)
		pre, post := atKill.byVM[vm], final.byVM[vm]
		if len(post) <= len(pre) {
			t.Fatalf("%s: no report after the restart", vm)
		}
		next := post[len(pre)]
		if byHash[next.Hash] {
			t.Fatalf("%s: seq %d was stored before the kill and again after it", vm, next.Seq)
		}
		if len(pre) > 0 && (next.Seq != pre[len(pre)-1].Seq+1) {
			t.Fatalf("%s: first seq after the restart %d, last before %d", vm, next.Seq, pre[len(pre)-1].Seq)
		}
	}
	// Guest evidence the agents signed that no stored report carries: the
	// agent answered, and the daemon died before the report was stored. At
	// most one per VM (a VM's requests are made one at a time), and only
	// as many as requests were in progress at the kill.
	lostVMs := map[string]bool{}
	lost := 0
	for i, a := range r.agents {
		vm := stormVM(i)
		signed := int(a.Hello().Seq)
		switch l := signed - guests[vm]; {
		case l < 0 || l > 1:
			t.Fatalf("%s: the agent signed %d guest evidences, the store carries %d", vm, signed, guests[vm])
		case l == 1:
			lostVMs[vm] = true
			lost++
		}
	}
	if possible := int(inflightAtKill) + n - bootsAtKill; lost > possible {
		t.Fatalf("%d guest evidences lost, but only %d requests can have been in progress at the kill", lost, possible)
	}
	// The chain audit: every report verifies; every host chain holds
	// (seq, prev, no fork); the only findings that do not affirm are the
	// guest-chain gaps of the lost evidence, one for each VM that lost one.
	findings := auditStore(t, ctx, r.dataDir, final, r.key(t))
	for vm, fs := range findings {
		for _, f := range fs {
			if f.Check != policy.CheckChainGuest || f.Reason != policy.ReasonGap || !lostVMs[vm] {
				t.Errorf("%s: chain audit: %s %s %s: %s", vm, f.Check, f.Status, f.Reason, f.Detail)
			}
		}
		if len(fs) != 1 {
			t.Errorf("%s: %d chain audit findings that do not affirm, want at most 1", vm, len(fs))
		}
	}
	for vm := range lostVMs {
		if len(findings[vm]) == 0 {
			t.Errorf("%s lost a guest evidence and the chain audit does not say so", vm)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	// hvmon log verify (the store) and hvmon verify --chain (the report
	// directories) are the same chain audit: both name the gaps of the
	// lost evidence, and nothing else, and exit 5 when there are any.
	pub := r.keyPath + ".pub"
	want := map[bool]int{false: 0, true: 5}[lost > 0]
	dirs, _ := filepath.Glob(filepath.Join(r.dataDir, "reports", "*"))
	var verdict string
	for _, args := range [][]string{
		{"log", "verify", "--trust", pub, "--data-dir", r.dataDir},
		slices.Concat([]string{"verify", "--chain", "--trust", pub}, dirs),
	} {
		code, out := runCLI(t, r.bin, args...)
		i := strings.LastIndex(out, "VERDICT: ")
		if i < 0 {
			t.Fatalf("hvmon %s %s: exit %d, no verdict\n%s", args[0], args[1], code, tail(out, 4000))
		}
		verdict, _, _ = strings.Cut(out[i:], "\n")
		if code != want || (lost > 0 && !strings.Contains(verdict, "gap")) {
			t.Fatalf("hvmon %s %s over %d VMs with %d lost guest evidences: exit %d (want %d), %s", args[0], args[1], len(dirs), lost, code, want, verdict)
		}
	}

	t.Logf("kill -9 mid-storm (%d VMs, %d API clients): before the kill %d API answers, %d report log lines, %d in the last /metrics scrape; "+
		"at the kill %d requests in flight (%d unanswered, %d never sent), %d hook events unanswered",
		n, clients, len(apiAcks), len(logAcks), scraped, inflightAtKill, len(unanswered), neverSent.Load(), hookErrors.Load())
	t.Logf("store at the kill: %d reports (%d boot), %d stored without an answer or log line, %d temporary files of interrupted writes (ignored); "+
		"hook journal: %d events (%d acknowledged), partial last line left by the kill: %v (one added; dropped at the restart)",
		len(atKill.entries), bootsAtKill, unacked, atKill.temp, jLines, len(hookSeqs), jPartial)
	t.Logf("after the restart: %d reports (%d unanswered requests sent again, %d on-demand), hook seq continued at %d; final store %d reports in %d host chains, each continuing across the restart, none signed twice; "+
		"%d guest evidences signed by agents and lost with the kill (a guest-chain gap each); verify --chain: %s",
		len(after), len(unanswered), n, d.Seq, checked, len(final.byVM), lost, verdict)
}
