package attest

//go:generate go test -run TestVectors -update

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors from the generator")

const vectorDir = "../testdata/vectors"

// Vector is one scenario of testdata/vectors/vectors.json: a signed object
// and the verifier settings under which it must give Class and Exit.
type Vector struct {
	Name   string            `json:"name"`
	File   string            `json:"file"`
	About  string            `json:"about"`
	Trust  []string          `json:"trust"`            // key files under testdata/keys
	At     time.Time         `json:"at"`               // verification time
	Nonce  string            `json:"nonce,omitempty"`  // hex; the verifier's nonce
	Expect map[string]string `json:"expect,omitempty"` // region id -> hex root
	Strict bool              `json:"strict,omitempty"`
	// AllowHostMeasured, RequireHardware, VM and MaxEvidenceAge (a Go
	// duration) are the VerifyOptions fields of the same names
	// (--allow-host-measured, --require-hardware, --vm,
	// --max-evidence-age).
	AllowHostMeasured bool     `json:"allow_host_measured,omitempty"`
	RequireHardware   bool     `json:"require_hardware,omitempty"`
	VM                string   `json:"vm,omitempty"`
	MaxEvidenceAge    string   `json:"max_evidence_age,omitempty"`
	Class             string   `json:"class"` // "", "malformed", "trust", "freshness", "appraisal"
	Exit              int      `json:"exit"`  // hvmon verify's exit code
	Drift             []string `json:"drift,omitempty"`
}

type vectorFile struct {
	Comment string   `json:"comment"`
	Vectors []Vector `json:"vectors"`
}

// Vector keys: ML-DSA-65 keys from fixed seeds, test use only.
func vectorHostKey(t testing.TB) *PrivateKey  { return testKey(t, 0x01) }
func vectorOtherKey(t testing.TB) *PrivateKey { return testKey(t, 0x02) }
func vectorGuestKey(t testing.TB) *PrivateKey { return testKey(t, 0x03) }

// classOf maps an error to its class name, the one the CLI turns into an
// exit code.
func classOf(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrMalformed):
		return "malformed"
	case errors.Is(err, ErrTrust):
		return "trust"
	case errors.Is(err, ErrFreshness):
		return "freshness"
	case errors.Is(err, ErrAppraisal):
		return "appraisal"
	}
	return "other"
}

var exitOf = map[string]int{"": 0, "malformed": 2, "trust": 3, "freshness": 4, "appraisal": 5}

// generateVectors builds every vector from fixed seeds. Signing is
// deterministic, so the output is byte-identical on every run.
func generateVectors(t testing.TB) (map[string][]byte, []Vector) {
	host, other, guest := vectorHostKey(t), vectorOtherKey(t), vectorGuestKey(t)
	at := testNow.Add(time.Minute)
	nonceHex := hex.EncodeToString(testNonce)
	files := map[string][]byte{}
	var vs []Vector
	add := func(v Vector, data []byte) {
		if v.File == "" {
			v.File = v.Name + ".cose"
		}
		if v.Trust == nil {
			v.Trust = []string{"host.pub"}
		}
		if v.At.IsZero() {
			v.At = at
		}
		v.Exit = exitOf[v.Class]
		files[v.File] = data
		vs = append(vs, v)
	}
	rep := func() *Report { return testReport(2) }
	valid := mustSign(t, host, rep())
	rootHex := func(i int) string { return measureBytes(regionContent(i)).String() }

	add(Vector{Name: "valid", About: "two file regions, pinned key, matching nonce and roots", Nonce: nonceHex,
		Expect: map[string]string{"w0": rootHex(0), "w1": rootHex(1)}, Strict: true}, valid)

	// Nested form: guest evidence (platform "none", no hardware) inside a host report.
	g := &GuestEvidence{IssuedAt: testNow, Nonce: testNonce, Event: EventOnDemand, VM: "vm-1", Platform: "none",
		Claims: []Claim{testClaim("weights", regionContent(7), "vm-1", "none")}, GuestKey: guest.PublicKey().Bytes(), Seq: 4}
	gprev := KeyIDOf([]byte("previous guest evidence"))
	g.Prev = &gprev
	gs, err := SignGuestEvidence(guest, g, &SignOptions{Deterministic: true})
	if err != nil {
		t.Fatal(err)
	}
	hr := rep()
	hr.Claims = nil
	hr.Platform = "host"
	hr.Guest = gs
	hr.Seq = 9
	hprev := KeyIDOf([]byte("previous host report"))
	hr.Prev = &hprev
	hr.Host = &Observations{Host: "hv-1", EventAt: testNow.Add(-1500 * time.Millisecond), Agent: "ok",
		Facts: map[string]string{"qemu": "7.2.0", "vm_uuid": "6f1c1d2e-0000-4000-8000-000000000001"}}
	validGuest := mustSign(t, host, hr)
	weightsHex := measureBytes(regionContent(7)).String()
	add(Vector{Name: "valid-guest", About: "host report embedding guest evidence without hardware evidence; the verifier allows regions no hardware backs",
		Nonce: nonceHex, Expect: map[string]string{"weights": weightsHex}, Strict: true, AllowHostMeasured: true}, validGuest)
	add(Vector{Name: "guest-no-hardware-expect", File: "valid-guest.cose", About: "the same report: a guest region without hardware evidence is the host's word and satisfies no expected root by default",
		Nonce: nonceHex, Expect: map[string]string{"weights": weightsHex}, Strict: true, Class: "appraisal"}, validGuest)
	add(Vector{Name: "require-hardware", File: "valid-guest.cose", About: "the same report, the verifier requires hardware evidence",
		RequireHardware: true, Class: "appraisal"}, validGuest)
	add(Vector{Name: "require-hardware-file", File: "valid.cose", About: "a file report, the verifier requires hardware evidence",
		RequireHardware: true, Class: "appraisal"}, valid)

	// Which VM: --vm matches the workload byte for byte, or the vm_uuid
	// fact as a UUID.
	add(Vector{Name: "vm-match", File: "valid-guest.cose", About: "the verifier asks about vm-1", VM: "vm-1"}, validGuest)
	add(Vector{Name: "vm-uuid-match", File: "valid-guest.cose", About: "the verifier asks about the VM by its UUID, in upper case",
		VM: "6F1C1D2E-0000-4000-8000-000000000001"}, validGuest)
	add(Vector{Name: "vm-other", File: "valid.cose", About: "the verifier asks about vm-2: the report is about another VM", VM: "vm-2", Class: "appraisal"}, valid)
	add(Vector{Name: "vm-other-uuid", File: "valid-guest.cose", About: "the verifier asks about another UUID", VM: "6f1c1d2e-0000-4000-8000-000000000002", Class: "appraisal"}, validGuest)
	spaced := rep()
	spaced.Workload = "vm-1 "
	for i := range spaced.Claims {
		spaced.Claims[i].Workload = "vm-1 "
	}
	add(Vector{Name: "vm-renamed", About: "a report for \"vm-1 \" (a trailing space), the verifier asks about vm-1", VM: "vm-1", Class: "appraisal"}, mustSign(t, host, spaced))

	// Whose measurements: the host's own claims count for no expected root,
	// whatever platform they are labelled with.
	hc := rep()
	hc.Claims = hc.Claims[:1]
	hc.Host = &Observations{Host: "hv-1", EventAt: testNow, Agent: "unavailable", Detail: "no agent"}
	add(Vector{Name: "host-claim-relabelled", About: "a host report without guest evidence whose own claim, labelled platform file, carries the expected root",
		Expect: map[string]string{"w0": rootHex(0)}, Strict: true, Class: "appraisal"}, mustSign(t, host, hc))
	add(Vector{Name: "host-claim-allowed", File: "host-claim-relabelled.cose", About: "the same report, the verifier allows host-measured regions",
		Expect: map[string]string{"w0": rootHex(0)}, Strict: true, AllowHostMeasured: true}, mustSign(t, host, hc))

	// Guest evidence whose platform its hardware evidence does not back.
	badGuest := func(platform Platform, hw *HardwareEvidence) []byte {
		bg := *g
		bg.Prev = nil
		bg.Platform = platform
		bg.Claims = []Claim{testClaim("weights", regionContent(7), "vm-1", platform)}
		bg.Hardware = hw
		bgs, err := sign1(guest, typeGuestEvidence, mustEncode(t, bg.toWire()), &SignOptions{Deterministic: true})
		if err != nil {
			t.Fatal(err)
		}
		br := rep()
		br.Claims = nil
		br.Platform = PlatformHost
		br.Guest = bgs
		br.Host = hr.Host
		return mustSign(t, host, br)
	}
	add(Vector{Name: "guest-tee-without-hardware", About: "guest evidence of platform sev-snp that carries no hardware evidence", Class: "malformed"},
		badGuest("sev-snp", nil))
	add(Vector{Name: "guest-hardware-type-mismatch", About: "guest evidence of platform sev-snp that carries tdx hardware evidence", Class: "malformed"},
		badGuest("sev-snp", &HardwareEvidence{Type: "tdx", Report: []byte("quote")}))
	add(Vector{Name: "guest-none-with-hardware", About: "guest evidence of platform none that carries hardware evidence", Class: "malformed"},
		badGuest("none", &HardwareEvidence{Type: "simulated-sev-snp", Report: []byte("report")}))

	// How fresh: the host wraps guest evidence it kept for an hour in a new
	// report under the same nonce.
	old := rep()
	old.IssuedAt, old.ExpiresAt = testNow.Add(time.Hour), testNow.Add(time.Hour+5*time.Minute)
	old.Claims = nil
	old.Platform = PlatformHost
	old.Guest = gs
	old.Host = &Observations{Host: "hv-1", EventAt: old.IssuedAt, Agent: "ok"}
	rewrapped := mustSign(t, host, old)
	add(Vector{Name: "stale-evidence", About: "guest evidence issued an hour before the report that wraps it, under the same nonce",
		Nonce: nonceHex, At: old.IssuedAt.Add(time.Minute), Class: "freshness"}, rewrapped)
	add(Vector{Name: "stale-evidence-allowed", File: "stale-evidence.cose", About: "the same report, the verifier accepts evidence up to two hours old",
		Nonce: nonceHex, At: old.IssuedAt.Add(time.Minute), MaxEvidenceAge: "2h"}, rewrapped)

	tp := bytes.Clone(valid)
	i := bytes.Index(tp, []byte("vm-1"))
	tp[i+3] = '2' // "vm-2" in the payload's workload: still well-formed, no longer signed
	add(Vector{Name: "tampered-payload", About: "one payload byte changed (workload vm-1 -> vm-2)", Class: "trust"}, tp)

	ts := bytes.Clone(valid)
	ts[len(ts)-100] ^= 0x01
	add(Vector{Name: "tampered-signature", About: "one signature bit flipped", Class: "trust"}, ts)

	add(Vector{Name: "other-key", About: "valid signature by a key the verifier does not pin", Class: "trust"}, mustSign(t, other, rep()))

	add(Vector{Name: "other-key-trusted", About: "the same report verified with that key pinned next to the host key",
		File: "other-key.cose", Trust: []string{"host.pub", "other.pub"}}, mustSign(t, other, rep()))

	payload := mustEncode(t, rep().toWire())
	kid := host.KeyID()
	wrongAlg, err := signWithHeader(host, protectedHeader{Alg: -48, Kid: kid[:], Typ: typeReport}, payload, &SignOptions{Deterministic: true})
	if err != nil {
		t.Fatal(err)
	}
	add(Vector{Name: "wrong-alg-header", About: "protected header names ML-DSA-44 (-48)", Class: "trust"}, wrongAlg)

	add(Vector{Name: "expired", About: "verified one hour after expires-at", At: testNow.Add(5*time.Minute + time.Hour), Class: "freshness"}, valid)
	add(Vector{Name: "not-yet-valid", About: "verified one hour before issued-at", At: testNow.Add(-time.Hour), Class: "freshness"}, valid)

	long := rep()
	long.ExpiresAt = testNow.Add(30 * 24 * time.Hour)
	add(Vector{Name: "lifetime-too-long", About: "the signer chose a 30-day lifetime; the verifier caps it at 24 h", Class: "freshness"}, mustSign(t, host, long))

	add(Vector{Name: "nonce-mismatch", About: "the verifier asked another nonce", Nonce: hex.EncodeToString(bytes.Repeat([]byte{0xaa}, 32)), Class: "freshness"}, valid)

	wrongRoot := KeyIDOf([]byte("not the root")).String()
	add(Vector{Name: "drift", About: "region w1 differs from the verifier's reference, strict mode",
		Expect: map[string]string{"w0": rootHex(0), "w1": wrongRoot}, Strict: true, Class: "appraisal", Drift: []string{"w1"}}, valid)
	add(Vector{Name: "drift-warn", About: "the same drift outside strict mode: valid, with a warning", File: "drift.cose",
		Expect: map[string]string{"w0": rootHex(0), "w1": wrongRoot}, Drift: []string{"w1"}}, valid)
	add(Vector{Name: "missing-region", About: "the verifier expects region w9, which the report lacks", File: "valid.cose",
		Expect: map[string]string{"w9": rootHex(0)}, Class: "appraisal"}, valid)

	zero := rep()
	zero.Claims = nil
	add(Vector{Name: "zero-regions", About: "a signed report over no region at all", Class: "appraisal"}, mustSign(t, host, zero))

	dup := rep().toWire()
	dup.Claims[1] = dup.Claims[0]
	add(Vector{Name: "duplicate-regions", About: "two claims for region w0, signed", Class: "malformed"}, signRaw(t, host, mustEncode(t, dup)))

	mis := rep().toWire()
	mis.Claims[1].Platform = "memory"
	add(Vector{Name: "claim-platform-mismatch", About: "a claim's platform disagrees with the report's, signed", Class: "malformed"}, signRaw(t, host, mustEncode(t, mis)))

	add(Vector{Name: "truncated", About: "the valid report cut short by 10 bytes", Class: "malformed"}, valid[:len(valid)-10])
	add(Vector{Name: "trailing-bytes", About: "the valid report followed by one extra byte", Class: "malformed"}, append(bytes.Clone(valid), 0x00))

	add(Vector{Name: "unknown-field", About: "a signed payload carrying an extra \"expected\" field", Class: "malformed"},
		signRaw(t, host, mustEncode(t, struct {
			*wireReport
			Expected map[string][]byte `cbor:"expected"`
		}{rep().toWire(), map[string][]byte{"w0": make([]byte, 32)}})))

	fl := rep().toWire()
	add(Vector{Name: "float-time", About: "issued-at encoded as a float, signed", Class: "malformed"},
		signRaw(t, host, mustEncode(t, struct {
			*wireReport
			Iat float64 `cbor:"6,keyasint"`
		}{fl, float64(fl.Iat) + 0.5})))

	nc := reverseMapOrder(t, payload)
	add(Vector{Name: "non-canonical", About: "the payload map with its keys in reverse order, signed", Class: "malformed"}, signRaw(t, host, nc))

	add(Vector{Name: "guest-as-report", About: "guest evidence signed by a pinned key, presented as a report", Trust: []string{"host.pub", "guest.pub"},
		Class: "trust"}, gs)
	return files, vs
}

// reverseMapOrder re-encodes a top-level CBOR map with its entries reversed.
func reverseMapOrder(t testing.TB, data []byte) []byte {
	var m map[any]cbor.RawMessage
	if err := cbor.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	sorted := mustEncode(t, m)
	// Split the deterministic encoding into entries, then write them back in
	// reverse: a map header followed by key/value pairs.
	dec := cbor.NewDecoder(bytes.NewReader(sorted[1:]))
	var pairs [][]byte
	for range len(m) {
		var k, v cbor.RawMessage
		if err := dec.Decode(&k); err != nil {
			t.Fatal(err)
		}
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		pairs = append(pairs, append(bytes.Clone(k), v...))
	}
	out := []byte{sorted[0]}
	for i := len(pairs) - 1; i >= 0; i-- {
		out = append(out, pairs[i]...)
	}
	return out
}

func keyFiles(t testing.TB) map[string][]byte {
	out := map[string][]byte{}
	for name, k := range map[string]*PrivateKey{"host": vectorHostKey(t), "other": vectorOtherKey(t), "guest": vectorGuestKey(t)} {
		pub, err := MarshalPublicKeyPEM(k.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		priv, err := MarshalPrivateKeyPEM(k)
		if err != nil {
			t.Fatal(err)
		}
		out[name+".pub"] = pub
		out[name+".key"] = priv
	}
	return out
}

// TestVectors regenerates every vector and key in memory, checks that
// testdata holds exactly those bytes (run `go generate ./attest` after a
// deliberate format change), and that each vector gives its verdict.
func TestVectors(t *testing.T) {
	files, vs := generateVectors(t)
	man, err := json.MarshalIndent(vectorFile{
		Comment: "hvmon verification vectors: each names a signed object, the verifier's settings, and the class and exit code hvmon verify must give. Generated by attest/vectors_test.go (go generate ./attest) from fixed seeds; see docs/FORMAT.md.",
		Vectors: vs,
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	files["vectors.json"] = append(man, '\n')
	keys := keyFiles(t)
	if *update {
		for dir, set := range map[string]map[string][]byte{vectorDir: files, "../testdata/keys": keys} {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, data := range set {
				mode := os.FileMode(0o644)
				if filepath.Ext(name) == ".key" {
					mode = 0o600
				}
				if err := os.WriteFile(filepath.Join(dir, name), data, mode); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for dir, set := range map[string]map[string][]byte{vectorDir: files, "../testdata/keys": keys} {
		for name, want := range set {
			got, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatalf("%v (run go generate ./attest)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s/%s is stale: the generator now writes other bytes (run go generate ./attest)", dir, name)
			}
		}
	}
	for _, v := range vs {
		t.Run(v.Name, func(t *testing.T) { checkVector(t, v, files[v.File], keys) })
	}
}

func checkVector(t *testing.T, v Vector, data []byte, keys map[string][]byte) {
	o := VerifyOptions{Now: v.At, Strict: v.Strict, AllowHostMeasured: v.AllowHostMeasured, RequireHardware: v.RequireHardware, VM: v.VM}
	if v.MaxEvidenceAge != "" {
		d, err := time.ParseDuration(v.MaxEvidenceAge)
		if err != nil {
			t.Fatal(err)
		}
		o.MaxEvidenceAge = d
	}
	for _, name := range v.Trust {
		k, err := ParsePublicKeyPEM(keys[name])
		if err != nil {
			t.Fatal(err)
		}
		o.TrustedKeys = append(o.TrustedKeys, k)
	}
	if v.Nonce != "" {
		o.Nonce, _ = hex.DecodeString(v.Nonce)
	}
	for id, h := range v.Expect {
		d, err := ParseDigest(h)
		if err != nil {
			t.Fatal(err)
		}
		o.Expected = append(o.Expected, Expectation{RegionID: id, Roots: []Digest{d}})
	}
	res, err := Verify(data, o)
	if got := classOf(err); got != v.Class {
		t.Fatalf("Verify(%s) = %v (class %q), want class %q", v.File, err, got, v.Class)
	}
	if (err == nil) != res.Valid {
		t.Errorf("Verify(%s): error %v but Valid = %v", v.File, err, res.Valid)
	}
	var drifted []string
	for _, d := range res.Drift {
		drifted = append(drifted, d.RegionID)
	}
	if fmt.Sprint(drifted) != fmt.Sprint(v.Drift) {
		t.Errorf("Verify(%s) drift = %v, want %v", v.File, drifted, v.Drift)
	}
	if err != nil && res.Report != nil && classOf(err) == "trust" {
		t.Errorf("Verify(%s) returned report data after a trust failure", v.File)
	}
}
