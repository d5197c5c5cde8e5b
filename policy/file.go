package policy

import (
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/internal/boundedfile"
	"hvmon.dev/hvmon/internal/hcldepth"
	"hvmon.dev/hvmon/tee"
)

// Bounds of a policy file and of what it names.
const (
	MaxPolicySize  = 256 << 10 // the policy file
	maxNamedFile   = 1 << 20   // a key or root file it names
	maxListEntries = 1024      // entries of any list
)

// ErrInvalidPolicy matches every error about a policy file: syntax,
// unknown settings, bad values, unreadable key or root files. Use
// errors.As with *FileError for the position.
var ErrInvalidPolicy = errors.New("invalid policy")

// FileError is an error in a policy file, at a line when one is known.
type FileError struct {
	File string
	Line int // 0 when the error is about the whole file
	Msg  string
	Err  error // an underlying error (reading a named file), or nil
}

func (e *FileError) Error() string {
	msg := e.Msg
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, msg)
	}
	return fmt.Sprintf("%s: %s", e.File, msg)
}

// Is reports that every FileError matches ErrInvalidPolicy.
func (e *FileError) Is(target error) bool { return target == ErrInvalidPolicy }

func (e *FileError) Unwrap() error { return e.Err }

// The file's schema (gohcl). Pointers mark settings that may be absent, so
// that a vm block overrides only what it sets. docs/POLICY.md is the
// normative description.
type (
	fileSchema struct {
		Trust    *trustBlock `hcl:"trust,block"`
		Roots    *rootsBlock `hcl:"hardware_roots,block"`
		Defaults *rulesBlock `hcl:"defaults,block"`
		VMs      []vmBlock   `hcl:"vm,block"`
	}
	trustBlock struct {
		HostKeys   []string  `hcl:"host_keys,optional"`
		HostKeyIDs []string  `hcl:"host_key_ids,optional"`
		Range      hcl.Range `hcl:",def_range"`
	}
	rootsBlock struct {
		AMD            []string  `hcl:"amd,optional"`
		Intel          []string  `hcl:"intel,optional"`
		AllowSimulated bool      `hcl:"allow_simulated,optional"`
		Simulated      []string  `hcl:"simulated,optional"`
		SimulatedSeed  string    `hcl:"simulated_seed,optional"`
		Range          hcl.Range `hcl:",def_range"`
	}
	vmBlock struct {
		Pattern string     `hcl:"pattern,label"`
		Rules   rulesBlock `hcl:",remain"`
		Range   hcl.Range  `hcl:",def_range"`
	}
	rulesBlock struct {
		RequireHardware *bool         `hcl:"require_hardware,optional"`
		RequireVMBlock  *bool         `hcl:"require_vm_block,optional"`
		BindVMIdentity  *bool         `hcl:"bind_vm_identity,optional"`
		HardwareTypes   *[]string     `hcl:"hardware_types,optional"`
		MaxAge          *string       `hcl:"max_age,optional"`
		AllowedEvents   *[]string     `hcl:"allowed_events,optional"`
		RequiredRegions *[]string     `hcl:"required_regions,optional"`
		Regions         []regionBlock `hcl:"region,block"`
		// The blocks of the TEE kinds (teeKinds), each checked by its
		// kind's parse.
		SNP   *snpBlock `hcl:"snp,block"`
		TDX   *tdxBlock `hcl:"tdx,block"`
		Range hcl.Range `hcl:",def_range"`
	}
	regionBlock struct {
		ID         string    `hcl:"id,label"`
		Roots      []string  `hcl:"roots"`
		Required   *bool     `hcl:"required,optional"`
		OnMismatch *string   `hcl:"on_mismatch,optional"`
		Range      hcl.Range `hcl:",def_range"`
	}
)

// Options configure Load and Parse.
type Options struct {
	// Hardware builds the evidence verifier and decodes hardware evidence
	// (evidence.PolicyHardware). Without it, VerifyOptions fails and
	// hardware evidence cannot be appraised (a contraindicated finding).
	Hardware Hardware
	// ReadFile reads the key and root files the policy names, resolved
	// against the policy file's directory. Nil means reading the file
	// system, at most 1 MiB per file.
	ReadFile func(name string) ([]byte, error)
}

// Policy is a parsed policy file: what a verifier trusts and what it
// expects of each VM. It is immutable; At returns a copy with another
// clock.
type Policy struct {
	file     string
	keys     []*attest.PublicKey
	keyIDs   []attest.Digest // ids of keys and of host_key_ids
	trust    tee.Trust
	defaults Rules
	vms      []vmRules
	// requireVMBlock: a VM no vm block matches is contraindicated. The
	// defaults block's require_vm_block, else true when the file has a vm
	// block.
	requireVMBlock bool
	hw             Hardware
	verifier       attest.EvidenceVerifier
	now            time.Time
}

type vmRules struct {
	pattern string
	line    int
	patch   *rulesPatch
}

// Load reads and parses the policy file at path.
func Load(path string, opts Options) (*Policy, error) {
	src, err := boundedfile.Read(path, MaxPolicySize)
	if err != nil {
		return nil, &FileError{File: path, Msg: "cannot read the policy", Err: err}
	}
	return Parse(src, path, opts)
}

// Parse parses policy text. filename names it in errors, and relative key
// and root paths are resolved against its directory.
func Parse(src []byte, filename string, opts Options) (*Policy, error) {
	if len(src) > MaxPolicySize {
		return nil, &FileError{File: filename, Msg: fmt.Sprintf("larger than %d bytes", MaxPolicySize)}
	}
	var deep *hcldepth.Error
	if err := hcldepth.Check(src, 0); errors.As(err, &deep) {
		// hcl's parser recurses: nesting this deep would overflow Go's
		// stack, which is fatal (internal/hcldepth).
		return nil, &FileError{File: filename, Line: deep.Line, Msg: deep.Error()}
	}
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.Pos{Line: 1, Column: 1})
	if diags.HasErrors() {
		return nil, diagError(filename, diags)
	}
	var s fileSchema
	if diags := gohcl.DecodeBody(f.Body, nil, &s); diags.HasErrors() {
		return nil, diagError(filename, diags)
	}
	p := &Policy{file: filename, hw: opts.Hardware, defaults: builtinDefaults()}
	read := opts.ReadFile
	if read == nil {
		read = readBounded
	}
	dir := filepath.Dir(filename)
	r := reader{file: filename, dir: dir, read: read}
	if err := p.parseTrust(s.Trust, r); err != nil {
		return nil, err
	}
	if err := p.parseRoots(s.Roots, r); err != nil {
		return nil, err
	}
	p.requireVMBlock = len(s.VMs) > 0
	if s.Defaults != nil {
		patch, err := parseRules(filename, "defaults", s.Defaults)
		if err != nil {
			return nil, err
		}
		patch.apply(&p.defaults)
		if s.Defaults.RequireVMBlock != nil {
			p.requireVMBlock = *s.Defaults.RequireVMBlock
		}
	}
	p.defaults.RequireVMBlock = p.requireVMBlock
	for _, v := range s.VMs {
		v.Rules.Range = v.Range
		if _, err := path.Match(v.Pattern, ""); err != nil || v.Pattern == "" {
			return nil, &FileError{File: filename, Line: v.Rules.Range.Start.Line, Msg: fmt.Sprintf("vm %q: not a valid name pattern (shell glob: *, ?, [...], \\ escapes)", v.Pattern)}
		}
		if err := checkPattern(v.Pattern); err != nil {
			return nil, &FileError{File: filename, Line: v.Rules.Range.Start.Line, Msg: fmt.Sprintf("vm %q: not a valid name pattern: %v", v.Pattern, err)}
		}
		if v.Rules.RequireVMBlock != nil {
			return nil, &FileError{File: filename, Line: v.Rules.Range.Start.Line, Msg: fmt.Sprintf("vm %q: require_vm_block belongs in the defaults block", v.Pattern)}
		}
		patch, err := parseRules(filename, fmt.Sprintf("vm %q", v.Pattern), &v.Rules)
		if err != nil {
			return nil, err
		}
		p.vms = append(p.vms, vmRules{pattern: v.Pattern, line: v.Rules.Range.Start.Line, patch: patch})
	}
	if p.hw != nil {
		v, err := p.hw.Verifier(p.trust)
		if err != nil {
			line := 0
			if s.Roots != nil {
				line = s.Roots.Range.Start.Line
			}
			return nil, &FileError{File: filename, Line: line, Msg: "hardware_roots", Err: err}
		}
		p.verifier = v
	}
	return p, nil
}

// diagError turns HCL diagnostics into a FileError at the first error's
// line ("Unsupported argument; An argument named "x" is not expected
// here.").
func diagError(filename string, diags hcl.Diagnostics) error {
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += "; " + d.Detail
		}
		fe := &FileError{File: filename, Msg: msg}
		if d.Subject != nil {
			fe.Line = d.Subject.Start.Line
		}
		if n := len(diags.Errs()); n > 1 {
			fe.Msg += fmt.Sprintf(" (and %d more error(s))", n-1)
		}
		return fe
	}
	return &FileError{File: filename, Msg: diags.Error()}
}

// readBounded reads a regular file of at most maxNamedFile bytes, so that
// a policy naming a FIFO, a device or a huge file fails at once instead of
// hanging or filling memory.
func readBounded(name string) ([]byte, error) {
	return boundedfile.Read(name, maxNamedFile)
}

// reader reads files a policy names, relative to the policy.
type reader struct {
	file, dir string
	read      func(string) ([]byte, error)
}

func (r reader) readAt(line int, what, name string) ([]byte, error) {
	if name == "" {
		return nil, &FileError{File: r.file, Line: line, Msg: what + ": empty path"}
	}
	p := name
	if !filepath.IsAbs(p) {
		p = filepath.Join(r.dir, p)
	}
	b, err := r.read(p)
	if err != nil {
		return nil, &FileError{File: r.file, Line: line, Msg: fmt.Sprintf("%s %q", what, name), Err: err}
	}
	if len(b) > maxNamedFile {
		return nil, &FileError{File: r.file, Line: line, Msg: fmt.Sprintf("%s %q: larger than %d bytes", what, name, maxNamedFile)}
	}
	return b, nil
}

func (p *Policy) parseTrust(t *trustBlock, r reader) error {
	if t == nil {
		return nil
	}
	line := t.Range.Start.Line
	if len(t.HostKeys)+len(t.HostKeyIDs) > maxListEntries {
		return &FileError{File: r.file, Line: line, Msg: "trust: too many keys"}
	}
	for _, k := range t.HostKeys {
		b, err := r.readAt(line, "trust: host key", k)
		if err != nil {
			return err
		}
		pk, err := attest.ParsePublicKeyPEM(b)
		if err != nil {
			return &FileError{File: r.file, Line: line, Msg: fmt.Sprintf("trust: host key %q", k), Err: err}
		}
		p.keys = append(p.keys, pk)
		p.keyIDs = append(p.keyIDs, pk.KeyID())
	}
	for _, s := range t.HostKeyIDs {
		d, err := attest.ParseDigest(s)
		if err != nil {
			return &FileError{File: r.file, Line: line, Msg: fmt.Sprintf("trust: host_key_ids: %q is not a key id (64 hex digits)", s)}
		}
		p.keyIDs = append(p.keyIDs, d)
	}
	return nil
}

func (p *Policy) parseRoots(b *rootsBlock, r reader) error {
	if b == nil {
		return nil
	}
	line := b.Range.Start.Line
	files := func(what string, names []string) ([]tee.File, error) {
		if names == nil {
			return nil, nil
		}
		if len(names) == 0 {
			return nil, &FileError{File: r.file, Line: line, Msg: "hardware_roots: " + what + ": empty list (leave it out for the built-in roots)"}
		}
		var out []tee.File
		for _, n := range names {
			data, err := r.readAt(line, "hardware_roots: "+what, n)
			if err != nil {
				return nil, err
			}
			out = append(out, tee.File{Name: n, Data: data})
		}
		return out, nil
	}
	var err error
	if p.trust.AMDRoots, err = files("amd", b.AMD); err != nil {
		return err
	}
	if p.trust.IntelRoots, err = files("intel", b.Intel); err != nil {
		return err
	}
	if p.trust.SimulatedRoots, err = files("simulated", b.Simulated); err != nil {
		return err
	}
	if b.SimulatedSeed != "" {
		if p.trust.SimulatedSeed, err = tee.ParseSimulatedSeed(b.SimulatedSeed); err != nil {
			return &FileError{File: r.file, Line: line, Msg: "hardware_roots: simulated_seed: " + err.Error()}
		}
	}
	p.trust.AllowSimulated = b.AllowSimulated
	// AllowDebugUnsafe stays false: debug guests are for the appraisal to
	// judge (allow_debug), and the policy's verifier accepts them
	// (Hardware.Verifier).
	if err := p.trust.Check(); err != nil {
		msg := err.Error()
		switch {
		case errors.Is(err, tee.ErrSimulatedNotAllowed):
			msg = "simulated roots given without allow_simulated = true"
		case errors.Is(err, tee.ErrNoSimulatedRoots):
			msg = "allow_simulated = true needs simulated roots or simulated_seed"
		}
		return &FileError{File: r.file, Line: line, Msg: "hardware_roots: " + msg}
	}
	return nil
}

// checkPattern refuses a vm pattern that no valid VM name can match: one
// with a character outside the VM name alphabet (attest.VMNameRule)
// outside a [...] class. Such a block would never apply, and a name that
// looks like it (with a space, or a look-alike letter) would fall to the
// defaults unnoticed. The pattern's glob syntax is already checked.
func checkPattern(pat string) error {
	for i := 0; i < len(pat); i++ {
		c := pat[i]
		switch c {
		case '*', '?':
			continue
		case '[':
			for i++; i < len(pat) && pat[i] != ']'; i++ {
				if pat[i] == '\\' {
					i++
				}
			}
			continue
		case '\\':
			if i++; i == len(pat) {
				return errors.New("a trailing \\")
			}
			c = pat[i]
		}
		if !attest.ValidVMName("a" + string(c)) {
			return fmt.Errorf("%q is not a character of a VM name (%s), so the pattern matches no VM", pat[i:i+1], attest.VMNameRule)
		}
	}
	return nil
}

// Rules are the expectations that apply to one VM: the built-in defaults,
// then the file's defaults block, then every matching vm block in file
// order. RulesFor returns them.
type Rules struct {
	// RequireHardware: the report must carry guest evidence with hardware
	// evidence, and no region may come from anyone but the guest.
	RequireHardware bool
	// RequireVMBlock: a VM that no vm block matches is contraindicated
	// (the defaults block's require_vm_block; by default, true when the
	// policy has a vm block).
	RequireVMBlock bool
	// BindVMIdentity: the hardware's launch identity (SEV-SNP HOST_DATA,
	// TDX MRCONFIGID) must be the one attest.VMIdentity derives from the
	// report's VM name.
	BindVMIdentity bool
	// Matched are the patterns of the vm blocks that matched the VM, in
	// file order (empty: only the defaults apply).
	Matched []string
	// HardwareTypes are the accepted evidence types; empty means any.
	HardwareTypes []attest.Platform
	// MaxAge bounds how old the report may be (now minus issued-at); 0
	// means no bound beyond the report's own expiry.
	MaxAge time.Duration
	// AllowedEvents are the accepted lifecycle events; nil means any.
	AllowedEvents []attest.Event
	// RequiredRegions must be present, whatever their roots.
	RequiredRegions []string
	// Regions are per-region reference values, by region id.
	Regions []RegionRule
	// The rules of each TEE kind (snp.go, tdx.go), for its evidence only.
	SNP SNPRules
	TDX TDXRules
}

// RegionRule is the reference value of one region.
type RegionRule struct {
	ID       string
	Roots    []attest.Digest
	Required bool // a missing region is contraindicated (default true)
	// OnMismatch is the status of a root outside Roots: Contraindicated
	// (the default) or Warning.
	OnMismatch Status
}

// builtinDefaults are the rules of an empty policy: hardware evidence
// required, debug guests forbidden, SMT allowed, no migration agent.
func builtinDefaults() Rules {
	return Rules{RequireHardware: true, SNP: SNPRules{AllowSMT: true}}
}

// RulesFor returns the rules that apply to the VM (workload) name. A name
// that breaks attest.VMNameRule matches no vm block: it gets the defaults
// only (and Appraise contraindicates it before looking at them).
func (p *Policy) RulesFor(workload string) Rules {
	r := p.defaults.clone()
	if !attest.ValidVMName(workload) {
		return r
	}
	for _, v := range p.vms {
		if ok, _ := path.Match(v.pattern, workload); ok {
			v.patch.apply(&r)
			r.Matched = append(r.Matched, v.pattern)
		}
	}
	return r
}

func (r Rules) clone() Rules {
	c := r
	c.HardwareTypes = slices.Clone(r.HardwareTypes)
	c.AllowedEvents = slices.Clone(r.AllowedEvents)
	c.RequiredRegions = slices.Clone(r.RequiredRegions)
	c.Regions = slices.Clone(r.Regions)
	c.Matched = slices.Clone(r.Matched)
	return c
}

// rulesPatch is a rules block with its values checked: nil fields leave
// the rules they apply to alone.
type rulesPatch struct {
	requireHardware *bool
	bindVMIdentity  *bool
	hardwareTypes   []attest.Platform
	setTypes        bool
	maxAge          *time.Duration
	allowedEvents   []attest.Event
	setEvents       bool
	requiredRegions []string
	setRequired     bool
	regions         []RegionRule
	// tee sets what the blocks of the TEE kinds (snp, tdx) set, in
	// the order of teeKinds.
	tee []func(*Rules)
}

func (x *rulesPatch) apply(r *Rules) {
	if x.requireHardware != nil {
		r.RequireHardware = *x.requireHardware
	}
	if x.bindVMIdentity != nil {
		r.BindVMIdentity = *x.bindVMIdentity
	}
	if x.setTypes {
		r.HardwareTypes = x.hardwareTypes
	}
	if x.maxAge != nil {
		r.MaxAge = *x.maxAge
	}
	if x.setEvents {
		r.AllowedEvents = x.allowedEvents
	}
	if x.setRequired {
		r.RequiredRegions = x.requiredRegions
	}
	for _, reg := range x.regions {
		if i := slices.IndexFunc(r.Regions, func(o RegionRule) bool { return o.ID == reg.ID }); i >= 0 {
			r.Regions[i] = reg
		} else {
			r.Regions = append(r.Regions, reg)
		}
	}
	for _, set := range x.tee {
		set(r)
	}
}

// parseRules checks a rules block's values.
func parseRules(file, where string, b *rulesBlock) (*rulesPatch, error) {
	bad := func(line int, format string, args ...any) error {
		return &FileError{File: file, Line: line, Msg: where + ": " + fmt.Sprintf(format, args...)}
	}
	line := b.Range.Start.Line
	x := &rulesPatch{requireHardware: b.RequireHardware, bindVMIdentity: b.BindVMIdentity}
	if b.HardwareTypes != nil {
		x.setTypes = true
		types, err := hardwareTypes(*b.HardwareTypes)
		if err != nil {
			return nil, bad(line, "hardware_types: %v", err)
		}
		x.hardwareTypes = types
	}
	if b.MaxAge != nil {
		d, err := time.ParseDuration(*b.MaxAge)
		if err != nil || d <= 0 {
			return nil, bad(line, "max_age: %q is not a positive duration such as \"15m\"", *b.MaxAge)
		}
		x.maxAge = &d
	}
	if b.AllowedEvents != nil {
		x.setEvents = true
		x.allowedEvents = []attest.Event{}
		for _, e := range *b.AllowedEvents {
			if !attest.Event(e).Valid() {
				return nil, bad(line, "allowed_events: %q is not an event (%s)", e, eventList())
			}
			x.allowedEvents = append(x.allowedEvents, attest.Event(e))
		}
	}
	if b.RequiredRegions != nil {
		x.setRequired = true
		for _, id := range *b.RequiredRegions {
			if !attest.ValidRegionID(id) {
				return nil, bad(line, "required_regions: %q is not a region id", id)
			}
		}
		x.requiredRegions = slices.Clone(*b.RequiredRegions)
	}
	seen := map[string]bool{}
	for _, rb := range b.Regions {
		l := rb.Range.Start.Line
		if !attest.ValidRegionID(rb.ID) {
			return nil, bad(l, "region %q: not a region id", rb.ID)
		}
		if seen[rb.ID] {
			return nil, bad(l, "region %q defined twice", rb.ID)
		}
		seen[rb.ID] = true
		rr := RegionRule{ID: rb.ID, Required: true, OnMismatch: Contraindicated}
		if len(rb.Roots) == 0 || len(rb.Roots) > maxListEntries {
			return nil, bad(l, "region %q: roots: want 1 to %d roots", rb.ID, maxListEntries)
		}
		for _, s := range rb.Roots {
			d, err := attest.ParseDigest(s)
			if err != nil {
				return nil, bad(l, "region %q: roots: %q is not a root (64 hex digits)", rb.ID, s)
			}
			rr.Roots = append(rr.Roots, d)
		}
		if rb.Required != nil {
			rr.Required = *rb.Required
		}
		if rb.OnMismatch != nil {
			switch Status(*rb.OnMismatch) {
			case Contraindicated, Warning:
				rr.OnMismatch = Status(*rb.OnMismatch)
			default:
				return nil, bad(l, "region %q: on_mismatch: %q is not \"contraindicated\" or \"warning\"", rb.ID, *rb.OnMismatch)
			}
		}
		x.regions = append(x.regions, rr)
	}
	for _, k := range teeKinds {
		set, err := k.parse(b, bad)
		if err != nil {
			return nil, err
		}
		if set != nil {
			x.tee = append(x.tee, set)
		}
	}
	return x, nil
}

func hexExact(s string, n int) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != n {
		return nil, fmt.Errorf("%q is not %d hex digits", s, 2*n)
	}
	return b, nil
}

func hexList(ss []string, n int) ([][]byte, error) {
	if len(ss) > maxListEntries {
		return nil, fmt.Errorf("more than %d entries", maxListEntries)
	}
	out := [][]byte{}
	for _, s := range ss {
		b, err := hexExact(s, n)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

func eventList() string {
	events := attest.Events()
	s := make([]string, len(events))
	for i, e := range events {
		s[i] = string(e)
	}
	return strings.Join(s, ", ")
}

// At returns a copy of p that appraises as of now (zero: the current time).
func (p *Policy) At(now time.Time) *Policy {
	c := *p
	c.now = now
	return &c
}

// File is the name the policy was loaded from.
func (p *Policy) File() string { return p.file }

// VMPatterns lists the vm block patterns, in file order.
func (p *Policy) VMPatterns() []string {
	out := make([]string, len(p.vms))
	for i, v := range p.vms {
		out[i] = v.pattern
	}
	return out
}

// Defaults returns the rules of the defaults block (over the built-in
// ones), before any vm block applies.
func (p *Policy) Defaults() Rules { return p.defaults.clone() }

// KeyCount is the number of host keys and key ids the policy pins.
func (p *Policy) KeyCount() int { return len(p.keyIDs) }
