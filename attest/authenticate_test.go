package attest

import (
	"errors"
	"testing"
	"time"
)

func TestAuthenticate(t *testing.T) {
	k, other := testKey(t, 1), testKey(t, 2)
	good := mustSign(t, k, testReport(1))
	// A long-expired report still authenticates: the log checks origin,
	// not freshness.
	old := testReport(1)
	old.IssuedAt, old.ExpiresAt = testNow.AddDate(-5, 0, 0), testNow.AddDate(-5, 0, 0).Add(time.Minute)
	expired := mustSign(t, k, old)

	rep, kid, err := Authenticate(good, []*PublicKey{other.PublicKey(), k.PublicKey()})
	if err != nil || kid != k.KeyID() || rep.Workload != "vm-1" {
		t.Fatalf("Authenticate(good) = %v, %s, %v", rep, kid, err)
	}
	if _, _, err := Authenticate(expired, []*PublicKey{k.PublicKey()}); err != nil {
		t.Fatalf("Authenticate(expired) = %v", err)
	}

	flipped := append([]byte(nil), good...)
	flipped[len(flipped)-10] ^= 1
	guest, err := sign1(k, typeGuestEvidence, []byte{0xa0}, &SignOptions{Deterministic: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		signed  []byte
		trusted []*PublicKey
		want    error
	}{
		{"untrusted signer", good, []*PublicKey{other.PublicKey()}, ErrUntrustedKey},
		{"no trusted key", good, nil, ErrUntrustedKey},
		{"signature byte flipped", flipped, []*PublicKey{k.PublicKey()}, ErrSignature},
		{"trailing byte", append(append([]byte(nil), good...), 0), []*PublicKey{k.PublicKey()}, ErrMalformed},
		{"empty", nil, []*PublicKey{k.PublicKey()}, ErrMalformed},
		{"guest evidence content type", guest, []*PublicKey{k.PublicKey()}, ErrMalformed},
		{"signed garbage payload", signRaw(t, k, []byte{0x01}), []*PublicKey{k.PublicKey()}, ErrMalformed},
	} {
		if _, _, err := Authenticate(tc.signed, tc.trusted); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, _, err := Authenticate(flipped, []*PublicKey{k.PublicKey()}); !errors.Is(err, ErrTrust) {
		t.Errorf("a bad signature must be a trust failure, got %v", err)
	}
}
