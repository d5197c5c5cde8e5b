package agentproto

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"hvmon.dev/hvmon/attest"
)

// TestHostileLines: what a hostile peer can put on one line is refused
// with an error, never a crash or unbounded memory: nesting a million
// deep (encoding/json stops at 10,000), a million fields, a line over
// MaxLine (skipped to its newline).
func TestHostileLines(t *testing.T) {
	deep := `{"id":1,"result":` + strings.Repeat("[", 1e6) + strings.Repeat("]", 1e6) + `}`
	if _, err := DecodeResponse([]byte(deep)); err == nil {
		t.Error("DecodeResponse(nesting 1e6 deep) accepted")
	}
	if _, err := DecodeRequest([]byte(`{"id":1,"op":"sync","args":` + strings.Repeat("[", 1e6) + `}`)); err == nil {
		t.Error("DecodeRequest(nesting 1e6 deep) accepted")
	}
	var fields strings.Builder
	fields.WriteString(`{"id":1,"result":{}`)
	for i := range 100000 {
		fmt.Fprintf(&fields, `,"f%d":1`, i)
	}
	fields.WriteString("}")
	if _, err := DecodeResponse([]byte(fields.String())); err == nil {
		t.Error("DecodeResponse(100,000 unknown fields) accepted")
	}
	var res AttestResult
	if err := DecodeArgs([]byte(`{"evidence":"","hash":"`+strings.Repeat("0", 64)+`","seq":0,"extra":1}`), &res); err == nil {
		t.Error("DecodeArgs(an unknown field in a result) accepted")
	}
}

// TestErrorResponseBounded: an error message that quotes a huge request is
// cut to MaxErrorMessage, at a character boundary.
func TestErrorResponseBounded(t *testing.T) {
	r := ErrorResponse(3, CodeBadArgs, "unknown region %q", strings.Repeat("é", MaxLine))
	if m := r.Error.Message; len(m) > MaxErrorMessage || !utf8.ValidString(m) || !strings.HasSuffix(m, "…") {
		t.Fatalf("message of %d bytes (valid UTF-8 %v), want at most %d ending in …", len(m), utf8.ValidString(m), MaxErrorMessage)
	}
	if r := ErrorResponse(3, CodeBadArgs, "short"); r.Error.Message != "short" {
		t.Fatalf("short message changed to %q", r.Error.Message)
	}
}

// TestClientSkipsHostileReplies: before the reply to its request, an agent
// sends a line over MaxLine, garbage, a reply for another id, and a reply
// nested too deep; the client skips each and takes the right reply. A
// result with an unknown field, and evidence that does not match its hash,
// are ErrBadReply.
func TestClientSkipsHostileReplies(t *testing.T) {
	ev := []byte("evidence bytes")
	good := fmt.Sprintf(`{"evidence":"ZXZpZGVuY2UgYnl0ZXM=","hash":"%s","seq":7}`, attest.ReportHash(ev))
	for _, tc := range []struct {
		name    string
		noise   []string
		result  string
		wantErr error
	}{
		{"noise first", []string{strings.Repeat("x", MaxLine+10), "not json", `{"id":999,"result":{}}`, `{"id":%d,"result":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`}, good, nil},
		{"unknown field", nil, strings.TrimSuffix(good, "}") + `,"more":true}`, ErrBadReply},
		{"hash mismatch", nil, fmt.Sprintf(`{"evidence":"eA==","hash":"%s","seq":7}`, attest.ReportHash(ev)), ErrBadReply},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, agent := net.Pipe()
			defer host.Close()
			go fakeAgent(agent, tc.noise, tc.result)
			c := NewClient(host)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := c.Attest(ctx, AttestArgs{Nonce: make([]byte, 32), Event: attest.EventBoot, VM: "vm"})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Attest = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || res.Seq != 7 || string(res.Evidence) != string(ev) {
				t.Fatalf("Attest = %+v, %v", res, err)
			}
		})
	}
}

// fakeAgent answers sync properly, and attest with the noise lines (a %d
// in one becomes the request's id) and then the result.
func fakeAgent(c net.Conn, noise []string, result string) {
	defer c.Close()
	lines := NewLineReader(c, MaxLine)
	for {
		line, err := lines.ReadLine()
		if errors.Is(err, ErrTooLarge) {
			continue
		}
		if err != nil {
			return
		}
		if len(line) == 0 {
			continue
		}
		req, err := DecodeRequest(line)
		if err != nil {
			return
		}
		if req.Op == OpSync {
			var a SyncArgs
			DecodeArgs(req.Args, &a)
			r, _ := ResultResponse(req.ID, SyncResult(a))
			b, _ := EncodeLine(r)
			c.Write(b)
			continue
		}
		for _, n := range noise {
			if strings.Contains(n, "%d") {
				n = fmt.Sprintf(n, req.ID)
			}
			c.Write([]byte(n + "\n"))
		}
		fmt.Fprintf(c, `{"id":%d,"result":%s}`+"\n", req.ID, result)
	}
}
