package attest

import (
	"errors"
	"strings"
	"testing"
)

// unknownAgentStatuses are agent statuses docs/FORMAT.md §7.5 does not
// allow: near misses of the six, and text a host could pass along.
var unknownAgentStatuses = []AgentStatus{
	"rebooting", "OK", "ok ", " ok", "bad_evidence", "Timeout", "none\x00", "\u0435rror", // a Cyrillic ie for the e
	AgentStatus(strings.Repeat("x", maxTextLen+1)),
}

// agentReport is a host report of vm-1 whose observations carry status s.
func agentReport(s AgentStatus) *Report {
	r := hostReport("vm-1", "", nil)
	r.Claims = []Claim{testClaim("w0", []byte("w"), "vm-1", PlatformHost)}
	r.Host.Agent = s
	return r
}

// TestAgentStatus: the six statuses of docs/FORMAT.md §7.5 sign, verify
// and come back as they were signed; Events and the statuses are fixed
// lists.
func TestAgentStatus(t *testing.T) {
	k := testKey(t, 1)
	valid := []AgentStatus{AgentOK, AgentUnavailable, AgentTimeout, AgentError, AgentBadEvidence, AgentNone}
	for _, s := range valid {
		if !s.Valid() {
			t.Errorf("AgentStatus(%q).Valid() = false", s)
		}
		res, err := Verify(mustSign(t, k, agentReport(s)), opts(k))
		if err != nil {
			t.Errorf("report with agent status %q: Verify = %v", s, err)
			continue
		}
		if got := res.Report.Host.Agent; got != s {
			t.Errorf("report with agent status %q: verified status %q", s, got)
		}
	}
	if n := len(agentStatuses); n != len(valid) {
		t.Errorf("%d agent statuses are valid, docs/FORMAT.md §7.5 allows %d", n, len(valid))
	}
	for _, s := range unknownAgentStatuses {
		if s.Valid() {
			t.Errorf("AgentStatus(%q).Valid() = true", s)
		}
	}
}

// TestUnknownAgentStatusRejected: a report whose agent status is none of
// the six fails as malformed, even when a pinned key signed it (a buggy or
// hostile host); Sign refuses to make one.
func TestUnknownAgentStatusRejected(t *testing.T) {
	k := testKey(t, 1)
	for _, s := range unknownAgentStatuses {
		name := string(s)
		if len(name) > 16 {
			name = name[:16] + "…"
		}
		if _, err := Sign(k, agentReport(s), nil); !errors.Is(err, ErrMalformed) {
			t.Errorf("Sign(agent status %+q) = %v, want ErrMalformed", name, err)
		}
		// What a signer that skips the check would produce: the payload
		// encoded as is, under a pinned key.
		r := agentReport(s)
		r.Attester.KeyID = k.KeyID()
		signed := signRaw(t, k, mustEncode(t, r.toWire()))
		res, err := Verify(signed, opts(k))
		var me *MalformedError
		switch {
		case classOf(err) != "malformed" || !errors.As(err, &me):
			t.Errorf("Verify(agent status %+q) = %v, want a *MalformedError (class malformed, exit 2)", name, err)
		case !strings.Contains(me.Reason, "agent status"):
			t.Errorf("Verify(agent status %+q): reason %q does not name the agent status", name, me.Reason)
		}
		if res.Report != nil || res.Valid {
			t.Errorf("Verify(agent status %+q) returned report data", name)
		}
		if _, err := Inspect(signed); !errors.Is(err, ErrMalformed) {
			t.Errorf("Inspect(agent status %+q) = %v, want ErrMalformed", name, err)
		}
	}
}

func TestEventsIsACopy(t *testing.T) {
	es := Events()
	if len(es) != 8 || es[0] != EventBoot || es[7] != EventShutdown {
		t.Fatalf("Events() = %q", es)
	}
	es[0] = "reboot"
	if Events()[0] != EventBoot || !EventBoot.Valid() || Event("reboot").Valid() {
		t.Errorf("changing the slice Events returned changed the valid events")
	}
}
