package attest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/backend"
	"hvmon.dev/hvmon/measure"
)

// fixedClock returns a clock stopped at a fixed instant, so the examples'
// output does not depend on when they run.
func fixedClock() func() time.Time {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	return func() time.Time { return t0 }
}

func exampleKey() *attest.PrivateKey {
	k, err := attest.NewKeyFromSeed(bytes.Repeat([]byte{0x42}, attest.SeedSize))
	if err != nil {
		panic(err)
	}
	return k
}

// The basic flow: an attester signs a report over two in-memory
// regions and a verifier who pins the attester's key and knows the
// expected roots checks it.
func Example_basicAttestation() {
	key := exampleKey()
	mem := backend.NewMemory()
	mem.Now = fixedClock()
	weights := bytes.Repeat([]byte{0xaa}, 128)
	kv := bytes.Repeat([]byte{0x00}, 4096)
	mem.Register("model-serving-1", attest.Region{ID: "model-weights-0", Description: "weight shard 0", Protection: "RO"}, weights)
	mem.Register("model-serving-1", attest.Region{ID: "kv-cache", Protection: "RW"}, kv)

	a := &attest.Attester{Signer: key, Name: "llama-host", Now: fixedClock()}
	s, err := a.Attest(context.Background(), mem, attest.Request{Workload: "model-serving-1", Event: attest.EventOnDemand})
	if err != nil {
		panic(err)
	}

	res, err := attest.Verify(s.Bytes, attest.VerifyOptions{
		TrustedKeys: []*attest.PublicKey{key.PublicKey()},
		Now:         fixedClock()(),
		Strict:      true,
		Expected: []attest.Expectation{
			{RegionID: "model-weights-0", Roots: []attest.Digest{measure.Bytes(weights)}},
			{RegionID: "kv-cache", Roots: []attest.Digest{measure.Bytes(kv)}},
		},
	})
	fmt.Println("valid:", res.Valid, err)
	for _, c := range res.Report.Claims {
		fmt.Println(c.Region.ID, c.Snapshot.Size)
	}
	// Output:
	// valid: true <nil>
	// model-weights-0 128
	// kv-cache 4096
}

// Tampering: a region changes between two attestations
// and the verifier's reference value exposes it.
func Example_detectMemoryTampering() {
	key := exampleKey()
	mem := backend.NewMemory()
	mem.Now = fixedClock()
	weights := bytes.Repeat([]byte{0xaa}, 3*measure.PageSize)
	mem.Register("vm-1", attest.Region{ID: "w0"}, weights)
	a := &attest.Attester{Signer: key, Now: fixedClock()}
	opts := attest.VerifyOptions{
		TrustedKeys: []*attest.PublicKey{key.PublicKey()},
		Now:         fixedClock()(),
		Strict:      true,
		Expected:    []attest.Expectation{{RegionID: "w0", Roots: []attest.Digest{measure.Bytes(weights)}}},
	}

	before, _ := a.Attest(context.Background(), mem, attest.Request{Workload: "vm-1", Event: attest.EventPeriodic})
	_, err := attest.Verify(before.Bytes, opts)
	fmt.Println("before:", err)

	mem.Write("vm-1", "w0", measure.PageSize+17, []byte{0x66}) // the host rewrites one byte
	after, _ := a.Attest(context.Background(), mem, attest.Request{Workload: "vm-1", Event: attest.EventPeriodic})
	_, err = attest.Verify(after.Bytes, opts)
	var drift *attest.RegionDriftError
	fmt.Println("after:", errors.As(err, &drift), drift.Regions[0].RegionID)
	// Output:
	// before: <nil>
	// after: true w0
}

// The continuous loop: a ContinuousAttester signs a chained report
// at every tick until its context ends.
func Example_continuousLoop() {
	key := exampleKey()
	mem := backend.NewMemory()
	mem.Now = fixedClock()
	mem.Register("vm-1", attest.Region{ID: "w0"}, []byte("weights"))
	ctx, cancel := context.WithCancel(context.Background())
	var prev *attest.Digest
	loop := &attest.ContinuousAttester{
		Attester: &attest.Attester{Signer: key, Now: fixedClock()},
		Backend:  mem,
		Workload: "vm-1",
		Interval: time.Millisecond,
		OnReport: func(s *attest.Signed) error {
			linked := s.Report.Prev != nil && prev != nil && *s.Report.Prev == *prev
			fmt.Println("seq", s.Report.Seq, s.Report.Event, "linked:", linked)
			h := s.Hash
			prev = &h
			if s.Report.Seq == 2 {
				cancel()
			}
			return nil
		},
	}
	fmt.Println("run:", loop.Run(ctx))
	// Output:
	// seq 0 periodic linked: false
	// seq 1 periodic linked: true
	// seq 2 periodic linked: true
	// run: <nil>
}

func ExampleNewKeyFromSeed() {
	k, _ := attest.NewKeyFromSeed(bytes.Repeat([]byte{0x42}, attest.SeedSize))
	fmt.Println(len(k.PublicKey().Bytes()), k.KeyID() == attest.KeyIDOf(k.PublicKey().Bytes()))
	// Output: 1952 true
}

func ExampleParsePublicKeyPEM() {
	pemBytes, _ := attest.MarshalPublicKeyPEM(exampleKey().PublicKey())
	k, err := attest.ParsePublicKeyPEM(pemBytes)
	fmt.Println(k.KeyID() == exampleKey().KeyID(), err)
	_, err = attest.ParsePublicKeyPEM([]byte("not a key"))
	fmt.Println(errors.Is(err, attest.ErrMalformed))
	// Output:
	// true <nil>
	// true
}

func ExampleSign() {
	key := exampleKey()
	now := fixedClock()()
	content := []byte("weights")
	r := &attest.Report{
		IssuedAt: now, ExpiresAt: now.Add(5 * time.Minute), Nonce: bytes.Repeat([]byte{1}, 32),
		Event: attest.EventBoot, Workload: "vm-1", Platform: "memory",
		Claims: []attest.Claim{{
			Region:   attest.Region{ID: "w0", Size: uint64(len(content))},
			Snapshot: attest.Snapshot{RegionID: "w0", Root: measure.Bytes(content), Size: uint64(len(content)), TakenAt: now, PageSize: measure.PageSize},
			Workload: "vm-1", Platform: "memory",
		}},
	}
	signed, err := attest.Sign(key, r, &attest.SignOptions{Deterministic: true})
	fmt.Printf("%x %v\n", signed[:1], err) // 0xd2: CBOR tag 18, COSE_Sign1
	// Output: d2 <nil>
}

func ExampleVerify() {
	key, stranger := exampleKey(), func() *attest.PrivateKey { k, _ := attest.NewKeyFromSeed(make([]byte, 32)); return k }()
	mem := backend.NewMemory()
	mem.Now = fixedClock()
	mem.Register("vm-1", attest.Region{ID: "w0"}, []byte("weights"))
	a := &attest.Attester{Signer: stranger, Now: fixedClock()}
	s, _ := a.Attest(context.Background(), mem, attest.Request{Workload: "vm-1", Event: attest.EventOnDemand})
	res, err := attest.Verify(s.Bytes, attest.VerifyOptions{TrustedKeys: []*attest.PublicKey{key.PublicKey()}, Now: fixedClock()()})
	fmt.Println(errors.Is(err, attest.ErrUntrustedKey), res.Report == nil)
	// Output: true true
}

func ExampleInspect() {
	mem := backend.NewMemory()
	mem.Now = fixedClock()
	mem.Register("vm-1", attest.Region{ID: "w0"}, []byte("weights"))
	a := &attest.Attester{Signer: exampleKey(), Now: fixedClock()}
	s, _ := a.Attest(context.Background(), mem, attest.Request{Workload: "vm-1", Event: attest.EventSnapshot, Seq: 3})
	in, err := attest.Inspect(s.Bytes)
	fmt.Println(in.Report.Event, in.Report.Seq, in.Report.Claims[0].Region.ID, err)
	// Output: snapshot 3 w0 <nil>
}

func ExampleGuestReportData() {
	g := &attest.GuestEvidence{
		IssuedAt: fixedClock()(), Nonce: bytes.Repeat([]byte{1}, 32), Event: attest.EventBoot, VM: "vm-1",
		Platform: "none", GuestKey: exampleKey().PublicKey().Bytes(),
	}
	rd, err := attest.GuestReportData(g)
	fmt.Println(len(rd), err)
	// Output: 64 <nil>
}
