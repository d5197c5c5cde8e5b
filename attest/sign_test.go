package attest

import (
	"bytes"
	"errors"
	"testing"
)

// TestSignRefusesOversize: Sign never returns bytes that Verify refuses for
// size. A report whose finished COSE_Sign1 is exactly MaxReportSize bytes
// is signed and decodes; one byte more is refused with ErrTooLarge (also
// ErrMalformed), before anything is signed.
func TestSignRefusesOversize(t *testing.T) {
	k := testKey(t, 1)
	r := testReport(1)
	r.Guest = bytes.Repeat([]byte{0xaa}, 1<<19) // opaque to Sign: only its size matters here
	b := mustSign(t, k, r)
	// The guest bstr and the payload keep 5-byte heads from here to the
	// bound, so each byte added to the guest adds one byte to the object.
	r.Guest = bytes.Repeat([]byte{0xaa}, len(r.Guest)+MaxReportSize-len(b))
	b = mustSign(t, k, r)
	if len(b) != MaxReportSize {
		t.Fatalf("signed %d bytes, want exactly %d", len(b), MaxReportSize)
	}
	e, err := openEnvelope("report", b)
	if err != nil {
		t.Fatalf("a report of exactly the bound does not parse: %v", err)
	}
	if _, err := decodeReport(e.payload()); err != nil {
		t.Fatalf("a report of exactly the bound does not decode: %v", err)
	}
	r.Guest = append(r.Guest, 0xaa)
	_, err = Sign(k, r, nil)
	if !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrMalformed) {
		t.Fatalf("Sign(one byte over) = %v, want ErrTooLarge and ErrMalformed", err)
	}
	var me *MalformedError
	if !errors.As(err, &me) || me.What != "report" {
		t.Fatalf("Sign(one byte over) = %#v, want a *MalformedError about the report", err)
	}
}

// TestSignGuestEvidenceRefusesOversize: the same bound for the agent's
// object, which the host must be able to embed.
func TestSignGuestEvidenceRefusesOversize(t *testing.T) {
	k := testKey(t, 3)
	g := &GuestEvidence{IssuedAt: testNow, Nonce: testNonce, Event: EventBoot, VM: "vm-1", Platform: "sev-snp",
		GuestKey: k.PublicKey().Bytes(), Hardware: &HardwareEvidence{Type: "sev-snp", Report: bytes.Repeat([]byte{1}, MaxReportSize)}}
	if _, err := SignGuestEvidence(k, g, nil); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("SignGuestEvidence(oversize) = %v, want ErrTooLarge", err)
	}
}
