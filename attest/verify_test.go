package attest

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"
)

func TestVerifyValid(t *testing.T) {
	k := testKey(t, 1)
	r := testReport(3)
	signed := mustSign(t, k, r)
	o := opts(k)
	o.Nonce = testNonce
	o.Strict = true
	for i := range 3 {
		o.Expected = append(o.Expected, Expectation{RegionID: r.Claims[i].Region.ID, Roots: []Digest{measureBytes(regionContent(i))}})
	}
	res, err := Verify(signed, o)
	if err != nil {
		t.Fatalf("Verify(valid report) = %v, want nil", err)
	}
	if !res.Valid || res.Report == nil || len(res.Report.Claims) != 3 {
		t.Fatalf("Verify(valid report): Valid=%v, report=%v", res.Valid, res.Report)
	}
	if res.ReportHash != ReportHash(signed) || res.KeyID != k.KeyID() {
		t.Errorf("Verify: hash %s key %s, want %s %s", res.ReportHash, res.KeyID, ReportHash(signed), k.KeyID())
	}
	want := []string{stepTrust, stepSignature, stepFormat, stepGuest, stepFreshness, stepNonce, stepVM, stepHardware, stepCompleteness, stepDrift, stepDrift, stepDrift}
	var got []string
	for _, c := range res.Checks {
		got = append(got, c.Name)
		if c.Status == StatusFail || c.Status == StatusWarn {
			t.Errorf("check %s: %s (%s)", c.Name, c.Status, c.Detail)
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("checks = %v, want %v", got, want)
	}
	// The decoded report is what was signed.
	if res.Report.Workload != r.Workload || res.Report.Claims[2].Snapshot.Root != r.Claims[2].Snapshot.Root || !res.Report.IssuedAt.Equal(r.IssuedAt) {
		t.Errorf("decoded report differs from the signed one")
	}
}

func TestVerifyNeedsPinnedKey(t *testing.T) {
	k := testKey(t, 1)
	signed := mustSign(t, k, testReport(1))
	res, err := Verify(signed, VerifyOptions{Now: testNow})
	if !errors.Is(err, ErrUntrustedKey) {
		t.Fatalf("Verify with no pinned key = %v, want ErrUntrustedKey", err)
	}
	if res.Report != nil {
		t.Errorf("Verify returned unverified report data")
	}
}

// TestForgedReportRefused: a verifier that checks the signature against a
// key inside the report lets anyone forge. hvmon has no key in a report
// that a verifier would use; it looks up the header's kid among pinned keys
// only.
func TestForgedReportRefused(t *testing.T) {
	host, attacker := testKey(t, 1), testKey(t, 9)
	forged := testReport(1)
	forged.Attester.Name = "host" // the attacker claims to be the host
	signed := mustSign(t, attacker, forged)
	_, err := Verify(signed, opts(host))
	if !errors.Is(err, ErrUntrustedKey) {
		t.Fatalf("Verify(report signed by an unpinned key) = %v, want ErrUntrustedKey", err)
	}
	// Rewriting the header kid to the host's does not help: the protected
	// header is signed, and the signature is checked under the pinned key.
	env, err := openEnvelope("report", signed)
	if err != nil {
		t.Fatal(err)
	}
	hk := host.KeyID()
	hdr := mustEncode(t, protectedHeader{Alg: int64(AlgMLDSA65), Kid: hk[:], Typ: typeReport})
	env.raw.Protected = hdr
	rewritten := append([]byte{cborTagSign1}, mustEncode(t, env.raw)...)
	if _, err := Verify(rewritten, opts(host)); !errors.Is(err, ErrSignature) {
		t.Fatalf("Verify(kid rewritten to the pinned key) = %v, want ErrSignature", err)
	}
	// Guest evidence carries its own key, but that key is trusted only
	// through hardware evidence bound to it, never as a report signer.
	if _, err := Verify(signed, VerifyOptions{Now: testNow, TrustedKeys: nil}); !errors.Is(err, ErrUntrustedKey) {
		t.Fatalf("Verify(no pinned keys) = %v, want ErrUntrustedKey", err)
	}
}

// TestHeaderInsideSignature: signer and algorithm must not lie outside the
// signed bytes. In hvmon they are in the protected header, which
// Sig_structure covers.
func TestHeaderInsideSignature(t *testing.T) {
	k, other := testKey(t, 1), testKey(t, 2)
	signed := mustSign(t, k, testReport(1))
	env, err := openEnvelope("report", signed)
	if err != nil {
		t.Fatal(err)
	}
	kid := k.KeyID()
	for name, hdr := range map[string]protectedHeader{
		"typ changed": {Alg: int64(AlgMLDSA65), Kid: kid[:], Typ: typeReport + "x"},
		"alg changed": {Alg: -48, Kid: kid[:], Typ: typeReport},
	} {
		e := env.raw
		e.Protected = mustEncode(t, hdr)
		mod := append([]byte{cborTagSign1}, mustEncode(t, e)...)
		if _, err := Verify(mod, opts(k, other)); !errors.Is(err, ErrTrust) {
			t.Errorf("%s: Verify = %v, want a trust failure", name, err)
		}
	}
	// The algorithm may not move to the unprotected header either.
	e := env.raw
	e.Unprotected = mustEncode(t, map[int]int{1: -49})
	mod := append([]byte{cborTagSign1}, mustEncode(t, e)...)
	if _, err := Verify(mod, opts(k)); !errors.Is(err, ErrMalformed) {
		t.Errorf("unprotected alg: Verify = %v, want ErrMalformed", err)
	}
	// The attester identity in the payload must be the header's key.
	w := testReport(1).toWire()
	okid := other.KeyID()
	w.Attester.Kid = okid[:]
	if _, err := Verify(signRaw(t, k, mustEncode(t, w)), opts(k)); !errors.Is(err, ErrMalformed) {
		t.Errorf("payload attester kid differs from header: Verify = %v, want ErrMalformed", err)
	}
}

// TestExpectationsBelongToVerifier: expected hashes that come from the
// attester let an empty one switch drift detection off. hvmon reports
// carry no expectations (an "expected" field is unknown and refused) and
// an expectation with no acceptable root fails closed.
func TestExpectationsBelongToVerifier(t *testing.T) {
	k := testKey(t, 1)
	signed := mustSign(t, k, testReport(1))
	o := opts(k)
	o.Strict = true
	o.Expected = []Expectation{{RegionID: "w0"}} // no acceptable root
	_, err := Verify(signed, o)
	var de *RegionDriftError
	if !errors.As(err, &de) || len(de.Regions) != 1 || de.Regions[0].RegionID != "w0" {
		t.Fatalf("Verify(expectation with no roots) = %v, want drift of w0", err)
	}
	if !errors.Is(err, ErrRegionDrift) || !errors.Is(err, ErrAppraisal) {
		t.Errorf("drift error %v does not match ErrRegionDrift and ErrAppraisal", err)
	}
	// An attester-supplied expectation is not part of the format.
	payload := mustEncode(t, struct {
		*wireReport
		Expected map[string][]byte `cbor:"expected"`
	}{testReport(1).toWire(), map[string][]byte{"w0": {}}})
	if _, err := Verify(signRaw(t, k, payload), opts(k)); !errors.Is(err, ErrMalformed) {
		t.Errorf("Verify(payload with expected hashes) = %v, want ErrMalformed", err)
	}
}

// TestNonceAndLifetime: the verifier checks the nonce, and bounds the
// lifetime the attester chose.
func TestNonceAndLifetime(t *testing.T) {
	k := testKey(t, 1)
	signed := mustSign(t, k, testReport(1))
	o := opts(k)
	o.Nonce = bytes.Repeat([]byte{1}, 32)
	if _, err := Verify(signed, o); !errors.Is(err, ErrNonce) {
		t.Errorf("Verify(replayed report, fresh nonce) = %v, want ErrNonce", err)
	}
	o.Nonce = testNonce[:31] // a prefix is not the nonce
	if _, err := Verify(signed, o); !errors.Is(err, ErrNonce) {
		t.Errorf("Verify(nonce prefix) = %v, want ErrNonce", err)
	}
	r := testReport(1)
	r.ExpiresAt = r.IssuedAt.Add(365 * 24 * time.Hour)
	if _, err := Verify(mustSign(t, k, r), opts(k)); !errors.Is(err, ErrLifetime) {
		t.Errorf("Verify(one-year report) = %v, want ErrLifetime", err)
	}
	o = opts(k)
	o.MaxLifetime = time.Minute // a verifier may be stricter than the default
	if _, err := Verify(signed, o); !errors.Is(err, ErrLifetime) {
		t.Errorf("Verify(5-minute report, 1-minute cap) = %v, want ErrLifetime", err)
	}
}

// TestExpiry: expiry fails closed on missing, textual or backwards times,
// within a bounded clock skew (none with NoClockSkew), and the issued-at
// window holds for every snapshot too.
func TestExpiry(t *testing.T) {
	k := testKey(t, 1)
	signed := mustSign(t, k, testReport(1))
	exp := testNow.Add(5 * time.Minute)
	skew := DefaultClockSkew
	for _, tc := range []struct {
		at   time.Time
		want error
	}{
		{exp.Add(skew), nil},
		{exp.Add(skew + time.Second), ErrExpired},
		{testNow.Add(-skew), nil},
		{testNow.Add(-skew - time.Second), ErrNotYetValid},
	} {
		o := opts(k)
		o.Now = tc.at
		if _, err := Verify(signed, o); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("Verify at %s = %v, want %v", tc.at, err, tc.want)
		}
	}
	// NoClockSkew makes every comparison exact; ClockSkew is ignored.
	for _, tc := range []struct {
		at   time.Time
		want error
	}{
		{exp, nil},
		{exp.Add(time.Second), ErrExpired},
		{testNow, nil},
		{testNow.Add(-time.Second), ErrNotYetValid},
	} {
		o := opts(k)
		o.Now, o.NoClockSkew, o.ClockSkew = tc.at, true, time.Hour
		if _, err := Verify(signed, o); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("Verify at %s with NoClockSkew = %v, want %v", tc.at, err, tc.want)
		}
	}
	// Missing, empty, textual, or backwards times are malformed.
	type noExp struct {
		*wireReport
		Exp cbor.RawMessage `cbor:"4,keyasint,omitempty"`
	}
	w := testReport(1).toWire()
	for name, raw := range map[string]cbor.RawMessage{
		"absent": nil, "text": mustEncode(t, "2027-01-01T00:00:00Z"), "null": {0xf6},
		"float": mustEncode(t, 1.8e9), "before iat": mustEncode(t, w.Iat-1), "equal iat": mustEncode(t, w.Iat),
	} {
		p := mustEncode(t, noExp{w, raw})
		if _, err := Verify(signRaw(t, k, p), opts(k)); !errors.Is(err, ErrMalformed) {
			t.Errorf("expires-at %s: Verify = %v, want ErrMalformed", name, err)
		}
	}
	// A snapshot taken after the report was issued is refused.
	r := testReport(1)
	r.Claims[0].Snapshot.TakenAt = r.IssuedAt.Add(time.Hour)
	if _, err := Verify(mustSign(t, k, r), opts(k)); !errors.Is(err, ErrNotYetValid) {
		t.Errorf("snapshot after issued-at: Verify = %v, want ErrNotYetValid", err)
	}
}

// TestClaims: zero claims, duplicate or mismatched claims do not verify.
func TestClaims(t *testing.T) {
	k := testKey(t, 1)
	zero := testReport(0)
	if _, err := Verify(mustSign(t, k, zero), opts(k)); !errors.Is(err, ErrIncomplete) {
		t.Errorf("zero regions: Verify = %v, want ErrIncomplete", err)
	}
	for name, mutate := range map[string]func(w *wireReport){
		"duplicate id":        func(w *wireReport) { w.Claims[1].Region.ID, w.Claims[1].Snapshot.Region = "w0", "w0" },
		"workload mismatch":   func(w *wireReport) { w.Claims[0].Workload = "vm-2" },
		"platform mismatch":   func(w *wireReport) { w.Claims[0].Platform = "tdx" },
		"snapshot of another": func(w *wireReport) { w.Claims[0].Snapshot.Region = "w1" },
		"size mismatch":       func(w *wireReport) { w.Claims[0].Snapshot.Size++ },
		"page size":           func(w *wireReport) { w.Claims[0].Snapshot.PageSize = 2 * pageSize },
		"short root":          func(w *wireReport) { w.Claims[0].Snapshot.Root = w.Claims[0].Snapshot.Root[:31] },
		"bad region id":       func(w *wireReport) { w.Claims[0].Region.ID, w.Claims[0].Snapshot.Region = "a=b", "a=b" },
		"unknown event":       func(w *wireReport) { w.Event = "reboot" },
		"short nonce":         func(w *wireReport) { w.Nonce = w.Nonce[:7] },
		"profile":             func(w *wireReport) { w.Profile = profileGuestEvidence },
		"negative iat":        func(w *wireReport) { w.Iat = -5 },
		"changed unsorted":    func(w *wireReport) { w.Claims[0].Snapshot.Changed = [][2]uint64{{1, 1}, {0, 0}} },
		"changed adjacent":    func(w *wireReport) { w.Claims[0].Snapshot.Changed = [][2]uint64{{0, 0}, {1, 1}} },
		"changed outside":     func(w *wireReport) { w.Claims[0].Snapshot.Changed = [][2]uint64{{0, 2}} },
		"changed backwards":   func(w *wireReport) { w.Claims[0].Snapshot.Changed = [][2]uint64{{1, 0}} },
		"negative taken_at":   func(w *wireReport) { w.Claims[0].Snapshot.TakenAt = -1 },
	} {
		w := testReport(2).toWire()
		mutate(w)
		if _, err := Verify(signRaw(t, k, mustEncode(t, w)), opts(k)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Verify = %v, want ErrMalformed", name, err)
		}
	}
	// Sign refuses to produce what Verify would reject.
	bad := testReport(2)
	bad.Claims[1] = bad.Claims[0]
	if _, err := Sign(k, bad, nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("Sign(duplicate regions) = %v, want ErrMalformed", err)
	}
}

// TestDomainSeparation: the signed bytes say what they are and in which
// version. hvmon signs a typ header and an EAT profile naming the object
// and its version; guest evidence is never accepted as a report.
func TestDomainSeparation(t *testing.T) {
	gk := testKey(t, 3)
	g := &GuestEvidence{IssuedAt: testNow, Nonce: testNonce, Event: EventBoot, VM: "vm-1", Platform: "none",
		Claims: []Claim{testClaim("w0", []byte("x"), "vm-1", "none")}, GuestKey: gk.PublicKey().Bytes()}
	gs, err := SignGuestEvidence(gk, g, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(gs, opts(gk)); !errors.Is(err, ErrTrust) {
		t.Errorf("Verify(guest evidence as a report) = %v, want a trust failure", err)
	}
	// A report payload signed under the guest evidence type fails too.
	k := testKey(t, 1)
	rs, err := sign1(k, typeGuestEvidence, mustEncode(t, testReport(1).toWire()), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(rs, opts(k)); !errors.Is(err, ErrTrust) {
		t.Errorf("Verify(report under guest type) = %v, want a trust failure", err)
	}
	// REPORT_DATA is domain-separated and changes with every payload field.
	rd1, _ := GuestReportData(g)
	g.Seq++
	rd2, _ := GuestReportData(g)
	if rd1 == rd2 {
		t.Errorf("GuestReportData ignores seq")
	}
	g.Hardware = &HardwareEvidence{Type: "sev-snp", Report: []byte{1, 2, 3}}
	rd3, _ := GuestReportData(g)
	if rd3 != rd2 {
		t.Errorf("GuestReportData depends on the hardware evidence it is bound into")
	}
}

// TestErrorClasses: errors are reported as what they are. Each failure
// matches exactly one class, and the classes are distinct.
func TestErrorClasses(t *testing.T) {
	classes := []error{ErrMalformed, ErrTrust, ErrFreshness, ErrAppraisal}
	for _, err := range []error{ErrSignature, ErrUntrustedKey, ErrAlgorithm, ErrBinding, ErrExpired, ErrNotYetValid, ErrLifetime, ErrNonce, ErrStaleEvidence, ErrRegionDrift, ErrIncomplete, ErrWrongVM, ErrNoHardware,
		&MalformedError{What: "x", Reason: "y"}, &RegionDriftError{}} {
		n := 0
		for _, c := range classes {
			if errors.Is(err, c) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%v matches %d classes, want 1", err, n)
		}
		if _, ok := err.(*MalformedError); !ok && !errors.Is(err, ErrVerification) {
			t.Errorf("%v does not match ErrVerification", err)
		}
	}
	if errors.Is(&MalformedError{}, ErrVerification) {
		t.Errorf("malformed input is reported as a verification failure")
	}
	be := &BackendError{Backend: "file", Op: "snapshot", Err: errors.New("no such file")}
	if !errors.Is(be, ErrBackend) {
		t.Errorf("backend errors do not match ErrBackend")
	}
	var ir *InvalidRegionError
	if err := (Region{ID: ""}).Validate(); !errors.As(err, &ir) || !errors.Is(err, ErrInvalidRegion) {
		t.Errorf("Region{}.Validate() = %v, want *InvalidRegionError", err)
	}
}

// TestMalformedInput: malformed input is an error, never a crash, and no
// float round trip can break a signature. hvmon stores integers only and
// answers every malformed input with ErrMalformed; the fuzz targets hold
// that up.
func TestMalformedInput(t *testing.T) {
	k := testKey(t, 1)
	signed := mustSign(t, k, testReport(2))
	inputs := [][]byte{nil, {}, {0xd2}, {0xd2, 0x84}, {0xd2, 0x80}, {0xd2, 0x9f, 0xff}, []byte("{}"), bytes.Repeat([]byte{0xd2}, 100),
		signed[:len(signed)/2], append(bytes.Clone(signed), signed...), make([]byte, MaxReportSize+1)}
	for i := range len(signed) / 97 {
		m := bytes.Clone(signed)
		m[i*97] ^= 0xff
		inputs = append(inputs, m)
	}
	for i, in := range inputs {
		_, err := Verify(in, opts(k))
		if err == nil {
			t.Errorf("input %d: Verify accepted a damaged report", i)
			continue
		}
		if c := classOf(err); c != "malformed" && c != "trust" {
			t.Errorf("input %d: Verify = %v (class %s), want malformed or trust", i, err, c)
		}
	}
	// Times survive a round trip exactly.
	r := testReport(1)
	r.IssuedAt = time.Unix(1_800_000_123, 0).UTC()
	r.ExpiresAt = r.IssuedAt.Add(time.Minute)
	r.Claims[0].Snapshot.TakenAt = r.IssuedAt
	o := opts(k)
	o.Now = r.IssuedAt
	res, err := Verify(mustSign(t, k, r), o)
	if err != nil || !res.Report.IssuedAt.Equal(r.IssuedAt) {
		t.Fatalf("round trip of times: %v, %v", err, res)
	}
}

func TestGuestEvidence(t *testing.T) {
	host, gk := testKey(t, 1), testKey(t, 3)
	mk := func(mut func(*GuestEvidence)) []byte {
		g := &GuestEvidence{IssuedAt: testNow, Nonce: testNonce, Event: EventOnDemand, VM: "vm-1", Platform: "none",
			Claims: []Claim{testClaim("weights", []byte("w"), "vm-1", "none")}, GuestKey: gk.PublicKey().Bytes()}
		if mut != nil {
			mut(g)
		}
		b, err := SignGuestEvidence(gk, g, nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	report := func(guest []byte, claims int) []byte {
		r := testReport(claims)
		r.Guest = guest
		return mustSign(t, host, r)
	}
	res, err := Verify(report(mk(nil), 1), opts(host))
	if err != nil {
		t.Fatalf("Verify(report with guest evidence) = %v", err)
	}
	if res.Guest == nil || len(res.AllClaims()) != 2 || *res.GuestHash != ReportHash(res.Report.Guest) {
		t.Fatalf("guest evidence not returned: %+v", res)
	}
	for name, tc := range map[string]struct {
		guest []byte
		want  error
	}{
		"other nonce": {mk(func(g *GuestEvidence) { g.Nonce = bytes.Repeat([]byte{7}, 32) }), ErrBinding},
		"other event": {mk(func(g *GuestEvidence) { g.Event = EventBoot }), ErrBinding},
		"other vm":    {mk(func(g *GuestEvidence) { g.VM = "vm-2"; g.Claims[0].Workload = "vm-2" }), ErrBinding},
		"hardware, no verifier": {mk(func(g *GuestEvidence) {
			g.Platform = "sev-snp"
			g.Claims[0].Platform = "sev-snp"
			g.Hardware = &HardwareEvidence{Type: "sev-snp", Report: []byte{1}}
		}), ErrBinding},
		"region id clash": {mk(func(g *GuestEvidence) { g.Claims[0] = testClaim("w0", []byte("w"), "vm-1", "none") }), ErrMalformed},
		"not cose":        {[]byte{0xd2, 0x00}, ErrMalformed},
		"late":            {mk(func(g *GuestEvidence) { g.IssuedAt = testNow.Add(time.Hour) }), ErrNotYetValid},
	} {
		if _, err := Verify(report(tc.guest, 1), opts(host)); !errors.Is(err, tc.want) {
			t.Errorf("%s: Verify = %v, want %v", name, err, tc.want)
		}
	}
	// A flipped byte in the embedded guest signature is caught even though
	// the host signature over it is valid.
	gs := mk(nil)
	gs[len(gs)-50] ^= 1
	if _, err := Verify(report(gs, 1), opts(host)); !errors.Is(err, ErrSignature) {
		t.Errorf("damaged guest signature: Verify = %v, want ErrSignature", err)
	}
	// Guest key mismatch: SignGuestEvidence refuses a payload naming another key.
	g := &GuestEvidence{GuestKey: host.PublicKey().Bytes()}
	if _, err := SignGuestEvidence(gk, g, nil); err == nil {
		t.Errorf("SignGuestEvidence signed a payload naming another key")
	}
}

type fakeEvidence struct {
	got  [64]byte
	fail error
}

func (f *fakeEvidence) VerifyEvidence(hw *HardwareEvidence, rd [64]byte, now time.Time) error {
	f.got = rd
	return f.fail
}

func TestGuestHardwareBinding(t *testing.T) {
	host, gk := testKey(t, 1), testKey(t, 3)
	g := &GuestEvidence{IssuedAt: testNow, Nonce: testNonce, Event: EventBoot, VM: "vm-1", Platform: "simulated-sev-snp",
		Claims: []Claim{testClaim("weights", []byte("w"), "vm-1", "simulated-sev-snp")}, GuestKey: gk.PublicKey().Bytes(),
		Hardware: &HardwareEvidence{Type: "simulated-sev-snp", Report: []byte("report"), Certs: []HexBytes{[]byte("vcek")}}}
	gs, err := SignGuestEvidence(gk, g, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := testReport(0)
	r.Event = EventBoot
	r.Guest = gs
	signed := mustSign(t, host, r)
	fe := &fakeEvidence{}
	o := opts(host)
	o.Evidence = fe
	if _, err := Verify(signed, o); err != nil {
		t.Fatalf("Verify = %v", err)
	}
	if want, _ := GuestReportData(g); fe.got != want {
		t.Errorf("evidence verifier got REPORT_DATA %x, want %x", fe.got, want)
	}
	fe.fail = errors.New("chain does not verify")
	if _, err := Verify(signed, o); !errors.Is(err, ErrBinding) {
		t.Errorf("Verify with failing evidence = %v, want ErrBinding", err)
	}
}

// TestGoCOSEInterop checks that go-cose, an independent COSE
// implementation, verifies what hvmon signs, and that hvmon's own
// Sig_structure is byte-identical to go-cose's.
func TestGoCOSEInterop(t *testing.T) {
	k := testKey(t, 1)
	signed := mustSign(t, k, testReport(3))
	var msg cose.Sign1Message
	if err := msg.UnmarshalCBOR(signed); err != nil {
		t.Fatal(err)
	}
	if err := msg.Verify(nil, interopVerifier{k.PublicKey()}); err != nil {
		t.Fatalf("go-cose Verify = %v", err)
	}
	env, err := openEnvelope("report", signed)
	if err != nil {
		t.Fatal(err)
	}
	want, err := cbor.Marshal([]any{"Signature1", env.raw.Protected, []byte{}, env.raw.Payload})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(env.toBeSigned(), want) {
		t.Errorf("toBeSigned differs from the generic encoding")
	}
}

type interopVerifier struct{ k *PublicKey }

func (interopVerifier) Algorithm() cose.Algorithm { return AlgMLDSA65 }
func (v interopVerifier) Verify(tbs, sig []byte) error {
	if !v.k.Verify(tbs, sig) {
		return errors.New("bad signature")
	}
	return nil
}

func TestBstrEncoding(t *testing.T) {
	for _, n := range []int{0, 1, 23, 24, 255, 256, 65535, 65536} {
		b := make([]byte, n)
		want, _ := cbor.Marshal(b)
		if got := appendBstr(nil, b); !bytes.Equal(got, want) || bstrLen(b) != len(want) {
			t.Errorf("appendBstr(%d bytes): len %d/%d, want %d", n, len(got), bstrLen(b), len(want))
		}
	}
}

func TestInspect(t *testing.T) {
	k := testKey(t, 1)
	in, err := Inspect(mustSign(t, k, testReport(2)))
	if err != nil {
		t.Fatal(err)
	}
	if in.KeyID != k.KeyID() || in.Alg != -49 || len(in.Report.Claims) != 2 {
		t.Errorf("Inspect = %+v", in)
	}
	if _, err := Inspect([]byte{0xd2}); !errors.Is(err, ErrMalformed) {
		t.Errorf("Inspect(garbage) = %v, want ErrMalformed", err)
	}
}

// TestHostClaimsDoNotStandInForTheGuest: a host that drops the guest
// evidence and claims the expected root itself does not pass, unless the
// verifier accepts host-measured regions.
func TestHostClaimsDoNotStandInForTheGuest(t *testing.T) {
	k := testKey(t, 1)
	r := testReport(0)
	r.Platform = PlatformHost
	r.Claims = []Claim{testClaim("weights", []byte("expected"), "vm-1", PlatformHost)}
	signed := mustSign(t, k, r)
	o := opts(k)
	o.Strict = true
	o.Expected = []Expectation{{RegionID: "weights", Roots: []Digest{measureBytes([]byte("expected"))}}}
	if _, err := Verify(signed, o); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("host claim for an expected region: %v, want ErrIncomplete", err)
	}
	o.AllowHostMeasured = true
	if _, err := Verify(signed, o); err != nil {
		t.Fatalf("with AllowHostMeasured: %v", err)
	}
}
