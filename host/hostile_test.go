package host

import (
	"bytes"
	"context"
	"crypto/sha3"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"hvmon.dev/hvmon/agentproto"
	"hvmon.dev/hvmon/attest"
)

// scriptedAgent speaks the agent protocol on a unix socket: it answers
// sync as the protocol says, and every attest request with the lines
// answer returns, byte for byte. It is the hostile agent of these tests.
type scriptedAgent struct {
	Path   string
	answer func(id uint64, args agentproto.AttestArgs) []byte
	ln     net.Listener
	wg     sync.WaitGroup
}

func newScriptedAgent(t *testing.T, dir string, answer func(id uint64, args agentproto.AttestArgs) []byte) *scriptedAgent {
	t.Helper()
	a := &scriptedAgent{Path: filepath.Join(dir, "hostile.sock"), answer: answer}
	ln, err := net.Listen("unix", a.Path)
	if err != nil {
		t.Fatal(err)
	}
	a.ln = ln
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				defer c.Close()
				a.serve(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); a.wg.Wait() })
	return a
}

func (a *scriptedAgent) serve(c net.Conn) {
	lines := agentproto.NewLineReader(c, agentproto.MaxLine)
	for {
		line, err := lines.ReadLine()
		if errors.Is(err, agentproto.ErrTooLarge) {
			continue
		}
		if err != nil {
			return
		}
		if len(line) == 0 {
			continue
		}
		req, err := agentproto.DecodeRequest(line)
		if err != nil {
			return
		}
		var out []byte
		switch req.Op {
		case agentproto.OpSync:
			var s agentproto.SyncArgs
			agentproto.DecodeArgs(req.Args, &s)
			r, _ := agentproto.ResultResponse(req.ID, agentproto.SyncResult(s))
			out, _ = agentproto.EncodeLine(r)
		case agentproto.OpAttest:
			var args agentproto.AttestArgs
			agentproto.DecodeArgs(req.Args, &args)
			out = a.answer(req.ID, args)
		}
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

// resultLine is a well-formed attest reply carrying ev.
func resultLine(id uint64, ev []byte) []byte {
	r, _ := agentproto.ResultResponse(id, agentproto.AttestResult{Evidence: ev, Hash: attest.ReportHash(ev)})
	b, _ := json.Marshal(r)
	return append(b, '\n')
}

func errorLine(id uint64, code, msg string) []byte {
	b, _ := json.Marshal(agentproto.Response{ID: id, Error: &agentproto.Error{Code: code, Message: msg}})
	return append(b, '\n')
}

// paddedEvidence signs real guest evidence for args that is between
// MaxReportSize-3000 and MaxReportSize bytes: it verifies on its own,
// but a report embedding it would be over the bound.
func paddedEvidence(t *testing.T, key *attest.PrivateKey, args agentproto.AttestArgs) []byte {
	claims := func(n int) []attest.Claim {
		out := make([]attest.Claim, n)
		for i := range out {
			id := fmt.Sprintf("pad%d", i)
			out[i] = attest.Claim{
				Region:   attest.Region{ID: id, Size: 4096, Description: strings.Repeat("d", 1024), Source: strings.Repeat("s", 1024)},
				Snapshot: attest.Snapshot{RegionID: id, Size: 4096, TakenAt: time.Now().Truncate(time.Second).UTC(), PageSize: 4096},
				Workload: args.VM, Platform: "none",
			}
		}
		return out
	}
	sign := func(n int) []byte {
		g := &attest.GuestEvidence{IssuedAt: time.Now().Truncate(time.Second).UTC(), Nonce: args.Nonce, Event: args.Event, VM: args.VM,
			Platform: "none", Claims: claims(n), GuestKey: key.PublicKey().Bytes()}
		b, err := attest.SignGuestEvidence(key, g, nil)
		if err != nil {
			t.Errorf("signing padded evidence: %v", err)
		}
		return b
	}
	one, two := len(sign(1)), len(sign(2))
	n := 1 + (attest.MaxReportSize-1500-one)/(two-one)
	b := sign(n)
	if len(b) < attest.MaxReportSize-3000 || len(b) > attest.MaxReportSize {
		t.Errorf("padded evidence of %d bytes, want within 3000 bytes under %d", len(b), attest.MaxReportSize)
	}
	return b
}

// TestHostileAgent: whatever the agent sends, the event gets a stored,
// signed report that verifies (up to completeness: it may carry no
// guest evidence), whose observations say what went wrong and fit the
// format.
func TestHostileAgent(t *testing.T) {
	guestKey, _ := attest.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))
	hugeMsg := strings.Repeat("blame the host ", 100000) // 1.5 MB
	sum := sha3.Sum256([]byte("agent: measure: " + hugeMsg))
	for _, tc := range []struct {
		name   string
		answer func(t *testing.T, id uint64, args agentproto.AttestArgs) []byte
		agent  attest.AgentStatus // the status the report must carry
		check  func(t *testing.T, o *attest.Observations)
	}{
		{"huge error text", func(t *testing.T, id uint64, _ agentproto.AttestArgs) []byte {
			return errorLine(id, "measure", hugeMsg)
		}, "error", func(t *testing.T, o *attest.Observations) {
			if !strings.Contains(o.Detail, "truncated from "+strconv.Itoa(len("agent: measure: "+hugeMsg))+" bytes, sha3-256 "+hex.EncodeToString(sum[:])) {
				t.Errorf("detail does not name the original's size and digest: %q", o.Detail[len(o.Detail)-200:])
			}
		}},
		{"huge error code", func(t *testing.T, id uint64, _ agentproto.AttestArgs) []byte {
			return errorLine(id, strings.Repeat("c", 200000), "x")
		}, "error", nil},
		{"control characters", func(t *testing.T, id uint64, _ agentproto.AttestArgs) []byte {
			return errorLine(id, "evidence", "\x1b]0;owned\x07\x1b[2J\u202eevil\u0000\u0085")
		}, "error", func(t *testing.T, o *attest.Observations) {
			if strings.ContainsFunc(o.Detail, unsafeRune) || !strings.Contains(o.Detail, `\x1b]0;owned\x07`) || !strings.Contains(o.Detail, `\u202e`) {
				t.Errorf("detail not escaped: %q", o.Detail)
			}
		}},
		{"invalid UTF-8", func(t *testing.T, id uint64, _ agentproto.AttestArgs) []byte {
			return []byte(fmt.Sprintf("{\"id\":%d,\"error\":{\"code\":\"x\xff\xfe\",\"message\":\"bad \xc3\x28 bytes\"}}\n", id))
		}, "error", nil},
		{"unknown field in the result", func(t *testing.T, id uint64, _ agentproto.AttestArgs) []byte {
			return []byte(fmt.Sprintf(`{"id":%d,"result":{"evidence":"","hash":"%s","seq":0,"%s":1}}`+"\n", id, attest.ReportHash(nil), strings.Repeat("f", 100000)))
		}, "error", func(t *testing.T, o *attest.Observations) {
			if !strings.Contains(o.Detail, "unknown field") || len(o.Detail) > MaxObservedText {
				t.Errorf("detail = %q", o.Detail)
			}
		}},
		{"nesting a million deep", func(t *testing.T, id uint64, _ agentproto.AttestArgs) []byte {
			return []byte(fmt.Sprintf(`{"id":%d,"result":{"evidence":%s%s}}`+"\n", id, strings.Repeat("[", 1e6), strings.Repeat("]", 1e6)))
		}, "timeout", nil}, // a line that does not decode is noise to skip (AGENT-PROTOCOL §4, sync)
		{"evidence over 1 MiB", func(t *testing.T, id uint64, _ agentproto.AttestArgs) []byte {
			return resultLine(id, bytes.Repeat([]byte{0xd2}, attest.MaxReportSize+1000))
		}, "bad-evidence", func(t *testing.T, o *attest.Observations) {
			if o.Facts["rejected_evidence_size"] != strconv.Itoa(attest.MaxReportSize+1000) || o.Facts["rejected_evidence_hash"] == "" {
				t.Errorf("facts = %v", o.Facts)
			}
		}},
		{"evidence that fits alone but not in a report", func(t *testing.T, id uint64, args agentproto.AttestArgs) []byte {
			return resultLine(id, paddedEvidence(t, guestKey, args))
		}, "bad-evidence", func(t *testing.T, o *attest.Observations) {
			if !strings.Contains(o.Detail, "does not fit") || o.Facts["rejected_evidence_hash"] == "" || o.Facts["rejected_evidence_size"] == "" {
				t.Errorf("observations = %q %v", o.Detail, o.Facts)
			}
		}},
		{"a reply for another id only", func(t *testing.T, id uint64, _ agentproto.AttestArgs) []byte {
			return errorLine(id+1000, "internal", "not yours")
		}, "timeout", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, err := os.MkdirTemp("", "hvmon-hostile")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			a := newScriptedAgent(t, dir, func(id uint64, args agentproto.AttestArgs) []byte { return tc.answer(t, id, args) })
			r := newRigOpts(t, func(c *VMConfig) { c.Agent = a.Path }, func(o *Options) { o.AgentTimeout = 2 * time.Second })
			e, err := r.sup.Attest(context.Background(), "vm-1", attest.EventOnDemand, nil)
			if err != nil {
				t.Fatalf("no report for the event: %v", err)
			}
			res := r.verify(e)
			o := res.Report.Host
			if res.Guest != nil || o.Agent != tc.agent {
				t.Fatalf("agent status %q (guest evidence %v), want %q; detail %q", o.Agent, res.Guest != nil, tc.agent, o.Detail)
			}
			checkFits(t, o)
			if tc.check != nil {
				tc.check(t, o)
			}
		})
	}
}

// checkFits: the observations are within the format's bounds and safe to
// print.
func checkFits(t *testing.T, o *attest.Observations) {
	t.Helper()
	texts := []string{o.Host, string(o.Agent), o.Detail}
	for k, v := range o.Facts {
		texts = append(texts, k, v)
	}
	for _, s := range texts {
		if len(s) > MaxObservedText || !utf8.ValidString(s) || strings.ContainsFunc(s, unsafeRune) {
			t.Errorf("observation of %d bytes (UTF-8 %v) not fitted: %.100q", len(s), utf8.ValidString(s), s)
		}
	}
	if len(o.Facts) > MaxObservedFacts {
		t.Errorf("%d facts, more than %d", len(o.Facts), MaxObservedFacts)
	}
}
