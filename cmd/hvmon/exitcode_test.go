package main

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"hvmon.dev/hvmon/attest"
)

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, exitOK},

		{attest.ErrMalformed, exitMalformed},
		{&attest.MalformedError{What: "report", Reason: "truncated"}, exitMalformed},

		{attest.ErrTrust, exitTrust},
		{attest.ErrSignature, exitTrust},
		{attest.ErrUntrustedKey, exitTrust},
		{attest.ErrAlgorithm, exitTrust},
		{attest.ErrBinding, exitTrust},

		{attest.ErrFreshness, exitFreshness},
		{attest.ErrExpired, exitFreshness},
		{attest.ErrNotYetValid, exitFreshness},
		{attest.ErrLifetime, exitFreshness},
		{attest.ErrNonce, exitFreshness},
		{attest.ErrStaleEvidence, exitFreshness},

		{attest.ErrAppraisal, exitAppraisal},
		{attest.ErrRegionDrift, exitAppraisal},
		{&attest.RegionDriftError{Regions: []attest.RegionDrift{{RegionID: "a"}}}, exitAppraisal},
		{attest.ErrIncomplete, exitAppraisal},
		{attest.ErrWrongVM, exitAppraisal},
		{attest.ErrNoHardware, exitAppraisal},

		// Everything else is a usage, configuration or I/O error.
		{errors.New("anything"), exitUsage},
		{fs.ErrNotExist, exitUsage},
		{attest.ErrVerification, exitUsage},
		{attest.ErrInvalidRegion, exitUsage},
		{&attest.InvalidVMNameError{Name: "a b"}, exitUsage},
		{&attest.BackendError{Backend: "file", Op: "snapshot", Err: fs.ErrNotExist}, exitUsage},
		{&attest.InvalidRegionError{ID: "x", Reason: "bad"}, exitUsage},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
		// Wrapping keeps the class.
		if tc.err != nil {
			wrapped := fmt.Errorf("report.cose: %w", tc.err)
			if got := exitCode(wrapped); got != tc.want {
				t.Errorf("exitCode(%v) = %d, want %d", wrapped, got, tc.want)
			}
			// A configError is about the command's own inputs: exit 1
			// whatever it wraps (a malformed --trust key is not a
			// malformed report).
			if got := exitCode(configErr(wrapped)); got != exitUsage {
				t.Errorf("exitCode(configErr(%v)) = %d, want %d", wrapped, got, exitUsage)
			}
		}
	}
	if configErr(nil) != nil {
		t.Error("configErr(nil) != nil")
	}
}

// Every exit code is documented in the help text.
func TestExitCodeHelp(t *testing.T) {
	for code := exitOK; code <= exitAppraisal; code++ {
		if !strings.Contains(exitCodeHelp, fmt.Sprintf("\n  %d  ", code)) {
			t.Errorf("exitCodeHelp does not document exit code %d", code)
		}
	}
}
