package policy

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/internal/boundedfile"
	"hvmon.dev/hvmon/tee"
)

// Every error names the file and line, and what is wrong, so an operator
// can fix it without guessing.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		line      int
		want      string
	}{
		{"unknown top-level key", "trust {\n}\nbogus = 1\n", 3, `An argument named "bogus" is not expected here`},
		{"unknown key in a vm block", "vm \"a\" {\n  allowed_events = []\n  max_agee = \"5m\"\n}\n", 3, `An argument named "max_agee" is not expected here`},
		{"unknown key in snp", "defaults {\n  snp {\n    allow_debugg = true\n  }\n}\n", 3, `An argument named "allow_debugg" is not expected here`},
		{"unknown block", "\n\npolicy {\n}\n", 3, `Blocks of type "policy" are not expected here`},
		{"two defaults blocks", "defaults {\n}\ndefaults {\n}\n", 3, `Duplicate defaults block`},
		{"syntax", "defaults {\n  max_age = \n}\n", 2, "Invalid expression"},
		{"wrong type", "defaults {\n  require_hardware = \"yes please\"\n}\n", 2, "Unsuitable value type"},
		{"variables", "defaults {\n  max_age = var.x\n}\n", 2, "Variables not allowed"},
		{"bad duration", "\ndefaults {\n  max_age = \"soon\"\n}\n", 2, `defaults: max_age: "soon" is not a positive duration`},
		{"negative duration", "defaults {\n  max_age = \"-5m\"\n}\n", 1, `max_age: "-5m" is not a positive duration`},
		{"bad event", "defaults {\n  allowed_events = [\"reboot\"]\n}\n", 1, `allowed_events: "reboot" is not an event`},
		{"bad hardware type", "defaults {\n  hardware_types = [\"sgx\"]\n}\n", 1, `hardware_types: "sgx" is not sev-snp`},
		{"bad region id", "defaults {\n  region \"=x\" {\n    roots = []\n  }\n}\n", 2, `region "=x": not a region id`},
		{"region without roots", "defaults {\n  region \"a\" {\n    roots = []\n  }\n}\n", 2, `region "a": roots: want 1 to`},
		{"region root not hex", "defaults {\n  region \"a\" {\n    roots = [\"zz\"]\n  }\n}\n", 2, `region "a": roots: "zz" is not a root`},
		{"region twice", "vm \"x\" {\n  region \"a\" {\n    roots = [\"" + zeros(32) + "\"]\n  }\n  region \"a\" {\n    roots = [\"" + zeros(32) + "\"]\n  }\n}\n", 5, `vm "x": region "a" defined twice`},
		{"region without roots key", "defaults {\n  region \"a\" {\n  }\n}\n", 2, `The argument "roots" is required`},
		{"bad on_mismatch", "defaults {\n  region \"a\" {\n    roots = [\"" + zeros(32) + "\"]\n    on_mismatch = \"ignore\"\n  }\n}\n", 2, `on_mismatch: "ignore" is not`},
		{"short measurement", "defaults {\n  snp {\n    measurements = [\"abcd\"]\n  }\n}\n", 2, `snp: measurements: "abcd" is not 96 hex digits`},
		{"bad id key digest", "defaults {\n  snp {\n    id_key_digests = [\"" + zeros(32) + "\"]\n  }\n}\n", 2, `snp: id_key_digests: "` + zeros(32) + `" is not 96 hex digits`},
		{"bad xfam", "defaults {\n  tdx {\n    xfam = \"e7\"\n  }\n}\n", 2, `tdx: xfam: "e7" is not 16 hex digits`},
		{"bad vmpl", "defaults {\n  snp {\n    vmpl = 4\n  }\n}\n", 2, `snp: vmpl: 4 is not 0 to 3`},
		{"tcb out of range", "defaults {\n  snp {\n    minimum_tcb {\n      snp = 256\n    }\n  }\n}\n", 4, "Unsuitable value"},
		{"bad rtmr", "defaults {\n  tdx {\n    rtmr3 = [\"00\"]\n  }\n}\n", 2, `tdx: rtmr3: "00" is not 96 hex digits`},
		{"bad tee tcb svn", "defaults {\n  tdx {\n    minimum_tee_tcb_svn = \"03\"\n  }\n}\n", 2, `tdx: minimum_tee_tcb_svn: "03" is not 32 hex digits`},
		{"bad td attributes", "defaults {\n  tdx {\n    td_attributes = \"+000000000000001\"\n  }\n}\n", 2, `td_attributes: "+000000000000001" is not 16 hex digits`},
		{"bad glob", "\nvm \"[x\" {\n}\n", 2, `vm "[x": not a valid name pattern`},
		{"empty glob", "vm \"\" {\n}\n", 1, `vm "": not a valid name pattern`},
		{"glob with a space", "vm \"web-1 \" {\n}\n", 1, `vm "web-1 ": not a valid name pattern: " " is not a character of a VM name`},
		{"glob with a look-alike letter", "vm \"w\u0435b-*\" {\n}\n", 1, `not a valid name pattern`},
		{"glob with a slash", "\nvm \"a/*\" {\n}\n", 2, `vm "a/*": not a valid name pattern: "/" is not a character`},
		{"require_vm_block in a vm block", "vm \"a\" {\n  require_vm_block = false\n}\n", 1, `vm "a": require_vm_block belongs in the defaults block`},
		{"bad key id", "trust {\n  host_key_ids = [\"1234\"]\n}\n", 1, `host_key_ids: "1234" is not a key id`},
		{"missing key file", "\ntrust {\n  host_keys = [\"missing.pub\"]\n}\n", 2, `trust: host key "missing.pub": no such file`},
		{"key file that is not a key", "trust {\n  host_keys = [\"roots.pem\"]\n}\n", 1, `trust: host key "roots.pem": malformed public key`},
		{"simulated roots without the switch", "hardware_roots {\n  simulated_seed = \"" + zeros(16) + "\"\n}\n", 1, "simulated roots given without allow_simulated = true"},
		{"switch without simulated roots", "hardware_roots {\n  allow_simulated = true\n}\n", 1, "allow_simulated = true needs simulated roots"},
		{"short simulated seed", "hardware_roots {\n  allow_simulated = true\n  simulated_seed = \"00\"\n}\n", 1, "simulated_seed: want at least 16 bytes of hex"},
		{"empty amd roots", "hardware_roots {\n  amd = []\n}\n", 1, "amd: empty list"},
		{"missing root file", "hardware_roots {\n  intel = [\"nope.crt\"]\n}\n", 1, `hardware_roots: intel "nope.crt": no such file`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src), "/etc/hvmon/p.hcl", Options{Hardware: &fakeHardware{}, ReadFile: files(t)})
			var fe *FileError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("Parse(%q) = %v, want a *FileError", tc.src, err)
			}
			if fe.Line != tc.line || fe.File != "/etc/hvmon/p.hcl" {
				t.Errorf("Parse(%q) error at %s:%d, want line %d: %v", tc.src, fe.File, fe.Line, tc.line, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse(%q) = %q, want it to say %q", tc.src, err, tc.want)
			}
			if fe.Line > 0 && !strings.HasPrefix(err.Error(), "/etc/hvmon/p.hcl:") {
				t.Errorf("error %q does not start with file:line", err)
			}
		})
	}
}

// A failing hardware verifier (bad root files) is a policy error at the
// hardware_roots block.
func TestParseBadRoots(t *testing.T) {
	_, err := Parse([]byte("\nhardware_roots {\n  amd = [\"amd.pem\"]\n}\n"), "p.hcl", Options{Hardware: &failingHardware{}, ReadFile: files(t)})
	var fe *FileError
	if !errors.As(err, &fe) || fe.Line != 2 || !strings.Contains(err.Error(), "no ARK") {
		t.Errorf("Parse with roots the verifier refuses = %v, want an error at line 2", err)
	}
}

type failingHardware struct{ fakeHardware }

func (*failingHardware) Verifier(tee.Trust) (attest.EvidenceVerifier, error) {
	return nil, errors.New("no ARK")
}

func TestParseSize(t *testing.T) {
	src := "# " + strings.Repeat("x", MaxPolicySize) + "\n"
	if _, err := Parse([]byte(src), "big.hcl", Options{}); !errors.Is(err, ErrInvalidPolicy) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Parse of %d bytes = %v", len(src), err)
	}
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "none.hcl"), Options{}); !errors.Is(err, ErrInvalidPolicy) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file = %v", err)
	}
	name := filepath.Join(dir, "big.hcl")
	if err := os.WriteFile(name, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(name, Options{}); !errors.Is(err, ErrInvalidPolicy) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load of %d bytes = %v", len(src), err)
	}
	// A named file that never ends is refused, not read into memory.
	if _, err := os.Stat("/dev/zero"); err == nil {
		_, err := Parse([]byte("trust {\n  host_keys = [\"/dev/zero\"]\n}\n"), name, Options{})
		if !errors.Is(err, ErrInvalidPolicy) || !errors.Is(err, boundedfile.ErrNotRegular) {
			t.Errorf("a policy naming /dev/zero as a key: %v", err)
		}
	}
}

// Relative paths resolve against the policy's directory; absolute ones
// stay.
func TestParsePaths(t *testing.T) {
	var asked []string
	read := func(name string) ([]byte, error) {
		asked = append(asked, name)
		return files(t)(name)
	}
	_, err := Parse([]byte(`trust {
  host_keys = ["host.pub", "../k/host.pub", "/abs/host.pub"]
}`), "/etc/hvmon/policies/p.hcl", Options{Hardware: &fakeHardware{}, ReadFile: read})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/etc/hvmon/policies/host.pub", "/etc/hvmon/k/host.pub", "/abs/host.pub"}
	if !slices.Equal(asked, want) {
		t.Errorf("read %q, want %q", asked, want)
	}
}

// The built-in defaults, the defaults block and the matching vm blocks
// combine in that order, each overriding only what it sets.
func TestRulesFor(t *testing.T) {
	p := mustParse(t, `defaults {
  max_age = "10m"
  allowed_events = ["boot"]
  region "a" { roots = ["`+zeros(32)+`"] }
  snp {
    allow_debug = true
    minimum_guest_svn = 1
  }
}
vm "llm-*" {
  max_age = "1m"
  region "b" { roots = ["`+zeros(32)+`"] }
  snp { minimum_guest_svn = 2 }
}
vm "llm-2" {
  region "a" {
    roots = ["`+strings.Repeat("11", 32)+`"]
    required = false
  }
  snp { allow_smt = false }
}
vm "odd-[0-9]*" { require_hardware = false }`, nil)

	empty := mustParse(t, ``, nil).RulesFor("x")
	if !empty.RequireHardware || empty.SNP.AllowDebug || empty.TDX.AllowDebug || !empty.SNP.AllowSMT || empty.SNP.AllowMigrationAgent || empty.MaxAge != 0 || empty.AllowedEvents != nil {
		t.Errorf("built-in defaults = %+v: want hardware required, debug and migration agents forbidden, SMT allowed, no age or event bound", empty)
	}

	if d := p.Defaults(); d.MaxAge != 10*time.Minute || len(d.Regions) != 1 || d.RequireHardware != true {
		t.Errorf("Defaults() = %+v", d)
	}
	other := p.RulesFor("db-1")
	if other.MaxAge != 10*time.Minute || len(other.Regions) != 1 || !other.SNP.AllowDebug || *other.SNP.MinimumGuestSVN != 1 || !other.RequireHardware {
		t.Errorf("rules for db-1 = %+v, want the defaults block", other)
	}
	l1 := p.RulesFor("llm-1")
	if l1.MaxAge != time.Minute || len(l1.Regions) != 2 || *l1.SNP.MinimumGuestSVN != 2 || !l1.SNP.AllowDebug || !l1.SNP.AllowSMT || !slices.Equal(l1.AllowedEvents, []attest.Event{"boot"}) {
		t.Errorf("rules for llm-1 = %+v", l1)
	}
	l2 := p.RulesFor("llm-2")
	if len(l2.Regions) != 2 || l2.Regions[0].ID != "a" || l2.Regions[0].Required || l2.Regions[0].Roots[0][0] != 0x11 || l2.SNP.AllowSMT || *l2.SNP.MinimumGuestSVN != 2 {
		t.Errorf("rules for llm-2 = %+v", l2)
	}
	if p.RulesFor("odd-1x").RequireHardware || !p.RulesFor("odd-x").RequireHardware {
		t.Error("a class in a glob does not match as a class")
	}
	// A name outside the VM name rule matches no vm block, not even "*":
	// it gets the defaults block only (and appraisal contraindicates it).
	for _, bad := range []string{"llm-1 ", "llm-1\u200b", "ll\u043c-1", "odd-1/x"} {
		if r := p.RulesFor(bad); len(r.Matched) != 0 || r.MaxAge != 10*time.Minute {
			t.Errorf("RulesFor(%q) = %+v, want the defaults only", bad, r)
		}
	}
	if m := p.RulesFor("llm-2").Matched; !slices.Equal(m, []string{"llm-*", "llm-2"}) {
		t.Errorf("RulesFor(llm-2).Matched = %q", m)
	}
	// RulesFor hands out copies.
	l1.Regions[0].ID = "changed"
	if p.RulesFor("llm-1").Regions[0].ID != "a" {
		t.Error("changing the rules RulesFor returned changed the policy")
	}
	if got := p.VMPatterns(); !slices.Equal(got, []string{"llm-*", "llm-2", "odd-[0-9]*"}) {
		t.Errorf("VMPatterns = %q", got)
	}
}

// contrib/policy.hcl, the documented example, loads and means what its
// comments say.
func TestContribPolicy(t *testing.T) {
	src, err := os.ReadFile("../contrib/policy.hcl")
	if err != nil {
		t.Fatal(err)
	}
	var trust tee.Trust
	p, err := Parse(src, "/etc/hvmon/policy.hcl", Options{Hardware: &fakeHardware{trust: &trust}, ReadFile: files(t)})
	if err != nil {
		t.Fatal(err)
	}
	if p.KeyCount() != 2 || trust.AllowSimulated || trust.AMDRoots != nil {
		t.Errorf("contrib policy: %d keys, trust %+v", p.KeyCount(), trust)
	}
	r := p.RulesFor("llm-7")
	if !r.RequireHardware || r.MaxAge != 15*time.Minute || len(r.Regions) != 2 || len(r.SNP.Measurements) != 1 || r.SNP.MinimumTCB == nil || r.SNP.AllowDebug {
		t.Errorf("contrib rules for llm-7 = %+v", r)
	}
	if b := p.RulesFor("build-box"); b.RequireHardware || b.HardwareTypes != nil || len(b.RequiredRegions) != 0 {
		t.Errorf("contrib rules for build-box = %+v", b)
	}
	if !r.BindVMIdentity || !r.RequireVMBlock || len(r.Matched) != 1 {
		t.Errorf("contrib rules for llm-7 bind %v, require a block %v, matched %q", r.BindVMIdentity, r.RequireVMBlock, r.Matched)
	}
	other := result(t)
	renamed("db-1")(other)
	if v := p.At(testNow).AppraiseResult(other); finding(t, v, "vm.known").Reason != ReasonUnknownVM {
		t.Errorf("contrib policy, a VM no block names: %+v", v.Findings)
	}
}

// policySeeds are the fuzz seeds: contrib/policy.hcl and every policy in
// testdata/policy. It fails when it finds none.
func policySeeds(t testing.TB) map[string][]byte {
	names, err := filepath.Glob("testdata/policy/*.hcl")
	if err != nil {
		t.Fatal(err)
	}
	names = append(names, "../contrib/policy.hcl")
	out := map[string][]byte{}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		out[n] = b
	}
	if len(out) < 3 {
		t.Fatalf("found %d policy seeds (%q), want contrib/policy.hcl and testdata/policy/*.hcl", len(out), names)
	}
	return out
}

// The testdata policies load (they are seeds of a fuzz target, and
// examples).
func TestTestdataPolicies(t *testing.T) {
	for name, src := range policySeeds(t) {
		if _, err := Parse(src, name, Options{Hardware: &fakeHardware{}, ReadFile: files(t)}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzParsePolicy: Parse never panics; what it refuses is a FileError;
// what it accepts gives rules for any VM name and appraises a report
// without panicking.
func FuzzParsePolicy(f *testing.F) {
	for _, src := range policySeeds(f) {
		f.Add(src, "vm-1")
	}
	res := result(f)
	f.Fuzz(func(t *testing.T, src []byte, vm string) {
		p, err := Parse(src, "/p/fuzz.hcl", Options{Hardware: &fakeHardware{facts: snpFacts()}, ReadFile: files(t)})
		if err != nil {
			var fe *FileError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("Parse error %v (%T) is not a FileError", err, err)
			}
			return
		}
		r := p.RulesFor(vm)
		for _, rr := range r.Regions {
			if len(rr.Roots) == 0 || (rr.OnMismatch != Contraindicated && rr.OnMismatch != Warning) {
				t.Fatalf("accepted region rule %+v", rr)
			}
		}
		v := p.At(testNow).AppraiseResult(res)
		if len(v.Findings) == 0 {
			t.Fatal("no findings")
		}
		worst := None
		for _, f := range v.Findings {
			worst = Worse(worst, f.Status)
			if f.Check == "" {
				t.Fatalf("finding without a check: %+v", f)
			}
		}
		if worst != v.Status {
			t.Fatalf("verdict %s, worst finding %s", v.Status, worst)
		}
	})
}

// TestPolicyDeepNesting: a policy nested a million deep (over the size
// bound) and one nested as deep as the size bound allows give a
// *FileError, never the parser's fatal stack overflow.
func TestPolicyDeepNesting(t *testing.T) {
	for _, src := range []string{
		"defaults { max_age = " + strings.Repeat("-", 1e6) + "1 }\n",
		"defaults { max_age = " + strings.Repeat("-", MaxPolicySize-100) + "1 }\n",
		"defaults { max_age = " + strings.Repeat("(", MaxPolicySize/2-100) + "1" + strings.Repeat(")", MaxPolicySize/2-100) + " }\n",
		strings.Repeat("vm \"a\" {\n", 1000) + strings.Repeat("}\n", 1000),
	} {
		_, err := Parse([]byte(src), "/p/deep.hcl", Options{})
		var fe *FileError
		if !errors.As(err, &fe) || !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("Parse(%d bytes nested deep) = %v, want a *FileError", len(src), err)
		} else if len(src) <= MaxPolicySize && fe.Line < 1 {
			t.Errorf("Parse(%d bytes nested deep) = %v: no line", len(src), err)
		}
	}
}

// TestPolicyFilesNotRegular: a policy, or a key or root file it names,
// that is a FIFO or a device is refused at once (an open of a FIFO would
// wait for a writer forever).
func TestPolicyFilesNotRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(fifo, Options{}); !errors.Is(err, ErrInvalidPolicy) || !errors.Is(err, boundedfile.ErrNotRegular) {
		t.Errorf("Load(a FIFO) = %v", err)
	}
	for _, key := range []string{fifo, "/dev/zero"} {
		pol := filepath.Join(dir, "p.hcl")
		os.WriteFile(pol, []byte("trust {\n  host_keys = [\""+key+"\"]\n}\n"), 0o600)
		if _, err := Load(pol, Options{}); !errors.Is(err, ErrInvalidPolicy) || !errors.Is(err, boundedfile.ErrNotRegular) {
			t.Errorf("Load(a policy naming %s) = %v", key, err)
		}
	}
}
