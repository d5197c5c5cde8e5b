//go:build integration

package integration

import (
	"testing"

	"hvmon.dev/hvmon/attest"
)

// evidenceType is the hardware evidence the test guest's agent produces.
const evidenceType = "none"

// evidenceVerifier returns the verifier for evidenceType's evidence.
func evidenceVerifier(t *testing.T) attest.EvidenceVerifier { return nil }
