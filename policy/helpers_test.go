package policy

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/tee"
)

// testNow is the appraisal time of the tests.
var testNow = time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)

// fakeHardware stands in for evidence.PolicyHardware: its verifier accepts
// everything (appraisal tests start after verification), and its facts
// are the ones the test set.
type fakeHardware struct {
	facts *tee.Facts
	err   error
	trust *tee.Trust // the trust it was asked to build a verifier for
}

func (f *fakeHardware) Verifier(t tee.Trust) (attest.EvidenceVerifier, error) {
	if f.trust != nil {
		*f.trust = t
	}
	return acceptAll{}, nil
}

func (f *fakeHardware) Facts(*attest.HardwareEvidence) (*tee.Facts, error) { return f.facts, f.err }

type acceptAll struct{}

func (acceptAll) VerifyEvidence(*attest.HardwareEvidence, [64]byte, time.Time) error { return nil }

// testKey is a fixed host key; its PEM is served as "host.pub".
func testKey(t testing.TB, b byte) *attest.PrivateKey {
	t.Helper()
	k, err := attest.NewKeyFromSeed(bytes.Repeat([]byte{b}, attest.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var (
	hostPEMOnce sync.Once
	hostPEM     []byte
	hostPEMErr  error
)

// files serves the named files of a test policy.
func files(t testing.TB) func(string) ([]byte, error) {
	hostPEMOnce.Do(func() { hostPEM, hostPEMErr = attest.MarshalPublicKeyPEM(testKey(t, 1).PublicKey()) })
	if hostPEMErr != nil {
		t.Fatal(hostPEMErr)
	}
	return func(name string) ([]byte, error) {
		switch {
		case strings.Contains(name, "missing"):
		case strings.HasSuffix(name, ".pub"):
			return hostPEM, nil
		case strings.HasSuffix(name, ".pem"):
			return []byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), nil
		}
		return nil, errors.New("no such file")
	}
}

// mustParse parses a test policy with the fake hardware. Blocks written on
// one line ("defaults { snp { allow_debug = true } }") are split into lines
// first: HCL allows only one argument in a one-line block.
func mustParse(t testing.TB, src string, hw *fakeHardware) *Policy {
	t.Helper()
	src = strings.ReplaceAll(strings.ReplaceAll(src, "{ ", "{\n"), " }", "\n}")
	if hw == nil {
		hw = &fakeHardware{}
	}
	p, err := Parse([]byte(src), "/etc/hvmon/test.hcl", Options{Hardware: hw, ReadFile: files(t)})
	if err != nil {
		t.Fatalf("Parse:\n%s\nerror: %v", src, err)
	}
	return p
}

var (
	rootA  = attest.Digest{0xa1}
	rootA2 = attest.Digest{0xa2}
	rootB  = attest.Digest{0xb1}
	meas   = bytes.Repeat([]byte{0x4d}, 48)
)

// claim is a region claim of platform p.
func claim(id string, root attest.Digest, p attest.Platform, vm string) attest.Claim {
	return attest.Claim{
		Region:   attest.Region{ID: id, Size: 4096},
		Snapshot: attest.Snapshot{RegionID: id, Root: root, Size: 4096, TakenAt: testNow.Add(-time.Minute), PageSize: 4096},
		Workload: vm, Platform: p,
	}
}

// result is a verified report of VM vm-1 with SEV-SNP guest evidence
// holding regions a and b, signed by the host key; change it per test.
func result(t testing.TB) *attest.Result {
	hk := testKey(t, 1)
	return &attest.Result{
		Valid: true,
		KeyID: hk.KeyID(),
		Report: &attest.Report{
			IssuedAt: testNow.Add(-time.Minute), ExpiresAt: testNow.Add(4 * time.Minute),
			Event: attest.EventBoot, Workload: "vm-1", Platform: attest.PlatformHost,
		},
		Guest: &attest.GuestEvidence{
			IssuedAt: testNow.Add(-time.Minute), Event: attest.EventBoot, VM: "vm-1", Platform: "sev-snp",
			Claims:   []attest.Claim{claim("a", rootA, "sev-snp", "vm-1"), claim("b", rootB, "sev-snp", "vm-1")},
			Hardware: &attest.HardwareEvidence{Type: "sev-snp"},
		},
	}
}

// snpFacts are the facts of a non-debug SEV-SNP guest.
func snpFacts() *tee.Facts {
	return &tee.Facts{
		Type: "sev-snp", Measurement: bytes.Clone(meas),
		SNP: &tee.SNPFacts{
			Policy: 0x30000, SMT: true, ReportedTCB: tee.TCBParts{Bootloader: 3, TEE: 0, SNP: 8, Microcode: 115}, TCBKnown: true,
			GuestSVN: 2, VMPL: 0, HostData: make([]byte, 32), IDKeyDigest: make([]byte, 48), Product: "Milan", Signer: "VCEK",
		},
	}
}

// tdxFacts are the facts of a non-debug TDX guest.
func tdxFacts() *tee.Facts {
	t := &tee.TDXFacts{
		MRTD: bytes.Clone(meas), MRConfigID: make([]byte, 48), MROwner: make([]byte, 48),
		TDAttributes: 1 << 28, XFAM: 0x61ae7, MRSeam: bytes.Repeat([]byte{0x5e}, 48), TEETCBSVN: []byte{3, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	}
	for i := range t.RTMRs {
		t.RTMRs[i] = bytes.Repeat([]byte{byte(0x10 + i)}, 48)
	}
	return &tee.Facts{Type: "tdx", Measurement: t.MRTD, TDX: t}
}

// finding returns the finding of a check, failing when there is not
// exactly one.
func finding(t testing.TB, v Verdict, check string) Finding {
	t.Helper()
	var out []Finding
	for _, f := range v.Findings {
		if f.Check == check {
			out = append(out, f)
		}
	}
	if len(out) != 1 {
		t.Fatalf("verdict has %d %q finding(s), want 1; findings: %+v", len(out), check, v.Findings)
	}
	return out[0]
}

func hasCheck(v Verdict, check string) bool {
	for _, f := range v.Findings {
		if f.Check == check {
			return true
		}
	}
	return false
}
