package attest

import (
	"bytes"
	"encoding/hex"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestValidVMName(t *testing.T) {
	for _, name := range []string{
		"a", "vm-1", "web-1", "demo-llm", "db_prod.example.com", "tenant+a@zone:2", "6f1c1d2e-0000-4000-8000-000000000001",
		"A" + strings.Repeat("b", MaxVMName-1),
	} {
		if !ValidVMName(name) || CheckVMName(name) != nil {
			t.Errorf("ValidVMName(%q) = false, want true", name)
		}
	}
	for _, name := range []string{
		"", "web-1 ", " web-1", "web 1", "web-1\n", "web-1\x00",
		"w\u0435b-1",  // Cyrillic small ie (U+0435) for e
		"web-1\u200b", // zero-width space
		"\uff57eb-1",  // full-width w
		"-web", ".web", "_web", "..", "a/b", "web-*", "web-?", "web-[1]", `web\1`, "a,b", "a;b", "a=b",
		"A" + strings.Repeat("b", MaxVMName),
	} {
		if ValidVMName(name) {
			t.Errorf("ValidVMName(%q) = true, want false", name)
		}
		var ie *InvalidVMNameError
		if err := CheckVMName(name); !errors.As(err, &ie) || !errors.Is(err, ErrInvalidVMName) || ie.Name != name {
			t.Errorf("CheckVMName(%q) = %v, want an *InvalidVMNameError", name, err)
		}
	}
}

// FuzzVMName holds the hand-written ValidVMName to the rule's regular
// expression.
func FuzzVMName(f *testing.F) {
	for _, s := range []string{"vm-1", "web-1 ", "w\u0435b-1", "a/b", "6f1c1d2e-0000-4000-8000-000000000001", strings.Repeat("x", 129), "", "-a"} {
		f.Add(s)
	}
	re := regexp.MustCompile(`\A` + VMNameRule + `\z`)
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidVMName(s), re.MatchString(s); got != want {
			t.Fatalf("ValidVMName(%q) = %v, the rule %s says %v", s, got, VMNameRule, want)
		}
		if isUUID(s) && !ValidVMName(s) {
			t.Fatalf("UUID %q is not a valid VM name", s)
		}
	})
}

// TestVMIdentity pins the identity values of docs/FORMAT.md §8.1 (the
// known answer was computed independently of hvmon: SHA3-256 over the
// bytes "hvmon vm identity v1", a zero byte and "web-1").
func TestVMIdentity(t *testing.T) {
	const want = "3697f66ecfcf4e17d43d42f6fc713731e582120cee80d41ce08c8c76248d2c5b"
	got := VMIdentity("web-1")
	if hex.EncodeToString(got[:]) != want {
		t.Errorf("VMIdentity(web-1) = %x, want %s", got, want)
	}
	if h := VMIdentityHostData("web-1"); !bytes.Equal(h[:], got[:]) {
		t.Errorf("HOST_DATA = %x, want the identity", h)
	}
	m := VMIdentityMRConfigID("web-1")
	if !bytes.Equal(m[:32], got[:]) || !bytes.Equal(m[32:], make([]byte, 16)) {
		t.Errorf("MRCONFIGID = %x, want the identity and 16 zero bytes", m)
	}
	for _, other := range []string{"web-1 ", "web-2", "w\u0435b-1", "Web-1", "web-1\x00"} {
		if VMIdentity(other) == got {
			t.Errorf("VMIdentity(%q) equals VMIdentity(web-1)", other)
		}
	}
}

func TestIsUUID(t *testing.T) {
	for s, want := range map[string]bool{
		"6f1c1d2e-0000-4000-8000-000000000001":   true,
		"6F1C1D2E-0000-4000-8000-00000000000A":   true,
		"6f1c1d2e000040008000000000000001":       false,
		"6f1c1d2e-0000-4000-8000-00000000000g":   false,
		"6f1c1d2e-0000-4000-8000-0000000000011":  false,
		"{6f1c1d2e-0000-4000-8000-000000000001}": false,
	} {
		if isUUID(s) != want {
			t.Errorf("isUUID(%q) = %v, want %v", s, !want, want)
		}
	}
}

// hostReport returns a host report of workload with the vm_uuid fact and,
// when g is set, that guest evidence.
func hostReport(workload, uuid string, guest []byte) *Report {
	r := testReport(0)
	r.Workload, r.Platform, r.Guest = workload, PlatformHost, guest
	r.Host = &Observations{Host: "hv-1", EventAt: testNow, Agent: "ok", Facts: map[string]string{FactVMUUID: uuid}}
	return r
}

// TestVerifyVM: a report about another VM, or about a slightly renamed
// one, never passes as the VM the verifier asked about.
func TestVerifyVM(t *testing.T) {
	k := testKey(t, 1)
	const uuid = "6f1c1d2e-0000-4000-8000-000000000001"
	mk := func(workload string) []byte {
		r := hostReport(workload, uuid, nil)
		r.Claims = []Claim{testClaim("w0", []byte("w"), workload, PlatformHost)}
		return mustSign(t, k, r)
	}
	for _, tc := range []struct {
		report, vm string
		want       error
	}{
		{"web-1", "web-1", nil},
		{"web-1", strings.ToUpper(uuid), nil},
		{"web-1", "web-2", ErrWrongVM},
		{"web-1 ", "web-1", ErrWrongVM},
		{"w\u0435b-1", "web-1", ErrWrongVM}, // Cyrillic small ie for e in the report
		{"web-1", "WEB-1", ErrWrongVM},      // names are not folded, only UUIDs
		{"web-1", "6f1c1d2e-0000-4000-8000-000000000002", ErrWrongVM},
		{uuid, uuid, nil}, // a VM named like a UUID
	} {
		o := opts(k)
		o.VM = tc.vm
		res, err := Verify(mk(tc.report), o)
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("report for %q, --vm %q: Verify = %v, want %v", tc.report, tc.vm, err, tc.want)
			continue
		}
		if tc.want != nil && classOf(err) != "appraisal" {
			t.Errorf("report for %q, --vm %q: class %s, want appraisal", tc.report, tc.vm, classOf(err))
		}
		if res.VM == nil || res.VM.Workload != tc.report || res.VM.UUID != uuid {
			t.Errorf("report for %q: Result.VM = %+v", tc.report, res.VM)
		}
	}
}

// TestWhoseMeasurements: only what the guest measured under verified
// hardware evidence satisfies an expected root by default, whatever
// platform a claim names; the signer's own claims count in a report that
// is not a host report.
func TestWhoseMeasurements(t *testing.T) {
	host, gk := testKey(t, 1), testKey(t, 3)
	content := []byte("expected weights")
	root := measureBytes(content)
	guestEv := func(p Platform, hw *HardwareEvidence) []byte {
		g := &GuestEvidence{IssuedAt: testNow, Nonce: testNonce, Event: EventOnDemand, VM: "vm-1", Platform: p,
			Claims: []Claim{testClaim("weights", content, "vm-1", p)}, GuestKey: gk.PublicKey().Bytes(), Hardware: hw}
		b, err := SignGuestEvidence(gk, g, nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	fileReport := func() *Report {
		r := testReport(0)
		r.Claims = []Claim{testClaim("weights", content, "vm-1", "file")}
		return r
	}
	relabelled := func(p Platform, withHost bool) *Report {
		r := testReport(0)
		r.Platform = p
		r.Claims = []Claim{testClaim("weights", content, "vm-1", p)}
		if withHost {
			r.Host = &Observations{Host: "hv-1", EventAt: testNow, Agent: "unavailable"}
		}
		return r
	}
	hwGuest := func() *Report {
		return hostReport("vm-1", "", guestEv("simulated-sev-snp", &HardwareEvidence{Type: "simulated-sev-snp", Report: []byte("report")}))
	}
	noneGuest := func() *Report { return hostReport("vm-1", "", guestEv("none", nil)) }
	type want struct{ def, allow, require error }
	for _, tc := range []struct {
		name string
		rep  *Report
		want want
	}{
		{"file report (hvmon attest)", fileReport(), want{nil, nil, ErrNoHardware}},
		{"host report, claim labelled host", relabelled(PlatformHost, true), want{ErrIncomplete, nil, ErrNoHardware}},
		{"host report, claim labelled file", relabelled("file", true), want{ErrIncomplete, nil, ErrNoHardware}},
		{"host report, claim labelled sev-snp", relabelled("sev-snp", true), want{ErrIncomplete, nil, ErrNoHardware}},
		{"platform host, no observations", relabelled(PlatformHost, false), want{ErrIncomplete, nil, ErrNoHardware}},
		{"guest evidence without hardware", noneGuest(), want{ErrIncomplete, nil, ErrNoHardware}},
		{"guest evidence with verified hardware", hwGuest(), want{nil, nil, nil}},
	} {
		signed := mustSign(t, host, tc.rep)
		for _, m := range []struct {
			mode string
			set  func(*VerifyOptions)
			want error
		}{
			{"default", func(*VerifyOptions) {}, tc.want.def},
			{"AllowHostMeasured", func(o *VerifyOptions) { o.AllowHostMeasured = true }, tc.want.allow},
			{"RequireHardware", func(o *VerifyOptions) { o.RequireHardware = true }, tc.want.require},
			{"both", func(o *VerifyOptions) { o.AllowHostMeasured, o.RequireHardware = true, true }, tc.want.require},
		} {
			o := opts(host)
			o.Strict = true
			o.Evidence = &fakeEvidence{}
			o.Expected = []Expectation{{RegionID: "weights", Roots: []Digest{root}}}
			m.set(&o)
			_, err := Verify(signed, o)
			if !errors.Is(err, m.want) || (m.want == nil) != (err == nil) {
				t.Errorf("%s, %s: Verify = %v, want %v", tc.name, m.mode, err, m.want)
			}
		}
	}
	// A host report without guest evidence and without expected roots
	// still verifies (it covers a region), and says no hardware backs it.
	res, err := Verify(mustSign(t, host, relabelled(PlatformHost, true)), opts(host))
	if err != nil {
		t.Fatalf("host report, no expectations: %v", err)
	}
	counted, excluded := res.CountedClaims(VerifyOptions{})
	if len(counted) != 0 || len(excluded) != 1 {
		t.Errorf("CountedClaims = %d counted, %d excluded, want 0 and 1", len(counted), len(excluded))
	}
	if outer, guest := Origins(res.Report, res.Guest); outer != OriginHost || guest != "" {
		t.Errorf("Origins = %s, %s", outer, guest)
	}
}

// TestGuestPlatformMustBeBacked: guest evidence that names a TEE but
// carries no hardware evidence, or hardware of another type, is refused
// as malformed, by the verifier and by the host before it signs.
func TestGuestPlatformMustBeBacked(t *testing.T) {
	host, gk := testKey(t, 1), testKey(t, 3)
	mk := func(p Platform, hw *HardwareEvidence) []byte {
		g := &GuestEvidence{IssuedAt: testNow, Nonce: testNonce, Event: EventOnDemand, VM: "vm-1", Platform: p,
			Claims: []Claim{testClaim("weights", []byte("w"), "vm-1", p)}, GuestKey: gk.PublicKey().Bytes(), Hardware: hw}
		// Sign the payload directly: SignGuestEvidence refuses to sign it.
		b, err := sign1(gk, typeGuestEvidence, mustEncode(t, g.toWire()), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := SignGuestEvidence(gk, g, nil); !errors.Is(err, ErrMalformed) {
			t.Errorf("SignGuestEvidence(platform %s, hardware %v) = %v, want ErrMalformed", p, hw != nil, err)
		}
		return b
	}
	hw := func(typ Platform) *HardwareEvidence { return &HardwareEvidence{Type: typ, Report: []byte("r")} }
	for name, ev := range map[string][]byte{
		"sev-snp, no hardware":           mk("sev-snp", nil),
		"tdx, no hardware":               mk("tdx", nil),
		"simulated-sev-snp, no hardware": mk("simulated-sev-snp", nil),
		"simulated-tdx, no hardware":     mk("simulated-tdx", nil),
		"other label, no hardware":       mk("file", nil),
		"sev-snp, tdx hardware":          mk("sev-snp", hw("tdx")),
		"tdx, simulated-tdx hardware":    mk("tdx", hw("simulated-tdx")),
		"none, hardware":                 mk("none", hw("sev-snp")),
	} {
		if _, err := CheckGuestEvidence(ev, testNonce, EventOnDemand, "vm-1", VerifyOptions{Evidence: &fakeEvidence{}}); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: CheckGuestEvidence = %v, want ErrMalformed", name, err)
		}
		r := hostReport("vm-1", "", ev)
		o := opts(host)
		o.Evidence = &fakeEvidence{}
		signed := mustSign(t, host, r)
		if _, err := Verify(signed, o); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Verify = %v, want ErrMalformed", name, err)
		}
		// hvmon show decodes as strictly: it never presents the label.
		if _, err := Inspect(signed); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Inspect = %v, want ErrMalformed", name, err)
		}
	}
}

// TestRewrappedGuestEvidence: a host keeps guest evidence it received
// (with its own nonce) and wraps it, an hour later, in a new report under
// the same nonce. Every signature and binding is valid; the evidence's age
// gives it away.
func TestRewrappedGuestEvidence(t *testing.T) {
	host, gk := testKey(t, 1), testKey(t, 3)
	g := &GuestEvidence{IssuedAt: testNow, Nonce: testNonce, Event: EventOnDemand, VM: "vm-1", Platform: "none",
		Claims: []Claim{testClaim("weights", []byte("w"), "vm-1", "none")}, GuestKey: gk.PublicKey().Bytes()}
	gs, err := SignGuestEvidence(gk, g, nil)
	if err != nil {
		t.Fatal(err)
	}
	fresh := hostReport("vm-1", "", gs)
	o := opts(host)
	o.Nonce = testNonce
	res, err := Verify(mustSign(t, host, fresh), o)
	if err != nil || res.EvidenceAgeSeconds == nil || *res.EvidenceAgeSeconds != 0 {
		t.Fatalf("the original report: %v, evidence age %v", err, res.EvidenceAgeSeconds)
	}

	later := testNow.Add(time.Hour)
	rewrapped := hostReport("vm-1", "", gs)
	rewrapped.IssuedAt, rewrapped.ExpiresAt = later, later.Add(5*time.Minute)
	o.Now = later.Add(time.Minute)
	res, err = Verify(mustSign(t, host, rewrapped), o)
	if !errors.Is(err, ErrStaleEvidence) || classOf(err) != "freshness" {
		t.Fatalf("re-wrapped evidence: Verify = %v, want ErrStaleEvidence (freshness)", err)
	}
	if res.EvidenceAgeSeconds == nil || *res.EvidenceAgeSeconds != 3600 {
		t.Errorf("evidence age = %v, want 3600 s", res.EvidenceAgeSeconds)
	}
	// Just inside the default bound, and with a bound the verifier raised.
	for _, tc := range []struct {
		age, max time.Duration
		want     error
	}{
		{DefaultMaxEvidenceAge, 0, nil},
		{DefaultMaxEvidenceAge + time.Second, 0, ErrStaleEvidence},
		{time.Hour, 2 * time.Hour, nil},
		{2 * time.Hour, 2 * time.Hour, nil},
		{25 * time.Hour, 48 * time.Hour, ErrStaleEvidence}, // never more than the lifetime cap
	} {
		r := hostReport("vm-1", "", gs)
		r.IssuedAt, r.ExpiresAt = testNow.Add(tc.age), testNow.Add(tc.age+time.Minute)
		o := opts(host)
		o.Now, o.MaxEvidenceAge = r.IssuedAt, tc.max
		if _, err := Verify(mustSign(t, host, r), o); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("evidence %s old, bound %s: Verify = %v, want %v", tc.age, tc.max, err, tc.want)
		}
	}
}
