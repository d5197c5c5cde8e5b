package evidence

import (
	"fmt"
	"strings"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/evidence/sim"
	"hvmon.dev/hvmon/tee"
)

// kinds maps every hardware evidence type to the kind of TEE hardware that
// makes it, a simulated type to the kind it simulates. It is the one table
// of evidence types: the verifier, Inspect, PolicyHardware, New and Probe
// look a type up here, and a TEE type hvmon does not know is one entry and
// one file implementing kind (docs/ARCHITECTURE.md, "A new TEE type").
var kinds = map[attest.Platform]kind{
	attest.PlatformSEVSNP:          snpKind{},
	attest.PlatformSimulatedSEVSNP: snpKind{},
	attest.PlatformTDX:             tdxKind{},
	attest.PlatformSimulatedTDX:    tdxKind{},
}

// A kind is one kind of TEE hardware: how its evidence is recognized and
// parsed, and how a guest obtains it. snp.go and tdx.go implement it.
type kind interface {
	// String names the kind for people: "SEV-SNP", "TDX".
	String() string
	// recognize names b ("a TDX quote") when it has the shape of this
	// kind's report or quote, and returns "" otherwise: evidence of one
	// kind labelled as another fails as ErrTypeMismatch, not as merely
	// malformed.
	recognize(b []byte) string
	// parse decodes evidence of this kind with its strict rules (the
	// shape of each type is in the package doc) and verifies nothing.
	// Errors match ErrMalformed.
	parse(hw *attest.HardwareEvidence) (parsedEvidence, error)

	// guest names the interfaces a Linux guest reaches the hardware by:
	// the configfs-tsm report provider ("sev_guest") and the device node
	// ("/dev/sev-guest").
	guest() (tsmProvider, device string)
	// quote asks the guest's driver, through the vendor library, for
	// evidence carrying reportData, as the driver returns it.
	quote(reportData [64]byte) ([]byte, error)
	// provider returns the provider of real evidence of this kind on g;
	// it fails with ErrNoHardware when g has no such TEE.
	provider(g guestOS, opts ProviderOptions) (Provider, error)
	// simulated returns the provider of the simulated type of this kind.
	simulated(opts sim.Options) (SimulatedProvider, error)
}

// parsedEvidence is evidence of one kind, parsed but not verified.
type parsedEvidence interface {
	// verify checks the signature and certificate chain against the
	// roots v pins for this kind (the simulated roots when simulated) at
	// now, then the platform rules and, unless rd is nil, REPORT_DATA.
	// It names the trust anchor the chain verified to: on success, and
	// with an ErrReportData or ErrPolicy error, which leave the evidence
	// genuine (see genuine).
	verify(v *Verifier, simulated bool, rd *[64]byte, now time.Time) (root string, err error)
	// summary is what the evidence says, for people; Type and Root are
	// the caller's to set.
	summary() *Summary
	// facts are the fields policy rules check; Type and Simulated are
	// the caller's to set.
	facts() *tee.Facts
}

// kindOf returns the kind of an evidence type, or an ErrUnknownType error.
func kindOf(t attest.Platform) (kind, error) {
	if k, ok := kinds[t]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownType, t)
}

// parse looks up hw's kind and parses hw as evidence of it, after making
// sure the bytes are not evidence of another kind.
func parse(hw *attest.HardwareEvidence) (parsedEvidence, error) {
	if hw == nil {
		return nil, fmt.Errorf("%w: no hardware evidence", ErrMalformed)
	}
	k, err := kindOf(hw.Type)
	if err != nil {
		return nil, err
	}
	if err := notOtherKind(k, hw.Type, hw.Report); err != nil {
		return nil, err
	}
	return k.parse(hw)
}

// notOtherKind fails with ErrTypeMismatch when b, stated to be evidence of
// type t (of kind k), has the shape of another kind's evidence.
func notOtherKind(k kind, t attest.Platform, b []byte) error {
	for _, p := range attest.HardwarePlatforms() {
		if o := kinds[p]; o != k {
			if what := o.recognize(b); what != "" {
				return fmt.Errorf("%w: %s evidence holds %s", ErrTypeMismatch, t, what)
			}
		}
	}
	return nil
}

// realKinds returns the kinds of real hardware, in the order of
// attest.HardwarePlatforms: the order Probe tries them in.
func realKinds() []kind {
	var out []kind
	for _, p := range attest.HardwarePlatforms() {
		if !p.Simulated() {
			out = append(out, kinds[p])
		}
	}
	return out
}

// realType returns the evidence type of the real hardware of kind k.
func realType(k kind) attest.Platform {
	for _, p := range attest.HardwarePlatforms() {
		if !p.Simulated() && kinds[p] == k {
			return p
		}
	}
	return ""
}

// orList joins items as "a, b or c".
func orList(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}
