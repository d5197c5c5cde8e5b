package main

import (
	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/host"
)

// evidenceVerifier builds the hardware evidence verifier the daemon checks
// guest evidence with. Without one, guest evidence that carries hardware
// evidence is recorded as bad evidence.
func evidenceVerifier(c *host.Evidence) (attest.EvidenceVerifier, error) {
	return nil, nil
}
