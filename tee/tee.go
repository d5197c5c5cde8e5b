// Package tee is what hvmon says about TEE hardware evidence without the
// AMD and Intel libraries: the trust configuration a hardware evidence
// verifier is built from (Trust), and the decoded fields of verified
// evidence that a policy appraises (Facts).
//
// Package evidence builds its Verifier from a Trust and decodes evidence
// into Facts; package policy fills a Trust from a policy's hardware_roots
// block and checks Facts against its rules. Neither imports the other: the
// TEE libraries, which import the network, stay out of policy, and policy
// with its HCL parser stays out of the in-guest agent, which links
// evidence for its providers.
package tee

import (
	"encoding/hex"
	"errors"
)

// Trust is what a hardware evidence verifier trusts: the roots it pins, and
// whether it accepts simulated evidence and debug guests. The verify
// commands' flags (--amd-roots, --allow-simulated, ...), the daemon's
// evidence block and a policy's hardware_roots block each fill one, reading
// the files they name their own way; evidence.TrustOptions turns it into the
// options of the one verifier. The zero value trusts the AMD and Intel roots
// built into hvmon and nothing simulated, and refuses debug guests.
type Trust struct {
	// AMDRoots replace the AMD roots built into hvmon: for each product
	// line the ARK and the ASK and/or ASVK it signed, as in AMD's
	// certificate chain files. Nil keeps the built-in roots.
	AMDRoots []File
	// IntelRoots replace the Intel SGX Root CA built into hvmon, the root
	// of TDX PCK chains. Nil keeps the built-in root.
	IntelRoots []File

	// AllowSimulated accepts evidence of the simulated platforms, verified
	// against SimulatedRoots and the roots derived from SimulatedSeed and
	// nothing else. Real evidence never verifies against them.
	AllowSimulated bool
	// SimulatedRoots are files of simulated roots (package evidence/sim).
	SimulatedRoots []File
	// SimulatedSeed is the seed simulated agents derive their chains from
	// (at least MinSimulatedSeed bytes); the verifier derives the same
	// roots.
	SimulatedSeed []byte

	// AllowDebugUnsafe accepts evidence from debug guests, whose memory the
	// host can read and write.
	AllowDebugUnsafe bool
}

// File is a certificate file a configuration names: the name it was given
// by (for messages) and its content, PEM or DER.
type File struct {
	Name string
	Data []byte
}

// MinSimulatedSeed is the least number of bytes of a simulated seed.
const MinSimulatedSeed = 16

// The errors of Check and ParseSimulatedSeed. Their text names no setting:
// each configuration says which of its settings is wrong.
var (
	// ErrSimulatedNotAllowed: simulated roots or a seed without
	// AllowSimulated.
	ErrSimulatedNotAllowed = errors.New("simulated roots given without allowing simulated evidence")
	// ErrNoSimulatedRoots: AllowSimulated without simulated roots or seed.
	ErrNoSimulatedRoots = errors.New("simulated evidence allowed but no simulated roots or seed given")
	// ErrSimulatedSeed: a seed that is not hex or shorter than
	// MinSimulatedSeed bytes.
	ErrSimulatedSeed = errors.New("want at least 16 bytes of hex")
	// ErrEmptyRoots: a list of roots that is empty rather than absent.
	ErrEmptyRoots = errors.New("empty list of roots (leave it out for the built-in roots)")
)

// ParseSimulatedSeed parses a simulated seed written in hex, as the
// configurations write it.
func ParseSimulatedSeed(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) < MinSimulatedSeed {
		return nil, ErrSimulatedSeed
	}
	return b, nil
}

// Check enforces the rules every configuration shares: simulated roots (or
// a seed) if and only if simulated evidence is allowed, a seed of at least
// MinSimulatedSeed bytes, and root lists that are absent or not empty.
func (t Trust) Check() error {
	hasSim := len(t.SimulatedRoots) > 0 || t.SimulatedSeed != nil
	switch {
	case t.AMDRoots != nil && len(t.AMDRoots) == 0, t.IntelRoots != nil && len(t.IntelRoots) == 0:
		return ErrEmptyRoots
	case t.SimulatedSeed != nil && len(t.SimulatedSeed) < MinSimulatedSeed:
		return ErrSimulatedSeed
	case hasSim && !t.AllowSimulated:
		return ErrSimulatedNotAllowed
	case t.AllowSimulated && !hasSim:
		return ErrNoSimulatedRoots
	}
	return nil
}
