package policy

import (
	"cmp"
	"container/heap"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"hvmon.dev/hvmon/attest"
)

// Chain audit: AuditChain checks a VM's report history as docs/FORMAT.md
// ("Chain audit") defines it. It takes reports that attest.Verify has
// already checked and never reads a payload field of one whose signature
// did not verify.

// ChainReport is one report of a history: the outcome of attest.Verify on
// it, and a name (a file name) that findings use as their subject.
type ChainReport struct {
	Name   string
	Result *attest.Result
	// Err is the error attest.Verify returned; nil when the report is valid.
	Err error
	// Findings are other findings about this report (a policy's
	// appraisal, say). AuditChain adds them to the report's VM with the
	// report's Name as their subject.
	Findings []Finding
}

// Check names of the chain audit's findings.
const (
	CheckChainReport    = "chain.report"    // one report's own verification
	CheckChainHost      = "chain.host"      // a host chain link (seq, prev of the signer)
	CheckChainGuest     = "chain.guest"     // a guest chain link (seq, prev of the agent)
	CheckChainMigration = "chain.migration" // a migrate-out and its migrate-in
)

// Reason codes of the chain audit's findings.
const (
	ReasonLinked            = "linked"             // a link that holds (affirming)
	ReasonStart             = "start"              // a chain starts at seq 0 without prev (affirming)
	ReasonHandover          = "handover"           // a migration moved the VM from one host chain to another
	ReasonGap               = "gap"                // reports or guest evidence missing
	ReasonFork              = "fork"               // two reports at one host seq
	ReasonRollback          = "rollback"           // the guest went back to an earlier state, and a restore report says so
	ReasonRewind            = "rewind"             // the guest went back to an earlier state and no restore says so
	ReasonBrokenLink        = "broken_link"        // prev names something else than the predecessor
	ReasonMigrationMismatch = "migration_mismatch" // a migrate-in does not continue the migrate-out's guest chain
	ReasonUnpairedMigration = "unpaired_migration" // a migrate-out without migrate-in, or the reverse
	ReasonDuplicate         = "duplicate"          // the same report twice, or one guest evidence in two reports
	ReasonAgentRestart      = "agent_restart"      // a new guest key outside a boot report
	ReasonUnverified        = "unverified"         // the report failed verification before its signature held
	ReasonNoEvidence        = "no_evidence"        // a host report without guest evidence
	ReasonVerifyFailed      = "verify_failed"      // authentic, but failed a later verification step
	ReasonDrift             = "drift"              // a region drifted from the verifier's reference (warning)
	ReasonRollbackWindow    = "rollback_window"    // evidence missing around a snapshot or restore: a rollback could hide there
	ReasonKeyReuse          = "key_reuse"          // one guest key under two VM names: a relabelled or cloned VM
)

// ChainEntry is one report in a VM's timeline.
type ChainEntry struct {
	Report   string         `json:"report"`
	Hash     attest.Digest  `json:"hash"`
	Event    attest.Event   `json:"event"`
	Host     string         `json:"host"`
	KeyID    attest.Digest  `json:"key_id"`
	Seq      uint64         `json:"seq"`
	GuestSeq *uint64        `json:"guest_seq,omitempty"`
	GuestKey *attest.Digest `json:"guest_key,omitempty"`
	IssuedAt time.Time      `json:"issued_at"`
	Agent    string         `json:"agent,omitempty"`
	// Status is the worst status of the findings about this report.
	Status Status `json:"status"`
	// Notes are the reasons of its findings that are not plain links.
	Notes []string `json:"notes,omitempty"`
}

// VMHistory is the audit of one workload: its reports in order and the
// findings about them.
type VMHistory struct {
	VM string `json:"vm"`
	Verdict
	Timeline []ChainEntry `json:"timeline"`
}

// ChainAudit is the outcome of AuditChain: the overall verdict (every
// finding) and one history per VM, sorted by VM name.
type ChainAudit struct {
	Verdict
	VMs []VMHistory `json:"vms"`
}

// node is one authenticated report in the audit.
type node struct {
	name   string
	res    *attest.Result
	err    error
	extra  []Finding
	rep    *attest.Report
	hash   attest.Digest
	host   string // host name: the observations' host, else the attester name
	chain  hostChain
	guest  *attest.GuestEvidence
	ghash  attest.Digest
	gkey   attest.Digest
	entry  *ChainEntry
	vm     *vmAudit
	order  int   // position in the VM's timeline
	dupOf  *node // set when its guest evidence is already in another report
	gprev  *node // the evidence its guest evidence plainly follows (seq one above, prev its hash)
	gnew   bool  // its guest evidence is its key's first
	parent []*node
	kids   []*node
}

// hostChain identifies a host chain: one signing key under one host name.
// Hosts that share a key (as hvmon demo's two do) keep separate chains,
// each counting from 0.
type hostChain struct {
	kid  attest.Digest
	host string
}

func (c hostChain) String() string { return fmt.Sprintf("%s (key %s)", c.host, shortID(c.kid)) }

func shortID(d attest.Digest) string { return d.String()[:12] }

// AuditChain audits the report histories in reports, which may mix VMs and
// signing hosts, in any order. The verdict does not depend on the order of
// reports. See docs/FORMAT.md, "Chain audit", for the rules.
func AuditChain(reports []ChainReport) *ChainAudit {
	in := slices.Clone(reports)
	slices.SortStableFunc(in, func(a, b ChainReport) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(resultHash(a.Result), resultHash(b.Result)))
	})
	audit := &ChainAudit{}
	byHash := map[attest.Digest]*node{}
	byVM := map[string][]*node{}
	unverified := 0
	for _, r := range in {
		if r.Result == nil || r.Result.Report == nil {
			unverified++
			detail := "not verified"
			if r.Err != nil {
				detail = r.Err.Error()
			}
			audit.Add(Finding{Check: CheckChainReport, Status: Contraindicated, Reason: ReasonUnverified, Subject: r.Name,
				Detail: detail + "; it takes no part in the chains"})
			for _, f := range r.Findings {
				f.Subject = r.Name
				audit.Add(f)
			}
			continue
		}
		h := r.Result.ReportHash
		if first, dup := byHash[h]; dup {
			audit.Add(Finding{Check: CheckChainReport, Status: Warning, Reason: ReasonDuplicate, Subject: r.Name,
				Detail: fmt.Sprintf("the same report (hash %s) as %s; counted once", shortID(h), first.name)})
			continue
		}
		n := newNode(r)
		byHash[h] = n
		byVM[n.rep.Workload] = append(byVM[n.rep.Workload], n)
	}
	vms := make([]string, 0, len(byVM))
	for vm := range byVM {
		vms = append(vms, vm)
	}
	slices.Sort(vms)
	audits := make([]*vmAudit, len(vms))
	for i, vm := range vms {
		audits[i] = auditVM(vm, byVM[vm], unverified)
	}
	checkGuestKeys(audits)
	for _, a := range audits {
		h := a.finish()
		audit.Merge(h.Verdict)
		audit.VMs = append(audit.VMs, *h)
	}
	if audit.Findings == nil {
		audit.Status = None
	}
	return audit
}

func resultHash(r *attest.Result) string {
	if r == nil {
		return ""
	}
	return r.ReportHash.String()
}

func newNode(r ChainReport) *node {
	rep := r.Result.Report
	n := &node{name: r.Name, res: r.Result, err: r.Err, extra: r.Findings, rep: rep, hash: r.Result.ReportHash, host: rep.Attester.Name}
	if rep.Host != nil {
		n.host = rep.Host.Host
	}
	n.chain = hostChain{kid: r.Result.KeyID, host: n.host}
	if g := r.Result.Guest; g != nil && r.Result.GuestHash != nil {
		n.guest, n.ghash, n.gkey = g, *r.Result.GuestHash, attest.KeyIDOf(g.GuestKey)
	}
	n.entry = &ChainEntry{Report: r.Name, Hash: n.hash, Event: rep.Event, Host: n.host, KeyID: r.Result.KeyID,
		Seq: rep.Seq, IssuedAt: rep.IssuedAt, Status: Affirming}
	if rep.Host != nil {
		n.entry.Agent = string(rep.Host.Agent)
	}
	if n.guest != nil {
		s, k := n.guest.Seq, n.gkey
		n.entry.GuestSeq, n.entry.GuestKey = &s, &k
	}
	return n
}

// add records a finding about report n.
func (n *node) add(f Finding) {
	f.Subject = n.name
	n.vm.h.Add(f)
	n.entry.Status = Worse(n.entry.Status, f.Status)
	if (f.Status != Affirming || f.Reason == ReasonHandover) && !slices.Contains(n.entry.Notes, f.Reason) {
		n.entry.Notes = append(n.entry.Notes, f.Reason)
	}
}

// vmAudit is one VM's audit in progress.
type vmAudit struct {
	h     *VMHistory
	nodes []*node // in timeline order
	// missing says, in a gap's detail, that reports which failed
	// verification may be the missing ones.
	missing string
}

func auditVM(vm string, nodes []*node, unverified int) *vmAudit {
	h := &VMHistory{VM: vm}
	nodes = timeline(nodes)
	a := &vmAudit{h: h, nodes: nodes}
	if unverified > 0 {
		a.missing = fmt.Sprintf(" (%d report(s) given failed verification and count as missing)", unverified)
	}
	for _, n := range nodes {
		n.vm = a
	}
	for i, n := range nodes {
		n.order = i
	}
	for _, n := range nodes {
		checkReport(n)
	}
	checkHostChains(nodes)
	checkGuestChains(nodes)
	checkWindows(nodes)
	checkMigrations(nodes)
	return a
}

// finish puts the VM's findings in timeline order, each report's in check
// order, and fills in its timeline.
func (a *vmAudit) finish() *VMHistory {
	h := a.h
	order := map[string]int{}
	for _, n := range a.nodes {
		order[n.name] = n.order
	}
	// A report's own findings first, then the ones passed in, then its links.
	rank := func(check string) int {
		switch check {
		case CheckChainReport:
			return 0
		case CheckChainHost:
			return 2
		case CheckChainGuest:
			return 3
		case CheckChainMigration:
			return 4
		}
		return 1
	}
	slices.SortStableFunc(h.Findings, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(order[a.Subject], order[b.Subject]), cmp.Compare(rank(a.Check), rank(b.Check)))
	})
	for _, n := range a.nodes {
		h.Timeline = append(h.Timeline, *n.entry)
	}
	return h
}

// checkReport turns the report's own verification outcome into findings.
func checkReport(n *node) {
	for _, f := range n.extra {
		n.add(f)
	}
	verr := n.err
	switch {
	case n.rep.Host != nil && n.guest == nil && (verr == nil || errors.Is(verr, attest.ErrIncomplete)):
		agent := string(n.rep.Host.Agent)
		detail := "no guest evidence: agent " + agent
		if n.rep.Host.Detail != "" {
			detail += " (" + n.rep.Host.Detail + ")"
		}
		detail += "; the report attests no guest memory and takes no part in the guest chain"
		if n.rep.Event == attest.EventShutdown && agent == "none" {
			// The host says the guest is gone: nothing to ask, nothing
			// missing. That is the host's word, so it holds only while
			// the guest chain agrees: the guest that was running must
			// not carry on afterwards as if it had not stopped.
			last, next := evidenceAround(n)
			if last == nil || next == nil || next.gkey != last.gkey || next.rep.Event == attest.EventRestore {
				return
			}
			detail += fmt.Sprintf("; the host says the guest shut down, but the guest chain of key %s carries on at %s (%s), which is no restore",
				shortID(next.gkey), next.name, next.rep.Event)
		}
		n.add(Finding{Check: CheckChainReport, Status: Warning, Reason: ReasonNoEvidence, Detail: detail})
	case verr != nil:
		n.add(Finding{Check: CheckChainReport, Status: Contraindicated, Reason: ReasonVerifyFailed,
			Detail: "authentic, but " + verr.Error()})
	case len(n.res.Drift) > 0:
		ids := make([]string, len(n.res.Drift))
		for i, d := range n.res.Drift {
			ids[i] = d.RegionID
			if len(d.Changed) > 0 {
				pages := make([]string, len(d.Changed))
				for j, r := range d.Changed {
					pages[j] = r.String()
				}
				ids[i] += " (changed " + strings.Join(pages, ", ") + ")"
			}
		}
		n.add(Finding{Check: CheckChainReport, Status: Warning, Reason: ReasonDrift,
			Detail: fmt.Sprintf("region(s) %s differ from the reference", strings.Join(ids, ", "))})
	}
}

// timeline orders a VM's reports: every report after the report its host
// prev names and after the report holding the guest evidence its guest prev
// names; among reports free to go next, the earliest issued (then host
// event time, host, seq, hash). The order depends only on the reports.
func timeline(nodes []*node) []*node {
	byHash := map[attest.Digest]*node{}
	byGuest := map[attest.Digest]*node{}
	sorted := slices.Clone(nodes)
	slices.SortFunc(sorted, earlier)
	for _, n := range sorted {
		byHash[n.hash] = n
		if n.guest != nil {
			if first, ok := byGuest[n.ghash]; ok {
				n.dupOf = first
			} else {
				byGuest[n.ghash] = n
			}
		}
	}
	link := func(from, to *node) {
		if from != nil && from != to && !slices.Contains(to.parent, from) {
			to.parent = append(to.parent, from)
			from.kids = append(from.kids, to)
		}
	}
	for _, n := range sorted {
		if p := n.rep.Prev; p != nil {
			link(byHash[*p], n)
		}
		if n.guest != nil && n.guest.Prev != nil {
			link(byGuest[*n.guest.Prev], n)
		}
		if n.dupOf != nil {
			link(n.dupOf, n)
		}
	}
	waiting := map[*node]int{}
	ready := &nodeHeap{}
	for _, n := range sorted {
		waiting[n] = len(n.parent)
		if len(n.parent) == 0 {
			heap.Push(ready, n)
		}
	}
	out := make([]*node, 0, len(nodes))
	done := map[*node]bool{}
	for len(out) < len(sorted) {
		if ready.Len() == 0 {
			// A cycle of prev links (impossible without a SHA3-256
			// collision): release the earliest report still waiting.
			for _, n := range sorted {
				if !done[n] {
					heap.Push(ready, n)
					waiting[n] = 0
					break
				}
			}
		}
		n := heap.Pop(ready).(*node)
		if done[n] {
			continue
		}
		done[n] = true
		out = append(out, n)
		for _, k := range n.kids {
			if waiting[k]--; waiting[k] == 0 && !done[k] {
				heap.Push(ready, k)
			}
		}
	}
	return out
}

func earlier(a, b *node) int {
	return cmp.Or(a.rep.IssuedAt.Compare(b.rep.IssuedAt), eventAt(a).Compare(eventAt(b)),
		cmp.Compare(a.host, b.host), cmp.Compare(a.rep.Seq, b.rep.Seq), cmp.Compare(a.hash.String(), b.hash.String()))
}

func eventAt(n *node) time.Time {
	if n.rep.Host != nil {
		return n.rep.Host.EventAt
	}
	return time.Time{}
}

type nodeHeap []*node

func (h nodeHeap) Len() int           { return len(h) }
func (h nodeHeap) Less(i, j int) bool { return earlier(h[i], h[j]) < 0 }
func (h nodeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *nodeHeap) Push(x any)        { *h = append(*h, x.(*node)) }
func (h *nodeHeap) Pop() any {
	old := *h
	n := old[len(old)-1]
	*h = old[:len(old)-1]
	return n
}

// checkHostChains checks each host chain: seq counts up from 0 by one and
// prev is the hash of the report at the seq before.
func checkHostChains(nodes []*node) {
	chains := map[hostChain][]*node{}
	var keys []hostChain
	for _, n := range nodes {
		if _, ok := chains[n.chain]; !ok {
			keys = append(keys, n.chain)
		}
		chains[n.chain] = append(chains[n.chain], n)
	}
	for _, k := range keys {
		c := chains[k]
		bySeq := map[uint64][]*node{}
		for _, n := range c {
			bySeq[n.rep.Seq] = append(bySeq[n.rep.Seq], n)
		}
		for _, n := range c {
			checkHostLink(k, n, c, bySeq)
		}
	}
}

func checkHostLink(k hostChain, n *node, chain []*node, bySeq map[uint64][]*node) {
	seq := n.rep.Seq
	add := func(st Status, reason, format string, args ...any) {
		n.add(Finding{Check: CheckChainHost, Status: st, Reason: reason, Detail: fmt.Sprintf("host %s: ", k) + fmt.Sprintf(format, args...)})
	}
	if same := bySeq[seq]; same[0] != n {
		add(Contraindicated, ReasonFork, "a second report at host seq %d, after %s: the host chain forks%s",
			seq, same[0].name, samePrev(same[0], n))
	}
	if seq == 0 {
		if n.rep.Prev != nil {
			add(Contraindicated, ReasonBrokenLink, "seq 0 names a predecessor %s", shortID(*n.rep.Prev))
		} else if bySeq[0][0] == n {
			add(Affirming, ReasonStart, "the host chain starts at seq 0")
		}
		return
	}
	preds := bySeq[seq-1]
	if len(preds) == 0 {
		var below uint64
		found := false
		for _, m := range chain {
			if m.rep.Seq < seq && (!found || m.rep.Seq > below) {
				below, found = m.rep.Seq, true
			}
		}
		if !found {
			add(Contraindicated, ReasonGap, "the history starts at seq %d: the reports at seq 0 to %d are missing%s", seq, seq-1, n.vm.missing)
		} else {
			add(Contraindicated, ReasonGap, "seq %d follows seq %d: %d report(s) missing%s", seq, below, seq-below-1, n.vm.missing)
		}
		return
	}
	if n.rep.Prev == nil {
		add(Contraindicated, ReasonBrokenLink, "seq %d names no predecessor", seq)
		return
	}
	for _, p := range preds {
		if p.hash == *n.rep.Prev {
			if bySeq[seq][0] == n {
				add(Affirming, ReasonLinked, "seq %d follows seq %d (%s)", seq, seq-1, p.name)
			}
			return
		}
	}
	add(Contraindicated, ReasonBrokenLink, "seq %d names predecessor %s, not %s at seq %d", seq, shortID(*n.rep.Prev), preds[0].name, seq-1)
}

func samePrev(a, b *node) string {
	if a.rep.Prev != nil && b.rep.Prev != nil && *a.rep.Prev == *b.rep.Prev {
		return " (both follow " + shortID(*a.rep.Prev) + ")"
	}
	return ""
}

// guestChain is the state of one agent's chain (one guest key) while the
// timeline is walked.
type guestChain struct {
	head   *node
	byHash map[attest.Digest]*node
}

// checkGuestChains walks the timeline and checks every guest evidence
// against its agent's chain: seq one above the last evidence's, prev its
// hash. A guest that goes back (a seq not above the last, or a prev that
// another evidence already followed) was rolled back: explained when the
// report is a restore, unexplained otherwise. Reports without guest
// evidence take no part.
func checkGuestChains(nodes []*node) {
	chains := map[attest.Digest]*guestChain{}
	var last *node // the last report with guest evidence, of any key
	for _, n := range nodes {
		if n.guest == nil {
			continue
		}
		add := func(st Status, reason, format string, args ...any) {
			n.add(Finding{Check: CheckChainGuest, Status: st, Reason: reason, Detail: fmt.Sprintf(format, args...)})
		}
		if n.dupOf != nil {
			add(Contraindicated, ReasonDuplicate, "its guest evidence %s is already in %s: guest evidence replayed", shortID(n.ghash), n.dupOf.name)
			continue
		}
		c := chains[n.gkey]
		if c == nil {
			c = &guestChain{byHash: map[attest.Digest]*node{}}
			chains[n.gkey] = c
			n.gnew = true
			startGuestChain(n, last, add)
		} else {
			checkGuestLink(n, c, add)
		}
		c.head = n
		c.byHash[n.ghash] = n
		last = n
	}
}

func startGuestChain(n, last *node, add func(Status, string, string, ...any)) {
	g := n.guest
	key := shortID(n.gkey)
	switch {
	case g.Seq != 0 || g.Prev != nil:
		add(Contraindicated, ReasonGap, "the guest chain of key %s starts at seq %d: evidence seq 0 to %d is missing%s", key, g.Seq, int64(g.Seq)-1, n.vm.missing)
	case last != nil && n.rep.Event != attest.EventBoot:
		add(Warning, ReasonAgentRestart, "a new guest key %s after key %s (%s), outside a boot report: the agent restarted", key, shortID(last.gkey), last.name)
	case last != nil:
		// The event is the host's word: it explains the new key but does
		// not prove that the guest rebooted rather than that its agent
		// was restarted in a running (perhaps rolled back) guest.
		add(Warning, ReasonAgentRestart, "a new guest key %s after key %s (%s): the guest chain starts again at seq 0; "+
			"the host says the guest booted, which the guest chain cannot confirm", key, shortID(last.gkey), last.name)
	default:
		add(Affirming, ReasonStart, "the guest chain of key %s starts at seq 0", key)
	}
}

func checkGuestLink(n *node, c *guestChain, add func(Status, string, string, ...any)) {
	g, head := n.guest, c.head
	hs := head.guest.Seq
	var parent *node
	if g.Prev != nil {
		parent = c.byHash[*g.Prev]
	}
	if parent != nil && parent == head && g.Seq == hs+1 {
		n.gprev = head
		add(Affirming, ReasonLinked, "guest seq %d follows seq %d (%s)", g.Seq, hs, head.name)
		return
	}
	// A fork: the evidence continues from an earlier point of the chain
	// (an evidence that another already followed, or the chain's start).
	fork := parent != nil && parent != head || g.Prev == nil
	rewind := g.Seq <= hs
	if fork || rewind {
		what := fmt.Sprintf("guest seq goes back from %d (%s) to %d", hs, head.name, g.Seq)
		if !rewind {
			what = fmt.Sprintf("guest seq %d after %d (%s)", g.Seq, hs, head.name)
		}
		switch {
		case parent != nil:
			what += fmt.Sprintf("; the guest chain forks after seq %d (%s)", parent.guest.Seq, parent.name)
		case g.Prev == nil:
			what += "; the guest chain forks at its start"
		default:
			what += fmt.Sprintf("; its prev %s is not in the history", shortID(*g.Prev))
		}
		if n.rep.Event == attest.EventRestore {
			add(Contraindicated, ReasonRollback, "rollback: %s; explained by this restore report%s%s", what, jobOf(n), savedAt(n))
		} else if rewind {
			add(Contraindicated, ReasonRewind, "unexplained rollback at a %s report, not a restore: %s%s", n.rep.Event, what, unattestedBetween(n, head))
		} else {
			add(Contraindicated, ReasonFork, "unexplained fork at a %s report, not a restore: %s%s", n.rep.Event, what, unattestedBetween(n, head))
		}
		return
	}
	if parent == head {
		add(Contraindicated, ReasonBrokenLink, "guest seq %d follows seq %d (%s) directly", g.Seq, hs, head.name)
		return
	}
	// prev names evidence missing from the history.
	if g.Seq == hs+1 {
		add(Contraindicated, ReasonBrokenLink, "guest seq %d follows seq %d (%s), but its prev %s is another evidence, not in the history",
			g.Seq, hs, head.name, shortID(*g.Prev))
		return
	}
	missing := g.Seq - hs - 1
	// A host's record that it rejected the missing evidence explains the
	// gap but does not close it: the host holds that evidence and could
	// say so of any evidence it withholds.
	why := ""
	if r := rejectedBy(n, *g.Prev); r != nil {
		why = fmt.Sprintf("; the host says in %s (agent %s) that it received and rejected evidence %s: its own statement, and the evidence stays unseen",
			r.name, r.rep.Host.Agent, shortID(*g.Prev))
	}
	add(Contraindicated, ReasonGap, "guest seq %d follows seq %d (%s): %d evidence(s) missing%s%s", g.Seq, hs, head.name, missing, n.vm.missing, why)
}

// rejectedBy finds the report, before n, in which the host recorded that it
// rejected the guest evidence with hash h. It only ever adds to a
// finding's detail.
func rejectedBy(n *node, h attest.Digest) *node {
	for _, m := range n.vm.nodes {
		if m.order < n.order && m.rep.Host != nil && m.rep.Host.Facts["rejected_evidence_hash"] == h.String() {
			return m
		}
	}
	return nil
}

// evidenceAround returns the nearest reports before and after n in its
// VM's timeline that carry guest evidence of their own (nil at either end
// of the history).
func evidenceAround(n *node) (last, next *node) {
	nodes := n.vm.nodes
	for i := n.order - 1; i >= 0 && last == nil; i-- {
		if m := nodes[i]; m.guest != nil && m.dupOf == nil {
			last = m
		}
	}
	for i := n.order + 1; i < len(nodes) && next == nil; i++ {
		if m := nodes[i]; m.guest != nil && m.dupOf == nil {
			next = m
		}
	}
	return last, next
}

// window names the reports that bound a window: the report with guest
// evidence before and the one after.
func window(last, next *node) string {
	from, to := "the start of the history", "the end of the history"
	if last != nil {
		from = fmt.Sprintf("%s (guest seq %d)", last.name, last.guest.Seq)
	}
	if next != nil {
		to = fmt.Sprintf("%s (guest seq %d)", next.name, next.guest.Seq)
	}
	return "from " + from + " to " + to
}

// checkWindows finds where a rollback could hide behind missing guest
// evidence. A rollback shows in the guest chain only when the agent signed
// evidence after the state that was saved and again after the restore:
// a snapshot or a restore without guest evidence, or a restore whose
// evidence plainly follows evidence signed before reports that carry
// none, or that starts a new guest key, leaves a window in which the
// guest chain cannot tell a rollback from a straight run. Each is a
// warning naming the window.
func checkWindows(nodes []*node) {
	for _, n := range nodes {
		ev := n.rep.Event
		if ev != attest.EventSnapshot && ev != attest.EventRestore || n.dupOf != nil {
			continue
		}
		add := func(format string, args ...any) {
			n.add(Finding{Check: CheckChainGuest, Status: Warning, Reason: ReasonRollbackWindow, Detail: fmt.Sprintf(format, args...)})
		}
		last, next := evidenceAround(n)
		switch {
		case n.guest == nil && ev == attest.EventSnapshot:
			add("a snapshot without guest evidence: a restore to the state it saved, before the next guest evidence, would look like a straight run; window %s",
				window(last, next))
		case n.guest == nil:
			add("a restore without guest evidence: the state it returned to is not attested, and a rollback to a state saved without guest evidence would look like a straight run; window %s",
				window(last, next))
		case ev != attest.EventRestore:
		case n.gprev != nil && n.gprev.order < n.order-1 && unattestedBetween(n, n.gprev) == "":
			// (A snapshot or restore without evidence in between
			// names this same window itself.)
			between := n.vm.nodes[n.gprev.order+1 : n.order]
			add("the restore's guest evidence follows %s's directly: it returned the VM to the state right after that evidence, and "+
				"what the VM went through in the %d report(s) between without guest evidence (%s to %s) may have been undone; window %s",
				n.gprev.name, len(between), between[0].name, between[len(between)-1].name, window(n.gprev, n))
		case n.gnew && last != nil:
			add("the restore's guest evidence starts a new guest key: the state it returned to cannot be compared with any snapshot; window %s",
				window(last, n))
		}
	}
}

// unattestedBetween names the snapshot and restore reports without guest
// evidence between head and n (for the detail of a fork or rewind that no
// restore report with evidence explains), or returns "".
func unattestedBetween(n, head *node) string {
	var names []string
	for _, m := range n.vm.nodes[head.order+1 : n.order] {
		if m.guest == nil && (m.rep.Event == attest.EventRestore || m.rep.Event == attest.EventSnapshot) {
			names = append(names, fmt.Sprintf("%s %s", m.rep.Event, m.name))
		}
	}
	if len(names) == 0 {
		return ""
	}
	return "; in between, without guest evidence: " + strings.Join(names, ", ")
}

// checkGuestKeys finds guest keys that sign evidence under more than one
// VM name. A guest key is made in the guest and never leaves its memory:
// the same key under another name is the same guest relabelled, or a
// clone of its memory. The first report with the key in each of the VMs
// is contraindicated, naming the others.
func checkGuestKeys(audits []*vmAudit) {
	type use struct {
		a     *vmAudit
		first *node
	}
	byKey := map[attest.Digest][]use{}
	var keys []attest.Digest
	for _, a := range audits {
		seen := map[attest.Digest]bool{}
		for _, n := range a.nodes {
			if n.guest == nil || seen[n.gkey] {
				continue
			}
			seen[n.gkey] = true
			if _, ok := byKey[n.gkey]; !ok {
				keys = append(keys, n.gkey)
			}
			byKey[n.gkey] = append(byKey[n.gkey], use{a, n})
		}
	}
	for _, k := range keys {
		us := byKey[k]
		if len(us) < 2 {
			continue
		}
		for _, u := range us {
			var others []string
			for _, o := range us {
				if o.a != u.a {
					others = append(others, fmt.Sprintf("VM %q (first in %s)", o.a.h.VM, o.first.name))
				}
			}
			u.first.add(Finding{Check: CheckChainGuest, Status: Contraindicated, Reason: ReasonKeyReuse,
				Detail: fmt.Sprintf("guest key %s also signs guest evidence of %s: a guest key never leaves its VM's memory, so the same key under another VM name is a relabelled or cloned VM",
					shortID(k), strings.Join(others, ", "))})
		}
	}
}

func jobOf(n *node) string {
	if n.rep.Host == nil {
		return ""
	}
	f := n.rep.Host.Facts
	switch {
	case f["job_type"] != "":
		return " (" + f["job_type"] + ")"
	case f["snapshot"] != "":
		return " (snapshot " + f["snapshot"] + ")"
	}
	return ""
}

// savedAt names the snapshot report whose state a restore returned to: the
// latest earlier snapshot report whose guest evidence has the same prev
// (the agent signed it right after the state was saved), or else the
// latest at the same guest seq.
func savedAt(n *node) string {
	var sibling, sameSeq *node
	for _, m := range n.vm.nodes[:n.order] {
		if m.rep.Event != attest.EventSnapshot || m.guest == nil || m.gkey != n.gkey {
			continue
		}
		if ptrEq(m.guest.Prev, n.guest.Prev) {
			sibling = m
		} else if m.guest.Seq == n.guest.Seq {
			sameSeq = m
		}
	}
	switch {
	case sibling != nil:
		return ", which returned the VM to the state saved at snapshot report " + sibling.name
	case sameSeq != nil:
		return ", which returned the VM to the state saved at snapshot report " + sameSeq.name
	}
	return "; no snapshot report of the restored state is in the history"
}

func ptrEq(a, b *attest.Digest) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

// checkMigrations pairs every migrate-out with the migrate-in whose guest
// evidence follows its guest evidence, and names the host handover; a
// migrate-in that follows another evidence is a mismatch.
func checkMigrations(nodes []*node) {
	var outs, ins []*node
	for _, n := range nodes {
		switch n.rep.Event {
		case attest.EventMigrateOut:
			outs = append(outs, n)
		case attest.EventMigrateIn:
			ins = append(ins, n)
		}
	}
	paired := map[*node]bool{}
	pairs := map[*node]*node{}
	for _, o := range outs {
		if o.guest == nil {
			continue
		}
		for _, i := range ins {
			if !paired[i] && i.guest != nil && i.dupOf == nil && i.guest.Prev != nil && *i.guest.Prev == o.ghash {
				pairs[o], paired[i] = i, true
				break
			}
		}
	}
	for _, o := range outs {
		if i := pairs[o]; i != nil {
			detail := fmt.Sprintf("the VM moved from host %s to host %s: %s's guest evidence (seq %d) follows %s's (seq %d)",
				o.chain, i.chain, i.name, i.guest.Seq, o.name, o.guest.Seq)
			if o.chain == i.chain {
				detail = fmt.Sprintf("the VM migrated within host %s: %s's guest evidence follows %s's", o.chain, i.name, o.name)
			}
			i.add(Finding{Check: CheckChainMigration, Status: Affirming, Reason: ReasonHandover, Detail: detail})
			continue
		}
		// The next unpaired migrate-in, unless another migrate-out comes first.
		var next *node
		for _, i := range ins {
			if !paired[i] && i.order > o.order {
				next = i
				break
			}
		}
		for _, o2 := range outs {
			if next != nil && o2 != o && o2.order > o.order && o2.order < next.order {
				next = nil
			}
		}
		if next == nil {
			o.add(Finding{Check: CheckChainMigration, Status: Warning, Reason: ReasonUnpairedMigration,
				Detail: fmt.Sprintf("no migrate-in report follows this migrate-out from host %s", o.chain)})
			continue
		}
		paired[next] = true
		switch {
		case o.guest == nil || next.guest == nil:
			next.add(Finding{Check: CheckChainMigration, Status: Warning, Reason: ReasonHandover,
				Detail: fmt.Sprintf("the VM moved from host %s to host %s (%s then %s), unproven: no guest evidence links them",
					o.chain, next.chain, o.name, next.name)})
		default:
			prev := "no prev"
			if next.guest.Prev != nil {
				prev = "prev " + shortID(*next.guest.Prev)
			}
			next.add(Finding{Check: CheckChainMigration, Status: Contraindicated, Reason: ReasonMigrationMismatch,
				Detail: fmt.Sprintf("migrate-in on host %s has guest %s, not %s, the guest evidence of migrate-out %s on host %s",
					next.chain, prev, shortID(o.ghash), o.name, o.chain)})
		}
	}
	for _, i := range ins {
		if !paired[i] {
			i.add(Finding{Check: CheckChainMigration, Status: Warning, Reason: ReasonUnpairedMigration,
				Detail: fmt.Sprintf("no migrate-out report precedes this migrate-in on host %s", i.chain)})
		}
	}
}
