package main

import (
	"errors"

	"hvmon.dev/hvmon/attest"
)

// Exit codes. Each verification failure class of package attest has its
// own, so scripts can branch on the kind of failure without parsing text.
const (
	exitOK        = 0 // success; for verify, the report is valid
	exitUsage     = 1 // usage, configuration or I/O error; nothing was decided about a report
	exitMalformed = 2 // the report is not a well-formed hvmon report
	exitTrust     = 3 // bad signature, untrusted key, or guest evidence not bound
	exitFreshness = 4 // expired, not yet valid, lifetime too long, stale guest evidence, or nonce mismatch
	exitAppraisal = 5 // drift in strict mode, an expected region missing or unbacked, another VM, no hardware evidence when required
)

// exitCodeHelp documents the exit codes in help texts.
const exitCodeHelp = `Exit codes:
  0  success (verify: the report is valid, possibly with drift outside --strict)
  1  usage, configuration or I/O error, including a missing, unreadable or
     malformed key file; nothing was decided about the report
  2  malformed report: not a well-formed hvmon report (bad CBOR or COSE,
     non-canonical encoding, truncated, trailing data, too large)
  3  signature or trust failure: the signature does not verify, the signing
     key is not among --trust, or guest evidence is not bound to the report;
     with --require-log, the report's log proof is missing, malformed or
     does not verify
  4  freshness failure: expired, not yet valid, lifetime above
     --max-lifetime, guest evidence older than --max-evidence-age before
     its report, or the report answers another --nonce
  5  appraisal failure: a region drifted from --expect in --strict mode,
     an --expect region is missing from the report or only the host
     vouches for it, the report is about another VM than --vm, it has no
     hardware evidence with --require-hardware, or --policy gives a
     contraindicated verdict (warnings exit 0)`

// configError marks an error about the command's own inputs (flags, key
// files, output files). It exits with exitUsage even when it wraps an error
// of package attest: a malformed --trust key says nothing about the report.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// configErr wraps err as a configError; nil stays nil.
func configErr(err error) error {
	if err == nil {
		return nil
	}
	return &configError{err}
}

// exitCode maps an error to the process exit code. It uses errors.Is and
// errors.As only: messages are for people.
func exitCode(err error) int {
	var (
		ce *configError
		le *logError
	)
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ce):
		return exitUsage
	case errors.As(err, &le):
		// --require-log: a proof that is missing, malformed or fails
		// leaves the report unshown to be logged, a trust failure.
		return exitTrust
	case errors.Is(err, attest.ErrMalformed):
		return exitMalformed
	case errors.Is(err, attest.ErrTrust):
		return exitTrust
	case errors.Is(err, attest.ErrFreshness):
		return exitFreshness
	case errors.Is(err, attest.ErrAppraisal):
		return exitAppraisal
	default:
		return exitUsage
	}
}
