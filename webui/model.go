package webui

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/internal/boundedfile"
	"hvmon.dev/hvmon/internal/reportview"
	"hvmon.dev/hvmon/internal/storeaudit"
	"hvmon.dev/hvmon/policy"
	"hvmon.dev/hvmon/tlog"
)

// stored is one report of the store, read and verified.
type stored struct {
	entry host.Entry
	name  string // the file's base name: the audit's name for the report
	res   *attest.Result
	err   error              // verification error (or read error)
	in    *attest.Inspection // nil when the report does not decode
	logs  map[string]host.APILogState
	// proofs are the checks of its proof files, with Options.Log.
	proofs []ProofCheck
}

// ProofCheck is the outcome of verifying one proof file beside a report
// against the --log-key policy.
type ProofCheck struct {
	Label    string `json:"label"`
	Verified bool   `json:"verified"`
	Index    uint64 `json:"index,omitempty"`
	TreeSize uint64 `json:"tree_size,omitempty"`
	Error    string `json:"error,omitempty"`
}

type proofKey struct {
	hash  attest.Digest
	label string
}

// verified is the cached outcome of reading and verifying one report: a
// stored report never changes (its name is its hash).
type verified struct {
	res *attest.Result
	err error
	in  *attest.Inspection
}

// view is everything the pages show, built from one listing of the store.
type view struct {
	at        time.Time
	truncated bool
	labels    []string
	reports   []*stored
	byHash    map[attest.Digest]*stored
	byName    map[string]*stored
	audit     *policy.ChainAudit
	vms       map[string]*policy.VMHistory
	// byVMDir groups reports by the VM directory they are stored under
	// (the store's word, not verified): how a report that did not verify
	// is still shown with its VM.
	byVMDir map[string][]*stored
}

// load lists the store, verifies what it has not verified before, and
// audits every report as one history, as hvmon log verify does.
func (s *Server) load(ctx context.Context) (*view, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	es, err := s.opts.Store.List(ctx, host.Query{Limit: s.opts.maxReports() + 1})
	if err != nil {
		return nil, err
	}
	v := &view{at: s.opts.now(), byHash: map[attest.Digest]*stored{}, byName: map[string]*stored{},
		vms: map[string]*policy.VMHistory{}, byVMDir: map[string][]*stored{}}
	if len(es) > s.opts.maxReports() {
		v.truncated = true
		es = es[len(es)-s.opts.maxReports():]
	}
	if v.labels, err = s.opts.Store.LogLabels(ctx); err != nil {
		return nil, err
	}
	seen := make(map[attest.Digest]verified, len(es))
	var in []policy.ChainReport
	for _, e := range es {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		vr, ok := s.cache[e.Hash]
		if !ok {
			vr = s.verify(e)
		}
		seen[e.Hash] = vr
		st := &stored{entry: e, name: filepath.Base(e.Path), res: vr.res, err: vr.err, in: vr.in}
		for _, l := range v.labels {
			ls, err := s.opts.Store.LogState(e, l)
			if err != nil {
				return nil, err
			}
			if st.logs == nil {
				st.logs = map[string]host.APILogState{}
			}
			st.logs[l] = host.NewAPILogState(ls)
			if s.opts.Log != nil && ls.State == host.LogLogged {
				st.proofs = append(st.proofs, s.checkProof(e, l))
			}
		}
		v.reports = append(v.reports, st)
		v.byHash[e.Hash] = st
		v.byName[st.name] = st
		v.byVMDir[e.VM] = append(v.byVMDir[e.VM], st)
		cr := policy.ChainReport{Name: st.name, Result: st.res, Err: st.err}
		if s.opts.Policy != nil && st.err == nil {
			cr.Findings = storeaudit.AboutReport(s.opts.Policy.At(st.res.Report.IssuedAt).AppraiseResult(st.res), st.res.Report.Workload)
		}
		in = append(in, cr)
	}
	s.cache = seen // keeps only what the store still lists: bounded by maxReports
	v.audit = policy.AuditChain(in)
	for i := range v.audit.VMs {
		v.vms[v.audit.VMs[i].VM] = &v.audit.VMs[i]
	}
	return v, nil
}

// verify reads one stored report and verifies it as of its own issued-at.
func (s *Server) verify(e host.Entry) verified {
	b, err := boundedfile.Read(e.Path, attest.MaxReportSize)
	if err != nil {
		return verified{res: &attest.Result{}, err: fmt.Errorf("read %s: %w", filepath.Base(e.Path), err)}
	}
	if attest.ReportHash(b) != e.Hash {
		return verified{res: &attest.Result{}, err: fmt.Errorf("%w: the file no longer hashes to the name it was stored under", attest.ErrSignature)}
	}
	in, _ := attest.Inspect(b)
	res, err := storeaudit.VerifyStored(b, s.opts.Verify)
	return verified{res: res, err: err, in: in}
}

// checkProof verifies e's proof file for the log label against
// Options.Log. A proof that verified is cached; one that did not is
// checked again next time.
func (s *Server) checkProof(e host.Entry, label string) ProofCheck {
	k := proofKey{e.Hash, label}
	if pc, ok := s.proofs[k]; ok {
		return pc
	}
	pc := ProofCheck{Label: label}
	data, err := boundedfile.Read(e.Path, attest.MaxReportSize)
	if err != nil {
		pc.Error = err.Error()
		return pc
	}
	proof, err := s.opts.Store.Proof(e, label)
	if err != nil {
		pc.Error = err.Error()
		return pc
	}
	cp, index, err := tlog.VerifyProof(*s.opts.Log, data, proof)
	if err != nil {
		pc.Error = err.Error()
		return pc
	}
	pc.Verified, pc.Index, pc.TreeSize = true, index, cp.Size
	if s.proofs == nil {
		s.proofs = map[proofKey]ProofCheck{}
	}
	if len(s.proofs) < 4*s.opts.maxReports() {
		s.proofs[k] = pc
	}
	return pc
}

// LogSummary counts a VM's reports by their state in one log.
type LogSummary struct {
	Label   string `json:"label"`
	Logged  int    `json:"logged"`
	Pending int    `json:"pending"`
	Refused int    `json:"refused"`
	// Verified counts the proofs that verified against --log-key, and
	// Failed those that did not (both zero without it).
	Verified int `json:"verified,omitempty"`
	Failed   int `json:"failed,omitempty"`
}

// Fleet is the fleet page's data (GET /api/fleet).
type Fleet struct {
	Status    policy.Status `json:"status"`
	Reports   int           `json:"reports"`
	Truncated bool          `json:"truncated,omitempty"`
	// Logs are the labels of the logs the store keeps proofs for.
	Logs []string    `json:"logs"`
	VMs  []VMSummary `json:"vms"`
	// Unverified are the reports that did not verify, which no VM
	// vouches for.
	Unverified []ReportRef `json:"unverified"`
}

// VMSummary is one VM's line of the fleet page.
type VMSummary struct {
	VM         string        `json:"vm"`
	Hosts      []string      `json:"hosts"`
	Reports    int           `json:"reports"`
	Status     policy.Status `json:"status"`
	LastEvent  attest.Event  `json:"last_event"`
	LastHost   string        `json:"last_host"`
	LastReport attest.Digest `json:"last_report"`
	LastIssued time.Time     `json:"last_issued"`
	// AgeSeconds is the view's time minus LastIssued.
	AgeSeconds int64        `json:"age_seconds"`
	Logs       []LogSummary `json:"logs"`
}

// ReportRef names a stored report.
type ReportRef struct {
	Hash  attest.Digest `json:"hash"`
	Name  string        `json:"name"`
	VM    string        `json:"vm"` // the directory it is stored under
	Error string        `json:"error,omitempty"`
}

func (v *view) fleet() *Fleet {
	f := &Fleet{Status: v.audit.Status, Reports: len(v.reports), Truncated: v.truncated, Logs: v.labels,
		VMs: []VMSummary{}, Unverified: []ReportRef{}}
	if f.Logs == nil {
		f.Logs = []string{}
	}
	for _, h := range v.audit.VMs {
		sum := VMSummary{VM: h.VM, Status: h.Status, Reports: len(h.Timeline), Hosts: []string{}}
		counts := make([]LogSummary, len(v.labels))
		for i, l := range v.labels {
			counts[i].Label = l
		}
		for _, e := range h.Timeline {
			if !slices.Contains(sum.Hosts, e.Host) {
				sum.Hosts = append(sum.Hosts, e.Host)
			}
			if !e.IssuedAt.Before(sum.LastIssued) {
				sum.LastIssued, sum.LastEvent, sum.LastHost, sum.LastReport = e.IssuedAt, e.Event, e.Host, e.Hash
			}
			if st := v.byName[e.Report]; st != nil {
				for i, l := range v.labels {
					for _, pc := range st.proofs {
						if pc.Label != l {
							continue
						}
						if pc.Verified {
							counts[i].Verified++
						} else {
							counts[i].Failed++
						}
					}
					switch st.logs[l].State {
					case host.LogLogged.String():
						counts[i].Logged++
					case host.LogRefused.String():
						counts[i].Refused++
					default:
						counts[i].Pending++
					}
				}
			}
		}
		sum.AgeSeconds = int64(v.at.Sub(sum.LastIssued) / time.Second)
		sum.Logs = counts
		f.VMs = append(f.VMs, sum)
	}
	f.Unverified = v.unverified("")
	return f
}

// unverified lists the reports that did not verify (stored under vm, or
// all when vm is empty).
func (v *view) unverified(vm string) []ReportRef {
	out := []ReportRef{}
	for _, st := range v.reports {
		if st.res != nil && st.res.Report != nil {
			continue
		}
		if vm != "" && st.entry.VM != vm {
			continue
		}
		r := ReportRef{Hash: st.entry.Hash, Name: st.name, VM: st.entry.VM}
		if st.err != nil {
			r.Error = st.err.Error()
		}
		out = append(out, r)
	}
	return out
}

// Event is one report of a VM's timeline.
type Event struct {
	N        int                         `json:"n"` // 1-based place in the timeline
	Report   string                      `json:"report"`
	Hash     attest.Digest               `json:"hash"`
	Event    attest.Event                `json:"event"`
	Host     string                      `json:"host"`
	IssuedAt time.Time                   `json:"issued_at"`
	Seq      uint64                      `json:"seq"`
	GuestSeq *uint64                     `json:"guest_seq,omitempty"`
	Agent    string                      `json:"agent,omitempty"`
	Status   policy.Status               `json:"status"`
	Notes    []string                    `json:"notes,omitempty"`
	Logs     map[string]host.APILogState `json:"logs,omitempty"`
}

// DriftRow is one region of one report whose measurer named changed
// pages: the ranges over the region's pages.
type DriftRow struct {
	N        int                `json:"n"` // the report's place in the timeline
	Hash     attest.Digest      `json:"hash"`
	Event    attest.Event       `json:"event"`
	Region   string             `json:"region"`
	Size     uint64             `json:"size"`
	PageSize uint32             `json:"page_size"`
	Pages    int64              `json:"pages"`
	Changed  []attest.PageRange `json:"changed"`
	// Drifted is set when the verifier's expected roots (a policy) did not
	// hold the region's root.
	Drifted bool `json:"drifted,omitempty"`
}

// Text says which pages changed: "pages 3–5, page 10".
func (d DriftRow) Text() string {
	s := ""
	for i, r := range d.Changed {
		if i > 0 {
			s += ", "
		}
		s += r.String()
	}
	return s
}

// VM is the VM page's data (GET /api/vm/NAME).
type VM struct {
	VM         string           `json:"vm"`
	Status     policy.Status    `json:"status"`
	Hosts      []string         `json:"hosts"`
	Events     []Event          `json:"events"`
	Findings   []policy.Finding `json:"findings"`
	Drift      []DriftRow       `json:"drift"`
	Unverified []ReportRef      `json:"unverified"`
	// Notable are the findings the page lists: those that are not
	// affirming, and the handovers; the links that hold are counted in
	// Linked.
	Notable []Notable `json:"-"`
	Linked  int       `json:"-"`
}

// Notable is a finding with the timeline place of the report it is about.
type Notable struct {
	policy.Finding
	N    int
	Hash attest.Digest
	Ev   attest.Event
}

// maxDriftRows bounds the drift view: the newest rows are kept.
const maxDriftRows = 64

var errNoVM = errors.New("no such VM")

func (v *view) vm(name string) (*VM, error) {
	h := v.vms[name]
	if h == nil {
		if len(v.byVMDir[name]) == 0 {
			return nil, errNoVM
		}
		h = &policy.VMHistory{VM: name, Verdict: policy.Verdict{Status: policy.None}}
	}
	out := &VM{VM: h.VM, Status: h.Status, Hosts: []string{}, Events: []Event{}, Findings: h.Findings, Drift: []DriftRow{},
		Unverified: v.unverified(name)}
	if out.Findings == nil {
		out.Findings = []policy.Finding{}
	}
	for i, e := range h.Timeline {
		if !slices.Contains(out.Hosts, e.Host) {
			out.Hosts = append(out.Hosts, e.Host)
		}
		ev := Event{N: i + 1, Report: e.Report, Hash: e.Hash, Event: e.Event, Host: e.Host, IssuedAt: e.IssuedAt, Seq: e.Seq,
			GuestSeq: e.GuestSeq, Agent: e.Agent, Status: e.Status, Notes: e.Notes}
		st := v.byName[e.Report]
		if st != nil {
			ev.Logs = st.logs
		}
		out.Events = append(out.Events, ev)
		if st == nil || st.res == nil {
			continue
		}
		drifted := map[string]bool{}
		for _, d := range st.res.Drift {
			drifted[d.RegionID] = true
		}
		for _, c := range st.res.AllClaims() {
			if len(c.Snapshot.Changed) == 0 || c.Snapshot.PageSize == 0 {
				continue
			}
			pages := int64((c.Snapshot.Size + uint64(c.Snapshot.PageSize) - 1) / uint64(c.Snapshot.PageSize))
			out.Drift = append(out.Drift, DriftRow{N: i + 1, Hash: e.Hash, Event: e.Event, Region: c.Region.ID, Size: c.Snapshot.Size,
				PageSize: c.Snapshot.PageSize, Pages: pages, Changed: c.Snapshot.Changed, Drifted: drifted[c.Region.ID]})
		}
	}
	place := map[string]Event{}
	for _, e := range out.Events {
		place[e.Report] = e
	}
	for _, f := range out.Findings {
		if f.Status == policy.Affirming && f.Reason != policy.ReasonHandover {
			out.Linked++
			continue
		}
		e := place[f.Subject]
		out.Notable = append(out.Notable, Notable{Finding: f, N: e.N, Hash: e.Hash, Ev: e.Event})
	}
	if len(out.Drift) > maxDriftRows {
		out.Drift = out.Drift[len(out.Drift)-maxDriftRows:]
	}
	return out, nil
}

// Report is the report page's data (GET /api/report/HASH).
type Report struct {
	Hash   attest.Digest `json:"hash"`
	Name   string        `json:"name"`
	VM     string        `json:"vm"` // the VM directory it is stored under
	Stored time.Time     `json:"stored_issued_at"`
	// Fields are hvmon show's fields (nothing in them is verified by
	// themselves); nil when the report does not decode.
	Fields []reportview.Field   `json:"fields"`
	Valid  bool                 `json:"valid"`
	Error  string               `json:"error,omitempty"`
	Checks []attest.Check       `json:"checks"`
	Drift  []attest.RegionDrift `json:"drift,omitempty"`
	// Findings are the chain audit's (and policy's) findings about it.
	Findings []policy.Finding `json:"findings"`
	// Status is the worst of Findings.
	Status policy.Status               `json:"status"`
	Logs   map[string]host.APILogState `json:"logs"`
	// Proofs are the proof files checked against --log-key.
	Proofs []ProofCheck `json:"proofs,omitempty"`
}

func (v *view) report(h attest.Digest) (*Report, bool) {
	st := v.byHash[h]
	if st == nil {
		return nil, false
	}
	out := &Report{Hash: h, Name: st.name, VM: st.entry.VM, Stored: st.entry.Time, Valid: st.err == nil,
		Checks: []attest.Check{}, Findings: []policy.Finding{}, Status: policy.None, Logs: st.logs, Proofs: st.proofs}
	if out.Logs == nil {
		out.Logs = map[string]host.APILogState{}
	}
	if st.in != nil {
		out.Fields = reportview.Fields(st.in)
	}
	if st.err != nil {
		out.Error = st.err.Error()
	}
	if st.res != nil {
		out.Checks = append(out.Checks, st.res.Checks...)
		out.Drift = st.res.Drift
	}
	var verdict policy.Verdict
	for _, f := range v.audit.Findings {
		if f.Subject == st.name {
			verdict.Add(f)
		}
	}
	if verdict.Findings != nil {
		out.Findings, out.Status = verdict.Findings, verdict.Status
	}
	return out, true
}
