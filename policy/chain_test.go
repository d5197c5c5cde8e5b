package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"hvmon.dev/hvmon/attest"
)

func auditJSON(t testing.TB, a *ChainAudit) string {
	t.Helper()
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The verdict, findings and timelines do not depend on the order in which
// the reports are given: for each vector, and for all vectors at once
// (several VMs, keys shared across them, many overlapping chains).
func TestAuditChainOrder(t *testing.T) {
	all := map[string][]byte{}
	vs := generateChainVectors(t)
	for _, v := range vs {
		for n, b := range v.files {
			all[v.name+"/"+n] = b
		}
	}
	vs = append(vs, chainVector{name: "all vectors", files: all})
	for _, v := range vs {
		in := verifyHistory(t, v.files)
		want := auditJSON(t, AuditChain(in))
		r := rand.New(rand.NewPCG(1, 2))
		for i := range 20 {
			shuffled := slices.Clone(in)
			r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			if got := auditJSON(t, AuditChain(shuffled)); got != want {
				t.Fatalf("%s, permutation %d: AuditChain differs from the sorted input's:\n%s\nwant\n%s", v.name, i, got, want)
			}
		}
	}
}

func findingOf(t *testing.T, a *ChainAudit, check, reason string) Finding {
	t.Helper()
	for _, f := range a.Findings {
		if f.Check == check && f.Reason == reason {
			return f
		}
	}
	t.Fatalf("no %s %s finding in:\n%s", check, reason, dumpFindings(a.Verdict))
	return Finding{}
}

func TestAuditChainLifecycle(t *testing.T) {
	a := AuditChain(verifyHistory(t, readVector(t, "lifecycle")))
	if len(a.VMs) != 1 || a.VMs[0].VM != "vm-1" || a.VMs[0].Status != Contraindicated {
		t.Fatalf("VMs = %+v, want vm-1 contraindicated", a.VMs)
	}
	var names, gseqs []string
	for _, e := range a.VMs[0].Timeline {
		names = append(names, e.Report)
		g := "-"
		if e.GuestSeq != nil {
			g = fmt.Sprint(*e.GuestSeq)
		}
		gseqs = append(gseqs, g)
	}
	wantNames := []string{"01-hv-a-boot.cose", "02-hv-a-periodic.cose", "03-hv-a-migrate-out.cose", "04-hv-b-migrate-in.cose",
		"05-hv-b-snapshot.cose", "06-hv-b-on-demand.cose", "07-hv-b-restore.cose", "08-hv-b-shutdown.cose"}
	if !slices.Equal(names, wantNames) {
		t.Errorf("timeline = %v, want %v", names, wantNames)
	}
	if want := []string{"0", "1", "2", "3", "4", "5", "4", "-"}; !slices.Equal(gseqs, want) {
		t.Errorf("guest seqs = %v, want %v", gseqs, want)
	}
	restore := a.VMs[0].Timeline[6]
	if restore.Status != Contraindicated || !slices.Equal(restore.Notes, []string{ReasonRollback}) {
		t.Errorf("restore entry: status %s, notes %v; want contraindicated [rollback]", restore.Status, restore.Notes)
	}
	f := findingOf(t, a, CheckChainGuest, ReasonRollback)
	for _, want := range []string{"rollback", "from 5", "to 4", "restore", "snapshot-load", "05-hv-b-snapshot.cose"} {
		if !strings.Contains(f.Detail, want) {
			t.Errorf("rollback detail %q does not say %q", f.Detail, want)
		}
	}
	h := findingOf(t, a, CheckChainMigration, ReasonHandover)
	for _, want := range []string{"hv-a", "hv-b", "03-hv-a-migrate-out.cose", seedKey(t, 0x01).KeyID().String()[:12], seedKey(t, 0x02).KeyID().String()[:12]} {
		if !strings.Contains(h.Detail, want) {
			t.Errorf("handover detail %q does not name %q", h.Detail, want)
		}
	}
	var aerr *AppraisalError
	if err := a.Err(); err == nil || !strings.Contains(err.Error(), "rollback") || !errors.As(err, &aerr) || !errors.Is(err, attest.ErrAppraisal) {
		t.Errorf("Err() = %v, want an *AppraisalError naming the rollback", err)
	}
}

func TestAuditChainRewindUnexplained(t *testing.T) {
	a := AuditChain(verifyHistory(t, readVector(t, "rewind")))
	f := findingOf(t, a, CheckChainGuest, ReasonRewind)
	if !strings.Contains(f.Detail, "unexplained rollback") || !strings.Contains(f.Detail, "not a restore") {
		t.Errorf("rewind detail %q: want it to say the rollback is unexplained", f.Detail)
	}
}

// Two VMs mixed in one audit: each gets its own history and verdict.
func TestAuditChainTwoVMs(t *testing.T) {
	files := map[string][]byte{}
	for n, b := range readVector(t, "clean") {
		files["vm-1/"+n] = b
	}
	h := newHistory(t, "vm-2")
	h.add(step{host: "hv-a", event: attest.EventBoot})
	h.snapshot("hv-a")
	h.add(step{host: "hv-a", event: attest.EventPeriodic})
	h.restore("hv-a")
	for n, b := range h.files {
		files["vm-2/"+n] = b
	}
	a := AuditChain(verifyHistory(t, files))
	if len(a.VMs) != 2 || a.VMs[0].VM != "vm-1" || a.VMs[1].VM != "vm-2" {
		t.Fatalf("VMs = %d, want vm-1 and vm-2", len(a.VMs))
	}
	if a.VMs[0].Status != Affirming || a.VMs[1].Status != Contraindicated || a.Status != Contraindicated {
		t.Errorf("statuses vm-1 %s, vm-2 %s, overall %s; want affirming, contraindicated, contraindicated", a.VMs[0].Status, a.VMs[1].Status, a.Status)
	}
	if f := findingOf(t, a, CheckChainGuest, ReasonRollback); f.Subject != "vm-2/04-hv-a-restore.cose" {
		t.Errorf("rollback subject %q, want vm-2/04-hv-a-restore.cose", f.Subject)
	}
}

// A report that fails verification is a finding of its own and leaves a
// gap where it was.
func TestAuditChainUnverified(t *testing.T) {
	files := readVector(t, "clean")
	bad := bytes.Clone(files["02-hv-a-periodic.cose"])
	bad[len(bad)-50] ^= 1
	files["02-hv-a-periodic.cose"] = bad
	a := AuditChain(verifyHistory(t, files))
	f := findingOf(t, a, CheckChainReport, ReasonUnverified)
	if f.Subject != "02-hv-a-periodic.cose" || f.Status != Contraindicated || !strings.Contains(f.Detail, "signature") {
		t.Errorf("unverified finding %+v", f)
	}
	if g := findingOf(t, a, CheckChainHost, ReasonGap); g.Subject != "03-hv-a-migrate-out.cose" {
		t.Errorf("gap subject %q, want 03-hv-a-migrate-out.cose", g.Subject)
	}
	if len(a.VMs[0].Timeline) != 6 {
		t.Errorf("timeline holds %d reports, want the 6 verified ones", len(a.VMs[0].Timeline))
	}
}

func TestAuditChainEmpty(t *testing.T) {
	a := AuditChain(nil)
	if a.Status != None || len(a.VMs) != 0 || a.Err() != nil {
		t.Errorf("AuditChain(nil) = %+v, want status none", a)
	}
}

// A restore whose guest chain continues (a VM restored from a file it was
// saved to, with no report in between) is a plain link, not a rollback.
func TestAuditChainLinearRestore(t *testing.T) {
	h := newHistory(t, "vm-1")
	h.add(step{host: "hv-a", event: attest.EventBoot})
	h.add(step{host: "hv-a", event: attest.EventRestore})
	a := AuditChain(verifyHistory(t, h.files))
	if a.Status != Affirming {
		t.Errorf("status %s, want affirming:\n%s", a.Status, dumpFindings(a.Verdict))
	}
}

// FuzzChain audits arbitrary selections (subsets, repeats, orders) of the
// chain vectors' reports: the audit never panics, gives the same answer
// for the selection reversed, and a permutation of the clean history is
// affirming.
func FuzzChain(f *testing.F) {
	vs := generateChainVectors(f)
	var pool []ChainReport
	clean := map[string]bool{}
	for _, v := range vs {
		for _, r := range verifyHistory(f, readVector(f, v.name)) {
			r.Name = v.name + "/" + r.Name
			if v.name == "clean" {
				clean[r.Name] = true
			}
			pool = append(pool, r)
		}
	}
	if len(pool) == 0 || len(clean) == 0 {
		f.Fatal("no chain vectors to seed from")
	}
	var cleanIdx []byte
	for i, r := range pool {
		if clean[r.Name] {
			cleanIdx = append(cleanIdx, byte(i))
		}
	}
	f.Add(cleanIdx)
	f.Add([]byte(reversed(cleanIdx)))
	for i := 0; i < len(pool); i += 7 {
		f.Add([]byte{byte(i), byte(i + 3), byte(i + 1), byte(i + 2)})
	}
	f.Fuzz(func(t *testing.T, sel []byte) {
		if len(sel) > 64 {
			sel = sel[:64]
		}
		var in []ChainReport
		seen := map[string]int{}
		for _, b := range sel {
			r := pool[int(b)%len(pool)]
			in = append(in, r)
			seen[r.Name]++
		}
		a := AuditChain(in)
		if got, want := auditJSON(t, a), auditJSON(t, AuditChain(reversed(in))); got != want {
			t.Fatalf("the reversed selection gives another audit:\n%s\nwant\n%s", got, want)
		}
		isClean := len(seen) == len(clean)
		for n, c := range seen {
			isClean = isClean && clean[n] && c == 1
		}
		if isClean && a.Status != Affirming {
			t.Fatalf("a permutation of the clean history gives %s:\n%s", a.Status, dumpFindings(a.Verdict))
		}
	})
}

func reversed[S ~[]E, E any](s S) S {
	out := slices.Clone(s)
	slices.Reverse(out)
	return out
}

// Findings passed in with a report (a policy's appraisal) join its VM's
// verdict under the report's name.
func TestAuditChainExtraFindings(t *testing.T) {
	in := verifyHistory(t, readVector(t, "clean"))
	in[1].Findings = []Finding{{Check: "snp.measurement", Status: Contraindicated, Reason: "measurement_not_allowed", Subject: "vm-1"}}
	a := AuditChain(in)
	f := findingOf(t, a, "snp.measurement", "measurement_not_allowed")
	if f.Subject != in[1].Name || a.Status != Contraindicated || a.VMs[0].Timeline[1].Status != Contraindicated {
		t.Errorf("extra finding %+v, audit %s, entry %s: want it on %s, contraindicated", f, a.Status, a.VMs[0].Timeline[1].Status, in[1].Name)
	}
}

// FuzzChainLinks audits histories made up from the fuzzer's bytes —
// arbitrary seqs, prev links (to reports, guest evidence or nothing known),
// events, hosts, guest keys and VMs — as results that stand for verified
// reports: the audit never panics and does not depend on input order.
func FuzzChainLinks(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 1, 0, 0, 1, 1, 1, 1, 0, 1, 2, 2, 2, 2})
	f.Add([]byte{0, 0, 0, 0, 0, 1, 0, 0, 1, 1, 1, 2, 0, 0, 1, 1, 4, 1, 0, 255, 255, 7, 2, 9})
	f.Fuzz(func(t *testing.T, data []byte) {
		const width = 6
		var in []ChainReport
		var hashes, ghashes []attest.Digest
		pick := func(b byte, from []attest.Digest) *attest.Digest {
			switch {
			case b == 0:
				return nil
			case int(b) <= len(from):
				d := from[int(b)-1]
				return &d
			}
			d := attest.KeyIDOf([]byte{b})
			return &d
		}
		for i := 0; i+width <= len(data) && i < 64*width; i += width {
			b := data[i : i+width]
			n := len(in)
			h := attest.KeyIDOf(fmt.Appendf(nil, "report %d", n))
			seq := uint64(b[2] % 8)
			if b[2] == 255 {
				seq = ^uint64(0)
			}
			host := []string{"hv-a", "hv-b", "hv-c"}[b[1]%3]
			rep := &attest.Report{Workload: []string{"vm-1", "vm-2"}[b[0]%2], Event: attest.Events()[b[4]%8], Seq: seq,
				Prev: pick(b[3], hashes), Attester: attest.Identity{Name: host}, Host: &attest.Observations{Host: host, Agent: "ok"}}
			res := &attest.Result{Valid: true, ReportHash: h, KeyID: attest.KeyIDOf([]byte(host[:4])), Report: rep}
			if b[5] != 0 {
				gh := attest.KeyIDOf(fmt.Appendf(nil, "guest %d", n))
				if b[5] == 1 && len(ghashes) > 0 {
					gh = ghashes[0] // replayed evidence
				}
				res.Guest = &attest.GuestEvidence{Seq: uint64(b[5] % 8), Prev: pick(b[5]/8, ghashes), GuestKey: []byte{b[5] & 1}, Event: rep.Event}
				res.GuestHash = &gh
				ghashes = append(ghashes, gh)
			}
			hashes = append(hashes, h)
			in = append(in, ChainReport{Name: fmt.Sprintf("r%02d", n), Result: res})
		}
		a := AuditChain(in)
		if got, want := auditJSON(t, a), auditJSON(t, AuditChain(reversed(in))); got != want {
			t.Fatalf("the reversed input gives another audit:\n%s\nwant\n%s", got, want)
		}
	})
}

// A host withholds a guest evidence (here one whose region no longer
// matches) and says it rejected it, naming its hash: the gap it leaves in
// the guest chain stays contraindicated. The host's statement is in the
// detail, as an explanation, not as a reason to accept.
func TestAuditChainWithheldEvidenceClaimedRejected(t *testing.T) {
	h := newHistory(t, "vm-1")
	h.add(step{host: "hv-a", event: attest.EventBoot})
	h.add(step{host: "hv-a", event: attest.EventPeriodic, reject: true, edit: func(_ *attest.Report, g *attest.GuestEvidence) {
		g.Claims[0].Snapshot.Root = attest.KeyIDOf([]byte("weights the tenant did not load"))
	}})
	h.add(step{host: "hv-a", event: attest.EventPeriodic})
	a := AuditChain(verifyHistory(t, h.files))
	if a.Status != Contraindicated {
		t.Fatalf("status %s, want contraindicated:\n%s", a.Status, dumpFindings(a.Verdict))
	}
	g := findingOf(t, a, CheckChainGuest, ReasonGap)
	if g.Status != Contraindicated || g.Subject != "03-hv-a-periodic.cose" {
		t.Errorf("gap finding %+v, want contraindicated on 03-hv-a-periodic.cose", g)
	}
	for _, want := range []string{"1 evidence(s) missing", "02-hv-a-periodic.cose", "rejected", "its own statement"} {
		if !strings.Contains(g.Detail, want) {
			t.Errorf("gap detail %q does not say %q", g.Detail, want)
		}
	}
	// The same history without the host's statement: the same status.
	in := verifyHistory(t, h.files)
	for _, r := range in {
		if r.Result.Report.Host != nil {
			delete(r.Result.Report.Host.Facts, "rejected_evidence_hash")
		}
	}
	if b := AuditChain(in); b.Status != a.Status {
		t.Errorf("without the host's statement the status is %s, with it %s: the statement changed the verdict", b.Status, a.Status)
	}
}

// No host-written fact or status text changes a verdict: every vector
// audited with each report's facts, agent detail and agent status replaced
// by other text (keeping only whether the agent answered at all) gives the
// same status.
func TestAuditChainHostWordsDoNotDowngrade(t *testing.T) {
	for _, v := range generateChainVectors(t) {
		want := AuditChain(verifyHistory(t, v.files)).Status
		in := verifyHistory(t, v.files)
		for _, r := range in {
			if h := r.Result.Report.Host; h != nil {
				h.Facts = map[string]string{"rejected_evidence_hash": attest.KeyIDOf([]byte(r.Name)).String(), "job_type": "snapshot-load"}
				h.Detail = "the host says all is well"
				if h.Agent != "ok" && h.Agent != "none" {
					h.Agent = "bad-evidence"
				}
			}
		}
		if got := AuditChain(in).Status; got != want {
			t.Errorf("%s: with other host words the status is %s, want %s", v.name, got, want)
		}
	}
}

// A rollback hidden behind a snapshot without guest evidence: the VM is
// put back to the snapshot before the agent signs again, so the guest chain
// runs straight on. The snapshot names the window in which it could hide,
// bounded by the reports with evidence before and after it.
func TestAuditChainRollbackHiddenBehindSnapshot(t *testing.T) {
	a := AuditChain(verifyHistory(t, readVector(t, "snapshot-no-evidence")))
	if a.Status == Affirming || a.Status == None {
		t.Fatalf("status %s, want at least a warning", a.Status)
	}
	f := findingOf(t, a, CheckChainGuest, ReasonRollbackWindow)
	if f.Subject != "03-hv-a-snapshot.cose" || f.Status != Warning {
		t.Errorf("window finding %+v, want a warning on the snapshot", f)
	}
	for _, want := range []string{"from 02-hv-a-periodic.cose (guest seq 1)", "to 05-hv-a-periodic.cose (guest seq 2)"} {
		if !strings.Contains(f.Detail, want) {
			t.Errorf("window detail %q does not name %q", f.Detail, want)
		}
	}

	// A restore reported without evidence: the restore names its window,
	// and the rollback it hides shows at the next evidence, whose detail
	// names the restore.
	a = AuditChain(verifyHistory(t, readVector(t, "restore-no-evidence")))
	if f := findingOf(t, a, CheckChainGuest, ReasonRollbackWindow); f.Subject != "05-hv-a-restore.cose" ||
		!strings.Contains(f.Detail, "from 04-hv-a-periodic.cose") || !strings.Contains(f.Detail, "to 06-hv-a-periodic.cose") {
		t.Errorf("restore window finding %+v", f)
	}
	if f := findingOf(t, a, CheckChainGuest, ReasonRewind); f.Status != Contraindicated || !strings.Contains(f.Detail, "restore 05-hv-a-restore.cose") {
		t.Errorf("rewind finding %+v: want contraindicated, naming the restore without evidence", f)
	}

	// A restore whose evidence follows evidence signed before reports
	// without any: the window it may have undone.
	a = AuditChain(verifyHistory(t, readVector(t, "restore-across-window")))
	if f := findingOf(t, a, CheckChainGuest, ReasonRollbackWindow); f.Subject != "05-hv-a-restore.cose" ||
		!strings.Contains(f.Detail, "03-hv-a-periodic.cose to 04-hv-a-periodic.cose") || !strings.Contains(f.Detail, "from 02-hv-a-periodic.cose") {
		t.Errorf("restore window finding %+v", f)
	}

	// A restore whose evidence starts a new guest key cannot be compared
	// with any snapshot.
	h := newHistory(t, "vm-1")
	h.add(step{host: "hv-a", event: attest.EventBoot})
	h.snapshot("hv-a")
	h.add(step{host: "hv-a", event: attest.EventPeriodic})
	h.reboot(0x06)
	h.add(step{host: "hv-a", event: attest.EventRestore})
	a = AuditChain(verifyHistory(t, h.files))
	if f := findingOf(t, a, CheckChainGuest, ReasonRollbackWindow); f.Subject != "04-hv-a-restore.cose" || !strings.Contains(f.Detail, "new guest key") {
		t.Errorf("restore with a new key: window finding %+v", f)
	}
}

// One guest key under two VM names: a clone whose own history is clean,
// and a VM relabelled mid-life. Both VMs get a contraindicated key_reuse
// finding naming the other.
func TestAuditChainGuestKeyUnderTwoNames(t *testing.T) {
	a := AuditChain(verifyHistory(t, readVector(t, "key-reuse")))
	if a.Status != Contraindicated || len(a.VMs) != 2 {
		t.Fatalf("status %s over %d VM(s), want contraindicated over 2", a.Status, len(a.VMs))
	}
	for i, other := range []string{`VM "vm-2" (first in vm-2-01-hv-b-boot.cose)`, `VM "vm-1" (first in vm-1-01-hv-a-boot.cose)`} {
		h := a.VMs[i]
		if h.Status != Contraindicated || h.Timeline[0].Status != Contraindicated || !slices.Contains(h.Timeline[0].Notes, ReasonKeyReuse) {
			t.Errorf("%s: status %s, first entry %+v; want contraindicated, key_reuse", h.VM, h.Status, h.Timeline[0])
		}
		var found bool
		for _, f := range h.Findings {
			found = found || f.Reason == ReasonKeyReuse && strings.Contains(f.Detail, other)
		}
		if !found {
			t.Errorf("%s: no key_reuse finding naming %s:\n%s", h.VM, other, dumpFindings(h.Verdict))
		}
	}
	// Each VM alone is clean: only the cross-VM check sees it.
	for _, vm := range []string{"vm-1", "vm-2"} {
		files := map[string][]byte{}
		for n, b := range readVector(t, "key-reuse") {
			if strings.HasPrefix(n, vm+"-") {
				files[n] = b
			}
		}
		if s := AuditChain(verifyHistory(t, files)).Status; s != Affirming {
			t.Errorf("%s alone: %s, want affirming", vm, s)
		}
	}

	// Relabelled: vm-1's guest carries on under the name vm-1b.
	h := newHistory(t, "vm-1")
	h.add(step{host: "hv-a", event: attest.EventBoot})
	h.add(step{host: "hv-a", event: attest.EventPeriodic})
	h.vm = "vm-1b"
	h.add(step{host: "hv-a", event: attest.EventPeriodic, name: "03-vm-1b.cose"})
	a = AuditChain(verifyHistory(t, h.files))
	if f := findingOf(t, a, CheckChainGuest, ReasonKeyReuse); f.Status != Contraindicated {
		t.Errorf("relabelled VM: %+v", f)
	}
}

// A shutdown report without evidence needs no finding, unless the guest
// chain carries on after it as if the guest had not stopped.
func TestAuditChainFalseShutdown(t *testing.T) {
	a := AuditChain(verifyHistory(t, readVector(t, "false-shutdown")))
	f := findingOf(t, a, CheckChainReport, ReasonNoEvidence)
	if f.Subject != "03-hv-a-shutdown.cose" || !strings.Contains(f.Detail, "carries on at 04-hv-a-periodic.cose") {
		t.Errorf("finding %+v", f)
	}
	if a := AuditChain(verifyHistory(t, readVector(t, "clean"))); a.Status != Affirming {
		t.Errorf("clean history (ends with a shutdown without evidence): %s", a.Status)
	}
}
