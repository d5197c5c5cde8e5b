package attest

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// addSeeds adds every file matching glob (transformed by each) to the
// corpus and fails when the glob finds nothing: a fuzz target without
// seeds would silently fuzz from scratch.
func addSeeds(f *testing.F, glob string, each func([]byte) [][]byte) {
	f.Helper()
	paths, err := filepath.Glob(glob)
	if err != nil {
		f.Fatal(err)
	}
	if len(paths) == 0 {
		f.Fatalf("no fuzz seeds match %s", glob)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		for _, s := range each(b) {
			f.Add(s)
		}
	}
}

func whole(b []byte) [][]byte { return [][]byte{b} }

// payloads returns the payloads of a signed object and of its guest
// evidence, when they parse.
func payloads(b []byte) [][]byte {
	env, err := openEnvelope("seed", b)
	if err != nil {
		return nil
	}
	out := [][]byte{env.payload()}
	if r, err := decodeReport(env.payload()); err == nil && len(r.Guest) > 0 {
		if genv, err := openEnvelope("seed", r.Guest); err == nil {
			out = append(out, genv.payload())
		}
	}
	return out
}

// unknownAgentPayload is the payload of a host report whose agent status
// is none of the six, signed as is by key k: a seed next to the vectors,
// which carry only valid statuses.
func unknownAgentPayload(f *testing.F, k *PrivateKey) []byte {
	r := agentReport("rebooting")
	r.Attester.KeyID = k.KeyID()
	return mustEncode(f, r.toWire())
}

func FuzzVerify(f *testing.F) {
	addSeeds(f, filepath.Join(vectorDir, "*.cose"), whole)
	host, other, guest := vectorHostKey(f), vectorOtherKey(f), vectorGuestKey(f)
	f.Add(signRaw(f, host, unknownAgentPayload(f, host)))
	o := opts(host, other, guest)
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := Verify(data, o)
		if err == nil {
			if !res.Valid || res.Report == nil {
				t.Fatalf("Verify: nil error but Valid=%v", res.Valid)
			}
			// Whatever verifies is in the one canonical encoding.
			in, err := Inspect(data)
			if err != nil {
				t.Fatalf("Verify accepted what Inspect rejects: %v", err)
			}
			if in.Report.Seq != res.Report.Seq || in.KeyID != res.KeyID {
				t.Fatalf("Inspect and Verify disagree")
			}
			return
		}
		if classOf(err) == "other" {
			t.Fatalf("Verify error %v has no class", err)
		}
		if res.Report != nil && (errors.Is(err, ErrTrust) || errors.Is(err, ErrMalformed)) {
			t.Fatalf("Verify returned report data with %v", err)
		}
	})
}

func FuzzInspect(f *testing.F) {
	addSeeds(f, filepath.Join(vectorDir, "*.cose"), whole)
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := Inspect(data); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("Inspect error %v is not ErrMalformed", err)
		}
	})
}

func FuzzDecodeReport(f *testing.F) {
	addSeeds(f, filepath.Join(vectorDir, "*.cose"), payloads)
	f.Add(unknownAgentPayload(f, vectorHostKey(f)))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeReport(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("decodeReport error %v is not ErrMalformed", err)
			}
			return
		}
		again, err := encMode.Marshal(r.toWire())
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("decoded report does not re-encode to its input (%v)", err)
		}
	})
}

func FuzzDecodeGuestEvidence(f *testing.F) {
	addSeeds(f, filepath.Join(vectorDir, "*.cose"), payloads)
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := decodeGuestEvidence(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("decodeGuestEvidence error %v is not ErrMalformed", err)
			}
			return
		}
		again, err := encMode.Marshal(g.toWire())
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("decoded guest evidence does not re-encode to its input (%v)", err)
		}
	})
}

func FuzzParsePublicKeyPEM(f *testing.F) {
	addSeeds(f, "../testdata/keys/*.pub", whole)
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParsePublicKeyPEM(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParsePublicKeyPEM error %v is not ErrMalformed", err)
			}
			return
		}
		again, err := ParsePublicKeyPEM(mustPEM(t, k))
		if err != nil || !again.Equal(k) {
			t.Fatalf("public key does not survive a round trip: %v", err)
		}
	})
}

func FuzzParsePrivateKeyPEM(f *testing.F) {
	addSeeds(f, "../testdata/keys/*.key", whole)
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParsePrivateKeyPEM(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParsePrivateKeyPEM error %v is not ErrMalformed", err)
			}
			return
		}
		b, err := MarshalPrivateKeyPEM(k)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParsePrivateKeyPEM(b)
		if err != nil || !again.PublicKey().Equal(k.PublicKey()) {
			t.Fatalf("private key does not survive a round trip: %v", err)
		}
	})
}
