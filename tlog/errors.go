package tlog

import (
	"fmt"

	"hvmon.dev/hvmon/attest"
)

// classError is a sentinel that belongs to a parent class, so that
// errors.Is(ErrNotIncluded, attest.ErrTrust) holds and a command maps a
// log failure to the exit code of its class without knowing this package.
type classError struct {
	msg    string
	parent error
}

func (e *classError) Error() string { return e.msg }
func (e *classError) Unwrap() error { return e.parent }

// The error sentinels. Each belongs to one of hvmon's error classes
// (attest/errors.go): bytes that are not a well-formed log object match
// attest.ErrMalformed; a proof, signature or quorum that fails matches
// attest.ErrTrust. ErrPolicy is neither: it is about the caller's own
// configuration. Match them with errors.Is only.
var (
	// ErrMalformed: the bytes are not a well-formed log object (checkpoint,
	// signature line, proof file, consistency file, verifier key, private
	// key, tile, entry bundle, path) or break a bound of this package. Use
	// errors.As with *MalformedError for the details. It matches
	// attest.ErrMalformed.
	ErrMalformed = &classError{"malformed transparency log object", attest.ErrMalformed}

	// ErrKeyType: a verifier key or private key is well formed but of a
	// type this use does not accept (a log key must be ML-DSA-44, type
	// 0x06; witnesses may be 0x06 or Ed25519, 0x04). It matches
	// ErrMalformed.
	ErrKeyType = &classError{"unsupported key type", ErrMalformed}

	// ErrLogSignature: the checkpoint carries no signature line by the
	// log key, or that line does not verify (a changed origin, size, root,
	// timestamp or signature byte all end here). It matches attest.ErrTrust.
	ErrLogSignature = &classError{"checkpoint is not signed by the log key", attest.ErrTrust}

	// ErrOrigin: the checkpoint's origin line is not the log key's name,
	// or two checkpoints compared are of different logs. It matches
	// attest.ErrTrust.
	ErrOrigin = &classError{"checkpoint origin is not the log key's name", attest.ErrTrust}

	// ErrWitness: a signature line by a configured witness does not
	// verify. A bad line from a key the policy names fails the checkpoint,
	// as in the signed-note rules; lines of unknown keys are ignored. It
	// matches attest.ErrTrust.
	ErrWitness = &classError{"witness cosignature does not verify", attest.ErrTrust}

	// ErrQuorum: fewer distinct configured witnesses than Policy.Quorum
	// cosigned the checkpoint. It matches attest.ErrTrust.
	ErrQuorum = &classError{"too few witness cosignatures", attest.ErrTrust}

	// ErrTimestamp: a verified cosignature (the log's or a witness's) is
	// dated later than the policy's clock plus its skew. It matches
	// attest.ErrTrust.
	ErrTimestamp = &classError{"cosignature dated in the future", attest.ErrTrust}

	// ErrNotIncluded: the inclusion proof does not lead from the entry to
	// the checkpoint's root (wrong entry, index or path). It matches
	// attest.ErrTrust.
	ErrNotIncluded = &classError{"entry is not included in the checkpoint", attest.ErrTrust}

	// ErrInconsistent: two checkpoints of one log are not consistent: the
	// consistency proof fails, the same size has two roots, or the newer
	// one is smaller (a rollback). It matches attest.ErrTrust.
	ErrInconsistent = &classError{"checkpoints are not consistent", attest.ErrTrust}

	// ErrBadTile: tiles read from a log do not hash to the root of the
	// checkpoint they were read for: the log (or a mirror) serves data
	// that contradicts its own signed checkpoint. It matches
	// attest.ErrTrust.
	ErrBadTile = &classError{"log tiles do not match the checkpoint", attest.ErrTrust}

	// ErrPolicy: the Policy itself is unusable (no log key, a log key that
	// is not ML-DSA-44, a quorum out of range, a witness named twice). A
	// command reports it as a usage error.
	ErrPolicy = &classError{"invalid log policy", nil}
)

// MalformedError describes bytes that are not a well-formed log object.
// It matches ErrMalformed (and so attest.ErrMalformed).
type MalformedError struct {
	What   string // the object being parsed: "checkpoint", "proof", "verifier key", ...
	Reason string // what is wrong with it
	Err    error  // underlying error, if any
}

func (e *MalformedError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("malformed %s: %s: %v", e.What, e.Reason, e.Err)
	}
	return fmt.Sprintf("malformed %s: %s", e.What, e.Reason)
}

// Is reports that every MalformedError matches ErrMalformed.
func (e *MalformedError) Is(target error) bool { return target == ErrMalformed }

// Unwrap returns the underlying error and ErrMalformed's parent class, so
// errors.Is(err, attest.ErrMalformed) holds too.
func (e *MalformedError) Unwrap() []error {
	if e.Err != nil {
		return []error{e.Err, ErrMalformed}
	}
	return []error{ErrMalformed}
}

func malformed(what, reason string, err error) error {
	return &MalformedError{What: what, Reason: reason, Err: err}
}

// failure wraps a sentinel with what was found, keeping errors.Is working.
func failure(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))
}
