package policy

//go:generate go test -run TestChainVectors -update-chain

import (
	"bytes"
	"crypto/sha3"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/measure"
)

var updateChain = flag.Bool("update-chain", false, "rewrite testdata/chain from the generator")

const chainDir = "testdata/chain"

// Vector keys, the same fixed seeds as testdata/keys: host.key (0x01) signs
// for host hv-a, other.key (0x02) for host hv-b, guest.key (0x03) is the
// agent's.
func seedKey(t testing.TB, b byte) *attest.PrivateKey {
	t.Helper()
	k, err := attest.NewKeyFromSeed(bytes.Repeat([]byte{b}, attest.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var chainStart = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// history builds one VM's reports the way host supervisors and the agent
// chain them: a host seq/prev per host, a guest seq/prev that travels with
// the VM, and an agent state that a snapshot saves and a restore brings
// back.
type history struct {
	t  testing.TB
	vm string
	// prefix goes before every file name (for vectors that hold the
	// histories of several VMs).
	prefix string
	files  map[string][]byte
	order  []string
	n      int
	keys   map[string]*attest.PrivateKey
	hosts  map[string]*chainState
	guest  *attest.PrivateKey
	agent  chainState
	saved  chainState
}

type chainState struct {
	seq  uint64
	prev *attest.Digest
}

func newHistory(t testing.TB, vm string) *history {
	return &history{t: t, vm: vm, files: map[string][]byte{},
		keys:  map[string]*attest.PrivateKey{"hv-a": seedKey(t, 0x01), "hv-b": seedKey(t, 0x02)},
		hosts: map[string]*chainState{"hv-a": {}, "hv-b": {}}, guest: seedKey(t, guestSeed(vm))}
}

// guestSeed is the seed of a VM's agent key: each VM's agent has its own.
func guestSeed(vm string) byte {
	switch vm {
	case "vm-1":
		return 0x03
	case "vm-2":
		return 0x04
	}
	return 0x05
}

// reboot starts the VM's agent afresh: a new key (from seed), seq 0.
func (h *history) reboot(seed byte) {
	h.guest, h.agent = seedKey(h.t, seed), chainState{}
}

// step is one report to make.
type step struct {
	host  string
	event attest.Event
	agent string // "" means ok: the agent answers
	facts map[string]string
	name  string // file name; "" means NN-host-event.cose
	// edit changes the report (and guest evidence) before signing; it
	// must leave the chains alone unless that is the point.
	edit func(r *attest.Report, g *attest.GuestEvidence)
	// keep leaves the host and guest chains where they were (the report
	// is a fork that the next report ignores).
	keep bool
	// reject: the agent signs evidence (its chain moves on) that the host
	// rejects, recording its hash, as host supervisors do.
	reject bool
}

func (h *history) add(s step) []byte {
	t := h.t
	h.n++
	at := chainStart.Add(time.Duration(h.n) * time.Minute)
	nonce := sha3.Sum256(fmt.Appendf(nil, "%s nonce %d", h.vm, h.n))
	hc := h.hosts[s.host]
	obs := &attest.Observations{Host: s.host, EventAt: at.Add(-500 * time.Millisecond), Agent: "ok", Facts: s.facts}
	r := &attest.Report{IssuedAt: at, ExpiresAt: at.Add(5 * time.Minute), Nonce: nonce[:], Event: s.event, Workload: h.vm,
		Platform: attest.PlatformHost, Attester: attest.Identity{Name: s.host}, Seq: hc.seq, Prev: hc.prev, Host: obs}
	var g *attest.GuestEvidence
	switch {
	case s.agent != "":
		obs.Agent, obs.Detail = attest.AgentStatus(s.agent), "agent "+s.agent+" in this test history"
	case s.event == attest.EventShutdown:
		obs.Agent, obs.Detail = "none", "the guest has shut down; no agent to ask"
	default:
		content := bytes.Repeat([]byte(h.vm+" weights "), 1000)
		g = &attest.GuestEvidence{IssuedAt: at, Nonce: nonce[:], Event: s.event, VM: h.vm, Platform: "none",
			Claims: []attest.Claim{{
				Region:   attest.Region{ID: "weights", Size: uint64(len(content)), Protection: "RO"},
				Snapshot: attest.Snapshot{RegionID: "weights", Root: measure.Bytes(content), Size: uint64(len(content)), TakenAt: at, PageSize: measure.PageSize},
				Workload: h.vm, Platform: "none"}},
			GuestKey: h.guest.PublicKey().Bytes(), Seq: h.agent.seq, Prev: h.agent.prev}
	}
	if s.edit != nil {
		s.edit(r, g)
	}
	if g != nil {
		gs, err := attest.SignGuestEvidence(h.guest, g, &attest.SignOptions{Deterministic: true})
		if err != nil {
			t.Fatal(err)
		}
		r.Guest = gs
		if s.reject {
			r.Guest = nil
			obs.Agent, obs.Detail = "bad-evidence", "evidence binding failure in this test history"
			obs.Facts = map[string]string{"rejected_evidence_hash": attest.ReportHash(gs).String()}
		}
		if !s.keep {
			gh := attest.ReportHash(gs)
			h.agent = chainState{seq: g.Seq + 1, prev: &gh}
		}
	}
	b, err := attest.Sign(h.keys[s.host], r, &attest.SignOptions{Deterministic: true})
	if err != nil {
		t.Fatal(err)
	}
	if !s.keep {
		rh := attest.ReportHash(b)
		*hc = chainState{seq: r.Seq + 1, prev: &rh}
	}
	name := s.name
	if name == "" {
		name = fmt.Sprintf("%s%02d-%s-%s.cose", h.prefix, h.n, s.host, s.event)
	}
	h.files[name] = b
	h.order = append(h.order, name)
	return b
}

// snapshot makes a snapshot report. The saved state is the agent's before
// it signs the snapshot's evidence: QEMU saved the VM, then the host asked.
func (h *history) snapshot(host string) {
	h.saved = h.agent
	h.add(step{host: host, event: attest.EventSnapshot, facts: map[string]string{"job_type": "snapshot-save"}})
}

// restore loads the saved state and makes the restore report.
func (h *history) restore(host string) {
	h.agent = h.saved
	h.add(step{host: host, event: attest.EventRestore, facts: map[string]string{"job_type": "snapshot-load"}})
}

func (h *history) drop(name string) {
	if _, ok := h.files[name]; !ok {
		h.t.Fatalf("drop %s: no such report in %v", name, h.order)
	}
	delete(h.files, name)
}

// wantFinding is a finding a vector must give (every finding that is not
// affirming, and every handover).
type wantFinding struct {
	Check   string `json:"check"`
	Status  Status `json:"status"`
	Reason  string `json:"reason"`
	Subject string `json:"subject"`
}

// chainWant is a vector's want.json.
type chainWant struct {
	Comment  string        `json:"comment"`
	About    string        `json:"about"`
	Trust    []string      `json:"trust"` // under testdata/keys
	VMs      []string      `json:"vms"`   // the VMs of the history, sorted
	Status   Status        `json:"status"`
	Exit     int           `json:"exit"` // hvmon verify --chain's exit code
	Findings []wantFinding `json:"findings"`
}

type chainVector struct {
	name  string
	files map[string][]byte
	want  chainWant
}

// generateChainVectors builds every chain vector from fixed seeds; signing
// is deterministic, so the bytes are the same on every run.
func generateChainVectors(t testing.TB) []chainVector {
	var out []chainVector
	vec := func(name, about string, h *history, st Status, fs ...wantFinding) {
		exit := 0
		if st == Contraindicated {
			exit = 5
		}
		if fs == nil {
			fs = []wantFinding{}
		}
		var vms []string
		for _, b := range h.files {
			in, err := attest.Inspect(b)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(vms, in.Report.Workload) {
				vms = append(vms, in.Report.Workload)
			}
		}
		slices.Sort(vms)
		out = append(out, chainVector{name: name, files: h.files, want: chainWant{
			Comment: "hvmon chain audit vector, generated by policy/chain_vectors_test.go (go generate ./policy); see docs/FORMAT.md, Chain audit",
			About:   about, Trust: []string{"host.pub", "other.pub"}, VMs: vms, Status: st, Exit: exit, Findings: fs}})
	}
	f := func(check string, st Status, reason, subject string) wantFinding {
		return wantFinding{Check: check, Status: st, Reason: reason, Subject: subject}
	}
	handover := f(CheckChainMigration, Affirming, ReasonHandover, "04-hv-b-migrate-in.cose")

	// boot, periodic, migrate-out on hv-a; migrate-in on hv-b.
	migrated := func() *history {
		h := newHistory(t, "vm-1")
		h.add(step{host: "hv-a", event: attest.EventBoot})
		h.add(step{host: "hv-a", event: attest.EventPeriodic})
		h.add(step{host: "hv-a", event: attest.EventMigrateOut, facts: map[string]string{"migration_status": "active"}})
		h.add(step{host: "hv-b", event: attest.EventMigrateIn})
		return h
	}
	clean := func() *history {
		h := migrated()
		h.snapshot("hv-b")
		h.add(step{host: "hv-b", event: attest.EventPeriodic})
		h.add(step{host: "hv-b", event: attest.EventShutdown, facts: map[string]string{"shutdown_reason": "guest-shutdown"}})
		return h
	}
	vec("clean", "boot, periodic and migrate-out on hv-a, migrate-in, snapshot, periodic and shutdown on hv-b: every link holds",
		clean(), Affirming, handover)

	h := migrated()
	h.snapshot("hv-b")
	h.add(step{host: "hv-b", event: attest.EventOnDemand})
	h.restore("hv-b")
	h.add(step{host: "hv-b", event: attest.EventShutdown})
	vec("lifecycle", "the demo's lifecycle: boot, periodic, migrate-out (hv-a), migrate-in, snapshot, on-demand, restore, shutdown (hv-b); "+
		"the restore rolls the guest back to the snapshot: a rollback, explained, still contraindicated",
		h, Contraindicated, handover, f(CheckChainGuest, Contraindicated, ReasonRollback, "07-hv-b-restore.cose"))

	h = clean()
	h.drop("02-hv-a-periodic.cose")
	vec("gap", "the clean history without hv-a's periodic report: a gap in the host chain and in the guest chain",
		h, Contraindicated,
		f(CheckChainHost, Contraindicated, ReasonGap, "03-hv-a-migrate-out.cose"),
		f(CheckChainGuest, Contraindicated, ReasonGap, "03-hv-a-migrate-out.cose"),
		handover)

	h = newHistory(t, "vm-1")
	h.add(step{host: "hv-a", event: attest.EventBoot})
	before := *h.hosts["hv-a"]
	h.add(step{host: "hv-a", event: attest.EventPeriodic})
	after := *h.hosts["hv-a"]
	*h.hosts["hv-a"] = before // a second report at seq 1, after the same prev
	h.add(step{host: "hv-a", event: attest.EventPeriodic, agent: "unavailable", name: "02-hv-a-periodic-fork.cose", keep: true})
	*h.hosts["hv-a"] = after
	h.add(step{host: "hv-a", event: attest.EventPeriodic})
	h.add(step{host: "hv-a", event: attest.EventShutdown})
	vec("fork", "hv-a signs two reports at host seq 1 (one with guest evidence, one saying the agent was unavailable): a fork of the host chain",
		h, Contraindicated,
		f(CheckChainReport, Warning, ReasonNoEvidence, "02-hv-a-periodic-fork.cose"),
		f(CheckChainHost, Contraindicated, ReasonFork, "02-hv-a-periodic-fork.cose"))

	h = newHistory(t, "vm-1")
	h.add(step{host: "hv-a", event: attest.EventBoot})
	h.add(step{host: "hv-a", event: attest.EventPeriodic})
	h.saved = h.agent
	h.add(step{host: "hv-a", event: attest.EventPeriodic})
	h.add(step{host: "hv-a", event: attest.EventPeriodic})
	h.agent = h.saved // the VM was put back without a restore report
	h.add(step{host: "hv-a", event: attest.EventPeriodic})
	h.add(step{host: "hv-a", event: attest.EventShutdown})
	vec("rewind", "the guest goes back from seq 3 to seq 2 at a periodic report: an unexplained rollback",
		h, Contraindicated, f(CheckChainGuest, Contraindicated, ReasonRewind, "05-hv-a-periodic.cose"))

	h = newHistory(t, "vm-1")
	h.add(step{host: "hv-a", event: attest.EventBoot})
	h.add(step{host: "hv-a", event: attest.EventPeriodic})
	h.add(step{host: "hv-a", event: attest.EventMigrateOut})
	other := attest.KeyIDOf([]byte("guest evidence of another VM"))
	h.add(step{host: "hv-b", event: attest.EventMigrateIn, edit: func(_ *attest.Report, g *attest.GuestEvidence) { g.Prev = &other }})
	h.add(step{host: "hv-b", event: attest.EventPeriodic})
	vec("migration-mismatch", "the migrate-in's guest evidence does not follow the migrate-out's (its prev names other evidence)",
		h, Contraindicated,
		f(CheckChainGuest, Contraindicated, ReasonBrokenLink, "04-hv-b-migrate-in.cose"),
		f(CheckChainMigration, Contraindicated, ReasonMigrationMismatch, "04-hv-b-migrate-in.cose"))

	h = clean()
	h.files["99-copy-of-03.cose"] = h.files["03-hv-a-migrate-out.cose"]
	vec("duplicate", "the clean history with one report given twice: counted once, with a warning",
		h, Warning, f(CheckChainReport, Warning, ReasonDuplicate, "99-copy-of-03.cose"), handover)

	h = newHistory(t, "vm-1")
	h.add(step{host: "hv-a", event: attest.EventBoot})
	h.add(step{host: "hv-a", event: attest.EventMigrateOut})
	vec("unpaired-migration", "the history ends with a migrate-out: where the VM went is not in it",
		h, Warning, f(CheckChainMigration, Warning, ReasonUnpairedMigration, "02-hv-a-migrate-out.cose"))

	h = newHistory(t, "vm-1")
	h.add(step{host: "hv-a", event: attest.EventBoot})
	h.add(step{host: "hv-a", event: attest.EventPeriodic, agent: "timeout"})
	h.add(step{host: "hv-a", event: attest.EventPeriodic})
	h.add(step{host: "hv-a", event: attest.EventShutdown})
	vec("agent-down", "one periodic report without guest evidence (agent timeout): the guest chain skips it; a warning",
		h, Warning, f(CheckChainReport, Warning, ReasonNoEvidence, "02-hv-a-periodic.cose"))

	h = newHistory(t, "vm-1")
	h.add(step{host: "hv-a", event: attest.EventBoot})
	h.add(step{host: "hv-a", event: attest.EventPeriodic, reject: true})
	h.add(step{host: "hv-a", event: attest.EventPeriodic})
	vec("rejected-evidence", "the host says it rejected one guest evidence and records its hash: the guest chain skips one seq. "+
		"A host that withholds an evidence can say the same, so the gap stays contraindicated; the detail gives the host's account",
		h, Contraindicated,
		f(CheckChainReport, Warning, ReasonNoEvidence, "02-hv-a-periodic.cose"),
		f(CheckChainGuest, Contraindicated, ReasonGap, "03-hv-a-periodic.cose"))

	h = clean()
	h.drop("01-hv-a-boot.cose")
	vec("deleted-head", "the clean history without its first report: the host chain starts at seq 1 and the guest chain at seq 1, gaps from the start",
		h, Contraindicated,
		f(CheckChainHost, Contraindicated, ReasonGap, "02-hv-a-periodic.cose"),
		f(CheckChainGuest, Contraindicated, ReasonGap, "02-hv-a-periodic.cose"),
		handover)

	h = newHistory(t, "vm-1")
	h.add(step{host: "hv-a", event: attest.EventBoot})
	h.add(step{host: "hv-a", event: attest.EventPeriodic})
	h.saved = h.agent // QEMU saves the VM; the agent does not answer
	h.add(step{host: "hv-a", event: attest.EventSnapshot, agent: "timeout", facts: map[string]string{"job_type": "snapshot-save"}})
	h.add(step{host: "hv-a", event: attest.EventPeriodic, agent: "timeout"})
	h.agent = h.saved // put back to the snapshot without a report
	h.add(step{host: "hv-a", event: attest.EventPeriodic})
	vec("snapshot-no-evidence", "a snapshot without guest evidence, a periodic report without evidence, then the VM is put back to the snapshot "+
		"unreported: the next evidence follows the last one as if nothing happened. The snapshot names the window where the rollback hides",
		h, Warning,
		f(CheckChainReport, Warning, ReasonNoEvidence, "03-hv-a-snapshot.cose"),
		f(CheckChainGuest, Warning, ReasonRollbackWindow, "03-hv-a-snapshot.cose"),
		f(CheckChainReport, Warning, ReasonNoEvidence, "04-hv-a-periodic.cose"))

	h = newHistory(t, "vm-1")
	h.add(step{host: "hv-a", event: attest.EventBoot})
	h.add(step{host: "hv-a", event: attest.EventPeriodic})
	h.snapshot("hv-a")
	h.add(step{host: "hv-a", event: attest.EventPeriodic})
	h.agent = h.saved
	h.add(step{host: "hv-a", event: attest.EventRestore, agent: "unavailable", facts: map[string]string{"job_type": "snapshot-load"}})
	h.add(step{host: "hv-a", event: attest.EventPeriodic})
	vec("restore-no-evidence", "a restore to the snapshot without guest evidence: the restore names its window, and the next evidence forks "+
		"from the snapshot's and goes back, an unexplained rollback whose detail names the restore",
		h, Contraindicated,
		f(CheckChainReport, Warning, ReasonNoEvidence, "05-hv-a-restore.cose"),
		f(CheckChainGuest, Warning, ReasonRollbackWindow, "05-hv-a-restore.cose"),
		f(CheckChainGuest, Contraindicated, ReasonRewind, "06-hv-a-periodic.cose"))

	h = newHistory(t, "vm-1")
	h.add(step{host: "hv-a", event: attest.EventBoot})
	h.add(step{host: "hv-a", event: attest.EventPeriodic})
	h.add(step{host: "hv-a", event: attest.EventSnapshot, agent: "none", facts: map[string]string{"libvirt_event": "stopped/saved"}})
	h.add(step{host: "hv-a", event: attest.EventRestore, facts: map[string]string{"restore_from": "restored"}})
	h.add(step{host: "hv-a", event: attest.EventPeriodic})
	vec("save-restore", "libvirt's save and restore: the save is a snapshot without guest evidence (the guest is stopped), and the restore's "+
		"evidence follows the last evidence before it. Nothing is wrong, but nothing proves it: the save names the window, a warning",
		h, Warning,
		f(CheckChainReport, Warning, ReasonNoEvidence, "03-hv-a-snapshot.cose"),
		f(CheckChainGuest, Warning, ReasonRollbackWindow, "03-hv-a-snapshot.cose"))

	h = newHistory(t, "vm-1")
	h.add(step{host: "hv-a", event: attest.EventBoot})
	h.add(step{host: "hv-a", event: attest.EventPeriodic})
	h.saved = h.agent // a snapshot the host does not report
	h.add(step{host: "hv-a", event: attest.EventPeriodic, agent: "timeout"})
	h.add(step{host: "hv-a", event: attest.EventPeriodic, agent: "timeout"})
	h.agent = h.saved
	h.add(step{host: "hv-a", event: attest.EventRestore, facts: map[string]string{"job_type": "snapshot-load"}})
	vec("restore-across-window", "an unreported snapshot, two periodic reports without evidence, then a restore whose evidence follows "+
		"the last evidence before them: the restore names the window it may have undone",
		h, Warning,
		f(CheckChainReport, Warning, ReasonNoEvidence, "03-hv-a-periodic.cose"),
		f(CheckChainReport, Warning, ReasonNoEvidence, "04-hv-a-periodic.cose"),
		f(CheckChainGuest, Warning, ReasonRollbackWindow, "05-hv-a-restore.cose"))

	h = newHistory(t, "vm-1")
	h.add(step{host: "hv-a", event: attest.EventBoot})
	h.add(step{host: "hv-a", event: attest.EventPeriodic})
	h.add(step{host: "hv-a", event: attest.EventShutdown})
	h.reboot(0x06)
	h.add(step{host: "hv-a", event: attest.EventBoot})
	h.add(step{host: "hv-a", event: attest.EventPeriodic})
	vec("reboot", "boot, periodic, shutdown, then a boot with a new guest key: the host says the guest rebooted, which the guest chain "+
		"cannot confirm (an agent restarted in a running guest looks the same): a warning",
		h, Warning, f(CheckChainGuest, Warning, ReasonAgentRestart, "04-hv-a-boot.cose"))

	h = newHistory(t, "vm-1")
	h.add(step{host: "hv-a", event: attest.EventBoot})
	h.add(step{host: "hv-a", event: attest.EventPeriodic})
	h.add(step{host: "hv-a", event: attest.EventShutdown})
	h.add(step{host: "hv-a", event: attest.EventPeriodic})
	vec("false-shutdown", "a shutdown report without guest evidence, after which the same guest chain carries on: the guest did not stop, "+
		"so the report is an ordinary one without evidence, a warning",
		h, Warning, f(CheckChainReport, Warning, ReasonNoEvidence, "03-hv-a-shutdown.cose"))

	// vm-2 is a clone of vm-1's memory, taken after its agent made its
	// key and before it signed anything: each VM's own history is clean.
	h = newHistory(t, "vm-1")
	h.prefix = "vm-1-"
	h.add(step{host: "hv-a", event: attest.EventBoot})
	h.add(step{host: "hv-a", event: attest.EventPeriodic})
	clone := newHistory(t, "vm-2")
	clone.prefix, clone.guest = "vm-2-", h.guest
	clone.add(step{host: "hv-b", event: attest.EventBoot})
	clone.add(step{host: "hv-b", event: attest.EventPeriodic})
	maps.Copy(h.files, clone.files)
	vec("key-reuse", "two VMs, vm-1 on hv-a and vm-2 on hv-b, whose evidence one guest key signs (vm-2 is a clone of vm-1, or vm-1 relabelled): "+
		"each history alone is clean; the same guest key under two VM names is contraindicated in both",
		h, Contraindicated,
		f(CheckChainGuest, Contraindicated, ReasonKeyReuse, "vm-1-01-hv-a-boot.cose"),
		f(CheckChainGuest, Contraindicated, ReasonKeyReuse, "vm-2-01-hv-b-boot.cose"))
	return out
}

// chainTrust is the pinned keys of every chain vector.
func chainTrust(t testing.TB) []*attest.PublicKey {
	return []*attest.PublicKey{seedKey(t, 0x01).PublicKey(), seedKey(t, 0x02).PublicKey()}
}

// verifyHistory verifies every file as the CLI does: each as of its own
// issued-at, against the vector keys.
func verifyHistory(t testing.TB, files map[string][]byte) []ChainReport {
	keys := chainTrust(t)
	var out []ChainReport
	for name, b := range files {
		o := attest.VerifyOptions{TrustedKeys: keys}
		if in, err := attest.Inspect(b); err == nil {
			o.Now = in.Report.IssuedAt
		}
		res, err := attest.Verify(b, o)
		out = append(out, ChainReport{Name: name, Result: res, Err: err})
	}
	slices.SortFunc(out, func(a, b ChainReport) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// gotFindings keeps the findings a want.json lists: those that are not
// affirming, and handovers.
func gotFindings(v Verdict) []wantFinding {
	out := []wantFinding{}
	for _, f := range v.Findings {
		if f.Status != Affirming || f.Reason == ReasonHandover {
			out = append(out, wantFinding{Check: f.Check, Status: f.Status, Reason: f.Reason, Subject: f.Subject})
		}
	}
	return out
}

// TestChainVectors regenerates the chain vectors in memory, checks that
// testdata/chain holds exactly those files (go generate ./policy rewrites
// them), and that each history gives the verdict its want.json names.
func TestChainVectors(t *testing.T) {
	vs := generateChainVectors(t)
	for _, v := range vs {
		dir := filepath.Join(chainDir, v.name)
		want, err := json.MarshalIndent(v.want, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		files := map[string][]byte{"want.json": append(want, '\n')}
		for n, b := range v.files {
			files[n] = b
		}
		if *updateChain {
			os.RemoveAll(dir)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for n, b := range files {
				if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatalf("%v (run go generate ./policy)", err)
		}
		for _, e := range ents {
			if _, ok := files[e.Name()]; !ok {
				t.Errorf("%s/%s is not made by the generator (run go generate ./policy)", dir, e.Name())
			}
		}
		for n, b := range files {
			got, err := os.ReadFile(filepath.Join(dir, n))
			if err != nil {
				t.Errorf("%v (run go generate ./policy)", err)
			} else if !bytes.Equal(got, b) {
				t.Errorf("%s/%s is stale: the generator now writes other bytes (run go generate ./policy)", dir, n)
			}
		}
	}
	if ents, _ := os.ReadDir(chainDir); len(ents) != len(vs) {
		t.Errorf("%s holds %d entries, the generator makes %d vectors", chainDir, len(ents), len(vs))
	}
	for _, v := range vs {
		t.Run(v.name, func(t *testing.T) {
			a := AuditChain(verifyHistory(t, readVector(t, v.name)))
			if a.Status != v.want.Status {
				t.Errorf("AuditChain(%s) status = %s, want %s; findings:\n%s", v.name, a.Status, v.want.Status, dumpFindings(a.Verdict))
			}
			if got := gotFindings(a.Verdict); !slices.Equal(got, v.want.Findings) {
				t.Errorf("AuditChain(%s) findings =\n%v\nwant\n%v\nall:\n%s", v.name, got, v.want.Findings, dumpFindings(a.Verdict))
			}
			var vms []string
			for _, h := range a.VMs {
				vms = append(vms, h.VM)
			}
			if !slices.Equal(vms, v.want.VMs) {
				t.Errorf("AuditChain(%s) VMs = %v, want %v", v.name, vms, v.want.VMs)
			}
			if (a.Err() != nil) != (v.want.Exit == 5) {
				t.Errorf("AuditChain(%s).Err() = %v, want an error: %v", v.name, a.Err(), v.want.Exit == 5)
			}
		})
	}
}

func readVector(t testing.TB, name string) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(chainDir, name, "*.cose"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no reports in %s/%s (%v)", chainDir, name, err)
	}
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = b
	}
	return out
}

func dumpFindings(v Verdict) string {
	var b strings.Builder
	for _, f := range v.Findings {
		fmt.Fprintf(&b, "  %s %s %s %s: %s\n", f.Check, f.Status, f.Reason, f.Subject, f.Detail)
	}
	return b.String()
}
