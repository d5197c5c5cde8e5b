package logmon

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/policy"
	"hvmon.dev/hvmon/tlog"
)

// Check names of the monitor's own findings (the chain audit's are
// policy's).
const (
	CheckCheckpoint  = "log.checkpoint"  // the log's checkpoint against the log policy
	CheckConsistency = "log.consistency" // the checkpoint against the last one the monitor saw
	CheckEntry       = "log.entry"       // one log entry
	CheckStore       = "log.store"       // a report store against the log
	CheckSilence     = "log.silence"     // a VM's last logged report against its policy's max_age
)

// Reason codes of the monitor's findings.
const (
	ReasonBadSignature     = "bad_signature"      // the checkpoint is not signed by the log key, or a witness line fails
	ReasonNoQuorum         = "no_quorum"          // too few witnesses cosigned the checkpoint
	ReasonMalformed        = "malformed"          // the checkpoint is not well formed
	ReasonConsistent       = "consistent"         // the log grew from the last checkpoint (affirming)
	ReasonRollback         = "rollback"           // the log is smaller than the last checkpoint
	ReasonFork             = "fork"               // the log has another root at the last checkpoint's size
	ReasonInconsistent     = "inconsistent"       // the log rewrote its history since the last checkpoint
	ReasonDuplicateEntry   = "duplicate_entry"    // the same report at two indexes
	ReasonUnknownSigner    = "unknown_signer"     // a report signed by a key the monitor does not trust
	ReasonNotAReport       = "not_a_report"       // an entry that is not an hvmon report
	ReasonNotLogged        = "not_logged"         // a stored report absent from the log past the grace period
	ReasonPending          = "pending"            // a stored report not yet in the log, within the grace period
	ReasonDeletedFromStore = "deleted_from_store" // a logged report missing from the store that holds its chain
	ReasonSilent           = "silent"             // a running VM logged nothing for longer than its max_age
	ReasonSplitView        = "split_view"         // a host holds a proof from a checkpoint inconsistent with the monitor's
	ReasonAhead            = "ahead"              // a host holds a proof from a checkpoint newer than the monitor's
)

// readBatch is how many entries an audit reads at once (16 bundles).
const readBatch = 16 * 256

// ErrLog is the error of a run whose checkpoint failed: not signed as the
// policy requires, or inconsistent with the last one the monitor saw. It
// matches attest.ErrTrust; the state must not advance.
var ErrLog = fmt.Errorf("transparency log failure: %w", attest.ErrTrust)

// State is what the monitor keeps between runs: the last checkpoint it
// verified and what it learned from the entries up to it.
type State struct {
	// Checkpoint is the last signed checkpoint verified, verbatim.
	Checkpoint string `json:"checkpoint,omitempty"`
	// Logged holds every report entry read so far, by report hash.
	Logged map[attest.Digest]Logged `json:"logged,omitempty"`
	// VMs holds each VM's entries and its last report.
	VMs map[string]*VMState `json:"vms,omitempty"`
	// GuestKeys holds, by guest key ID, the VM whose reports first
	// carried evidence signed by that key: a key seen again under another
	// VM brings that VM's history into the audit (key_reuse).
	GuestKeys map[attest.Digest]string `json:"guest_keys,omitempty"`
}

// Logged is one report entry of the log.
type Logged struct {
	Index uint64        `json:"index"`
	VM    string        `json:"vm"`
	KeyID attest.Digest `json:"key_id"`
	// Host is the host name of the report's host chain (chainHost):
	// hosts that share a signing key keep chains of their own. Empty in
	// a state written before it was kept.
	Host string `json:"host,omitempty"`
}

// chainHost is the host name under which a report's host chain runs: the
// observations' host, else the attester's name (as host.FileStore tags
// chains and the chain audit groups them).
func chainHost(r *attest.Report) string {
	if r.Host != nil {
		return r.Host.Host
	}
	return r.Attester.Name
}

// VMState is what the monitor knows of one VM's logged history.
type VMState struct {
	Entries  []uint64     `json:"entries"`
	IssuedAt time.Time    `json:"issued_at"`
	Event    attest.Event `json:"event"`
}

// ParseState decodes a state file; empty input is the state of a monitor
// that never ran.
func ParseState(b []byte) (*State, error) {
	s := &State{}
	if len(b) == 0 {
		return s, nil
	}
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("%w: monitor state: %v", attest.ErrMalformed, err)
	}
	return s, nil
}

func (s *State) clone() *State {
	c := &State{Checkpoint: s.Checkpoint, Logged: maps.Clone(s.Logged), VMs: map[string]*VMState{}, GuestKeys: maps.Clone(s.GuestKeys)}
	if c.Logged == nil {
		c.Logged = map[attest.Digest]Logged{}
	}
	if c.GuestKeys == nil {
		c.GuestKeys = map[attest.Digest]string{}
	}
	for k, v := range s.VMs {
		vv := *v
		vv.Entries = slices.Clone(v.Entries)
		c.VMs[k] = &vv
	}
	return c
}

// Store is a report store the monitor compares with the log.
type Store interface {
	// Name names the store in findings.
	Name() string
	// Reports returns the signed reports the store holds.
	Reports(ctx context.Context) ([][]byte, error)
}

// ProofStore is a Store that also holds the log proofs its host
// received: each proof's checkpoint must be consistent with the
// monitor's view of the log, or the log showed that host another history
// (a split view).
type ProofStore interface {
	Store
	// Proofs returns the proof files, by name.
	Proofs(ctx context.Context) (map[string][]byte, error)
}

// Options configure an audit.
type Options struct {
	// Reader reads the log (its checkpoint, tiles and entry bundles).
	Reader tlog.TileReader
	// Policy says which checkpoints count.
	Policy tlog.Policy
	// Verify verifies each entry as a report; Now is ignored: each report
	// is verified as of its own issued-at.
	Verify attest.VerifyOptions
	// Stores are compared with the log when set.
	Stores []Store
	// Grace is how long a stored report may be missing from the log before
	// it is not_logged; zero means an hour.
	Grace time.Duration
	// MaxAge, when set, gives a VM's longest silence (0: no bound).
	MaxAge func(vm string) time.Duration
}

// Checkpoint is the checkpoint an audit read, for its output.
type Checkpoint struct {
	Origin    string    `json:"origin"`
	Size      uint64    `json:"size"`
	Root      string    `json:"root"`
	Time      time.Time `json:"time"`
	Witnesses []string  `json:"witnesses,omitempty"`
	// OldSize is the size of the last checkpoint the monitor saw.
	OldSize uint64 `json:"old_size"`
}

// Result is the outcome of an audit.
type Result struct {
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
	// Verdict holds the monitor's findings and the chain audit's.
	policy.Verdict
	// VMs are the chain audit's histories of the VMs new entries touched.
	VMs []policy.VMHistory `json:"vms"`
	// Failed is the verification failure of a logged report with the
	// lowest exit class, or nil.
	Failed error `json:"-"`
	// State is the state to save; nil when the run failed.
	State *State `json:"-"`
}

// Audit runs the monitor once: it opens the log's checkpoint, checks it
// against prev's, reads the new entries and audits the chains of the VMs
// they touch. An error matching ErrLog means the checkpoint failed (the
// Result says why); other errors are I/O errors. Neither gives a State.
func Audit(ctx context.Context, prev *State, o Options) (*Result, error) {
	res := &Result{}
	signed, err := o.Reader.ReadCheckpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the checkpoint: %w", err)
	}
	cp, err := o.Policy.Open(signed)
	if err != nil {
		reason := ReasonBadSignature
		switch {
		case errors.Is(err, tlog.ErrQuorum):
			reason = ReasonNoQuorum
		case errors.Is(err, tlog.ErrMalformed):
			reason = ReasonMalformed
		}
		res.Add(policy.Finding{Check: CheckCheckpoint, Status: policy.Contraindicated, Reason: reason, Detail: err.Error()})
		return res, fmt.Errorf("%w: %w", ErrLog, err)
	}
	res.Checkpoint = &Checkpoint{Origin: cp.Origin, Size: cp.Size, Root: fmt.Sprintf("%x", cp.Root), Time: cp.LogTime, Witnesses: cp.Witnesses}
	res.Add(policy.Finding{Check: CheckCheckpoint, Status: policy.Affirming, Reason: "signed", Detail: fmt.Sprintf("size %d", cp.Size)})

	st := prev.clone()
	old := &tlog.Checkpoint{Origin: cp.Origin}
	if prev.Checkpoint != "" {
		// The last checkpoint was verified when it was saved; it is
		// opened again only to read it (the clock is the new one's).
		p := o.Policy
		p.Now = func() time.Time { return cp.LogTime }
		if old, err = p.Open([]byte(prev.Checkpoint)); err != nil {
			return nil, fmt.Errorf("the state's checkpoint: %w", err)
		}
	}
	res.Checkpoint.OldSize = old.Size
	f, err := consistent(ctx, o.Reader, old, cp)
	res.Add(f)
	if err != nil {
		if errors.Is(err, attest.ErrTrust) || errors.Is(err, attest.ErrMalformed) {
			return res, fmt.Errorf("%w: %w", ErrLog, err)
		}
		return nil, err
	}

	// Step 3: the proofs the hosts hold against the monitor's view.
	if err := o.checkProofs(ctx, cp, res); err != nil {
		if errors.Is(err, ErrLog) {
			return res, err
		}
		return nil, err
	}

	// New entries, read a batch of bundles at a time.
	touched := map[string]bool{}
	fresh := map[uint64]verified{}
	var entries [][]byte
	for idx := old.Size; idx < cp.Size; idx++ {
		if len(entries) == 0 {
			n := min(cp.Size-idx, readBatch)
			if entries, err = tlog.ReadEntries(ctx, o.Reader, cp, idx, n); err != nil {
				if errors.Is(err, attest.ErrTrust) || errors.Is(err, attest.ErrMalformed) {
					res.Add(policy.Finding{Check: CheckConsistency, Status: policy.Contraindicated, Reason: ReasonInconsistent,
						Detail: fmt.Sprintf("the log serves data its checkpoint does not sign: %v", err)})
					return res, fmt.Errorf("%w: %w", ErrLog, err)
				}
				return nil, fmt.Errorf("reading entries: %w", err)
			}
		}
		data := entries[0]
		entries = entries[1:]
		v := o.verify(data)
		fresh[idx] = v
		name := entryName(idx)
		hash := attest.ReportHash(data)
		if first, ok := st.Logged[hash]; ok {
			res.Add(policy.Finding{Check: CheckEntry, Status: policy.Warning, Reason: ReasonDuplicateEntry, Subject: name, Detail: fmt.Sprintf("the same report as %s", entryName(first.Index))})
			continue
		}
		switch {
		case v.notReport != nil:
			res.Add(policy.Finding{Check: CheckEntry, Status: policy.Warning, Reason: ReasonNotAReport, Subject: name, Detail: v.notReport.Error()})
			continue
		case errors.Is(v.err, attest.ErrUntrustedKey):
			res.Add(policy.Finding{Check: CheckEntry, Status: policy.Warning, Reason: ReasonUnknownSigner, Subject: name, Detail: v.err.Error()})
			continue
		}
		vm := v.in.Report.Workload
		st.Logged[hash] = Logged{Index: idx, VM: vm, KeyID: v.in.KeyID, Host: chainHost(v.in.Report)}
		vs := st.VMs[vm]
		if vs == nil {
			vs = &VMState{}
			st.VMs[vm] = vs
		}
		vs.Entries = append(vs.Entries, idx)
		if !v.in.Report.IssuedAt.Before(vs.IssuedAt) {
			vs.IssuedAt, vs.Event = v.in.Report.IssuedAt, v.in.Report.Event
		}
		touched[vm] = true
		if r := v.res; r != nil && r.Guest != nil && r.GuestHash != nil {
			gk := attest.KeyIDOf(r.Guest.GuestKey)
			if first, ok := st.GuestKeys[gk]; !ok {
				st.GuestKeys[gk] = vm
			} else if first != vm {
				touched[first] = true // the chain audit names the reuse
			}
		}
	}

	// The chains of the touched VMs, across the whole log.
	var in []policy.ChainReport
	for _, vm := range slices.Sorted(maps.Keys(touched)) {
		for _, idx := range st.VMs[vm].Entries {
			v, ok := fresh[idx]
			if !ok {
				es, err := tlog.ReadEntries(ctx, o.Reader, cp, idx, 1)
				if err != nil {
					return nil, fmt.Errorf("reading %s again: %w", entryName(idx), err)
				}
				v = o.verify(es[0])
			}
			in = append(in, policy.ChainReport{Name: entryName(idx), Result: v.res, Err: v.err})
			// As in verify --chain: an appraisal failure (a report
			// that covers no region, say) is the chain audit's to
			// judge, not a failed verification.
			if c := attestClass(v.err); v.err != nil && c < 5 {
				if res.Failed == nil || c < attestClass(res.Failed) {
					res.Failed = fmt.Errorf("%s: %w", entryName(idx), v.err)
				}
			}
		}
	}
	audit := policy.AuditChain(in)
	res.VMs = audit.VMs
	res.Merge(audit.Verdict)

	if err := o.checkStores(ctx, st, cp, res); err != nil {
		return nil, err
	}
	if o.MaxAge != nil {
		for _, vm := range slices.Sorted(maps.Keys(st.VMs)) {
			vs := st.VMs[vm]
			max := o.MaxAge(vm)
			if max <= 0 || vs.Event == attest.EventShutdown {
				continue
			}
			if age := cp.LogTime.Sub(vs.IssuedAt); age > max {
				res.Add(policy.Finding{Check: CheckSilence, Status: policy.Contraindicated, Reason: ReasonSilent, Subject: vm,
					Detail: fmt.Sprintf("last report (%s) %s before the checkpoint, more than max_age %s", vs.Event, age.Round(time.Second), max)})
			}
		}
	}
	st.Checkpoint = string(cp.Signed)
	res.State = st
	return res, nil
}

// checkProofs checks the checkpoint of every proof a ProofStore holds
// for this log against cp. Proofs of other logs are skipped.
func (o *Options) checkProofs(ctx context.Context, cp *tlog.Checkpoint, res *Result) error {
	var failed error
	for _, s := range o.Stores {
		ps, ok := s.(ProofStore)
		if !ok {
			continue
		}
		proofs, err := ps.Proofs(ctx)
		if err != nil {
			return fmt.Errorf("store %s: %w", s.Name(), err)
		}
		for _, name := range slices.Sorted(maps.Keys(proofs)) {
			pr, err := tlog.ParseProof(proofs[name])
			if err != nil {
				continue // a damaged proof makes its host resubmit; it shows no view
			}
			pc, err := o.Policy.Open(pr.Checkpoint)
			if err != nil {
				continue // another log's proof, or one this policy does not accept
			}
			subject := s.Name() + ":" + name
			if pc.Size > cp.Size {
				res.Add(policy.Finding{Check: CheckConsistency, Status: policy.Warning, Reason: ReasonAhead, Subject: subject,
					Detail: fmt.Sprintf("the proof's checkpoint has size %d, the log's %d", pc.Size, cp.Size)})
				continue
			}
			if _, err := consistent(ctx, o.Reader, pc, cp); err != nil {
				if !errors.Is(err, attest.ErrTrust) {
					return err
				}
				res.Add(policy.Finding{Check: CheckConsistency, Status: policy.Contraindicated, Reason: ReasonSplitView, Subject: subject,
					Detail: fmt.Sprintf("the host was shown a checkpoint of size %d the log does not extend: %v", pc.Size, err)})
				if failed == nil {
					failed = fmt.Errorf("%w: %s: %w", ErrLog, subject, err)
				}
			}
		}
	}
	return failed
}

// consistent checks the new checkpoint against the old one.
func consistent(ctx context.Context, r tlog.TileReader, old, cp *tlog.Checkpoint) (policy.Finding, error) {
	f := policy.Finding{Check: CheckConsistency, Status: policy.Contraindicated}
	switch {
	case cp.Size < old.Size:
		f.Reason, f.Detail = ReasonRollback, fmt.Sprintf("size %d after size %d", cp.Size, old.Size)
		return f, fmt.Errorf("%w: %s", tlog.ErrInconsistent, f.Detail)
	case cp.Size == old.Size && cp.Root != old.Root:
		f.Reason, f.Detail = ReasonFork, fmt.Sprintf("two roots for size %d", cp.Size)
		return f, fmt.Errorf("%w: %s", tlog.ErrInconsistent, f.Detail)
	}
	path, err := tlog.ProveConsistency(ctx, r, old, cp)
	if err == nil {
		err = tlog.CheckConsistency(old, cp, path)
	}
	if err != nil {
		f.Reason, f.Detail = ReasonInconsistent, fmt.Sprintf("rewritten history: size %d does not extend size %d: %v", cp.Size, old.Size, err)
		return f, err
	}
	return policy.Finding{Check: CheckConsistency, Status: policy.Affirming, Reason: ReasonConsistent,
		Detail: fmt.Sprintf("size %d extends size %d", cp.Size, old.Size)}, nil
}

// verified is one entry verified as a report.
type verified struct {
	in        *attest.Inspection
	res       *attest.Result
	err       error
	notReport error
}

func (o *Options) verify(data []byte) verified {
	in, err := attest.Inspect(data)
	if err != nil {
		return verified{notReport: err}
	}
	opts := o.Verify
	opts.Now = in.Report.IssuedAt
	res, err := attest.Verify(data, opts)
	return verified{in: in, res: res, err: err}
}

// checkStores compares each store with the log.
func (o *Options) checkStores(ctx context.Context, st *State, cp *tlog.Checkpoint, res *Result) error {
	grace := o.Grace
	if grace == 0 {
		grace = time.Hour
	}
	for _, s := range o.Stores {
		reports, err := s.Reports(ctx)
		if err != nil {
			return fmt.Errorf("store %s: %w", s.Name(), err)
		}
		// A store holds a host chain: a VM's reports signed by one key
		// under one host name. A logged report of a chain the store
		// holds must be in it.
		type tag struct {
			vm   string
			kid  attest.Digest
			host string
		}
		tags := map[tag]bool{}
		held := map[attest.Digest]bool{}
		for _, data := range reports {
			in, err := attest.Inspect(data)
			if err != nil {
				continue
			}
			opts := o.Verify
			opts.Now = in.Report.IssuedAt
			if _, err := attest.Verify(data, opts); errors.Is(err, attest.ErrTrust) {
				continue // only what a trusted key signed says anything
			}
			held[in.ReportHash] = true
			tags[tag{in.Report.Workload, in.KeyID, chainHost(in.Report)}] = true
			tags[tag{in.Report.Workload, in.KeyID, ""}] = true // for entries of an older state
			if _, ok := st.Logged[in.ReportHash]; ok {
				continue
			}
			subject := s.Name() + ":" + in.ReportHash.String()
			age := cp.LogTime.Sub(in.Report.IssuedAt)
			if age > grace {
				res.Add(policy.Finding{Check: CheckStore, Status: policy.Contraindicated, Reason: ReasonNotLogged, Subject: subject,
					Detail: fmt.Sprintf("%s report of %s issued %s before the checkpoint, not in the log", in.Report.Event, in.Report.Workload, age.Round(time.Second))})
			} else {
				res.Add(policy.Finding{Check: CheckStore, Status: policy.Warning, Reason: ReasonPending, Subject: subject,
					Detail: fmt.Sprintf("%s report of %s not yet in the log", in.Report.Event, in.Report.Workload)})
			}
		}
		for _, h := range slices.SortedFunc(maps.Keys(st.Logged), func(a, b attest.Digest) int {
			return cmp.Compare(st.Logged[a].Index, st.Logged[b].Index)
		}) {
			l := st.Logged[h]
			if tags[tag{l.VM, l.KeyID, l.Host}] && !held[h] {
				res.Add(policy.Finding{Check: CheckStore, Status: policy.Contraindicated, Reason: ReasonDeletedFromStore, Subject: entryName(l.Index),
					Detail: fmt.Sprintf("report %s of %s is in the log but not in store %s", h, l.VM, s.Name())})
			}
		}
	}
	return nil
}

// entryName names a log entry in findings and timelines.
func entryName(idx uint64) string { return fmt.Sprintf("entry-%d", idx) }

// attestClass orders verification failures as the exit codes do:
// malformed, trust, freshness, then the rest.
func attestClass(err error) int {
	switch {
	case errors.Is(err, attest.ErrMalformed):
		return 2
	case errors.Is(err, attest.ErrTrust):
		return 3
	case errors.Is(err, attest.ErrFreshness):
		return 4
	default:
		return 5
	}
}
