package attest

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// Fixed inputs shared by the tests, the examples and the vectors.
var (
	testNow   = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	testNonce = bytes.Repeat([]byte{0x4e}, 32)
)

// testKey derives a key from a one-byte seed pattern.
func testKey(t testing.TB, b byte) *PrivateKey {
	t.Helper()
	k, err := NewKeyFromSeed(bytes.Repeat([]byte{b}, SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testClaim(id string, content []byte, workload string, p Platform) Claim {
	return Claim{
		Region:   Region{ID: id, Size: uint64(len(content)), Protection: "RO", Source: "test:" + id},
		Snapshot: Snapshot{RegionID: id, Root: measureBytes(content), Size: uint64(len(content)), TakenAt: testNow, PageSize: pageSize},
		Workload: workload, Platform: p,
	}
}

// testReport returns a valid report with n regions named w0..w(n-1) whose
// content is 8 KiB + i bytes of the byte i.
func testReport(n int) *Report {
	r := &Report{
		IssuedAt: testNow, ExpiresAt: testNow.Add(5 * time.Minute), Nonce: testNonce,
		Event: EventOnDemand, Workload: "vm-1", Platform: "file", Attester: Identity{Name: "test"},
	}
	for i := range n {
		r.Claims = append(r.Claims, testClaim(fmt.Sprintf("w%d", i), regionContent(i), "vm-1", "file"))
	}
	return r
}

func regionContent(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 8192+i) }

func mustSign(t testing.TB, k *PrivateKey, r *Report) []byte {
	t.Helper()
	b, err := Sign(k, r, &SignOptions{Deterministic: true})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signRaw signs an arbitrary payload under hvmon's report header: the
// attacker-controlled-payload case that only a key holder can produce.
func signRaw(t testing.TB, k *PrivateKey, payload []byte) []byte {
	t.Helper()
	b, err := sign1(k, typeReport, payload, &SignOptions{Deterministic: true})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func opts(keys ...*PrivateKey) VerifyOptions {
	o := VerifyOptions{Now: testNow.Add(time.Minute)}
	for _, k := range keys {
		o.TrustedKeys = append(o.TrustedKeys, k.PublicKey())
	}
	return o
}

func mustEncode(t testing.TB, v any) []byte {
	t.Helper()
	b, err := encMode.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
