package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/internal/keyfile"
	"hvmon.dev/hvmon/tlog"
	"hvmon.dev/hvmon/tlog/tlogtest"
)

// TestLogListLogs: log list shows each report's state in the logs the
// store has files of; log verify ignores the proof files and markers.
func TestLogListLogs(t *testing.T) {
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "k.key")
	var stderr bytes.Buffer
	if code := run([]string{"keygen", "-o", keyPath}, nil, &bytes.Buffer{}, &stderr); code != 0 {
		t.Fatalf("keygen: %d %s", code, stderr.String())
	}
	key, err := keyfile.LoadPrivate(keyPath, keyfile.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	s, err := host.NewFileStore(data)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	at := time.Now().UTC().Truncate(time.Millisecond)
	var es []host.Entry
	var signed [][]byte
	for i, ev := range []attest.Event{attest.EventBoot, attest.EventPeriodic, attest.EventShutdown} {
		r := &attest.Report{IssuedAt: at.Add(time.Duration(i) * time.Second), ExpiresAt: at.Add(time.Hour), Nonce: bytes.Repeat([]byte{1}, 32),
			Event: ev, Workload: "vm-1", Platform: "host", Seq: uint64(i),
			Host: &attest.Observations{Host: "h", EventAt: at, Agent: attest.AgentNone}}
		b, err := attest.Sign(key, r, nil)
		if err != nil {
			t.Fatal(err)
		}
		e, err := s.Put(ctx, "vm-1", b, r)
		if err != nil {
			t.Fatal(err)
		}
		es, signed = append(es, e), append(signed, b)
	}
	lk, _ := tlog.NewKeyFromSeed("test.hvmon.dev/log", [32]byte{7})
	l := tlogtest.New(lk, tlog.SignerOptions{})
	l.Append(signed[0])
	cp, _ := l.Publish()
	proof, _ := l.Proof(0, cp)
	if err := s.PutProof(ctx, es[0], "main", proof); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkRefused(ctx, es[1], "main", 413, "too large"); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code := run([]string{"log", "list", "--data-dir", data}, nil, &out, &stderr); code != 0 {
		t.Fatalf("log list: %d %s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || !strings.HasSuffix(lines[0], "LOG") || !strings.HasSuffix(lines[1], "main:0") ||
		!strings.HasSuffix(lines[2], "main:refused(413)") || !strings.HasSuffix(lines[3], "main:pending") {
		t.Fatalf("log list:\n%s", out.String())
	}
	out.Reset()
	if code := run([]string{"log", "list", "--json", "--data-dir", data}, nil, &out, &stderr); code != 0 {
		t.Fatalf("log list --json: %d %s", code, stderr.String())
	}
	var got []host.APIEntry
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Logs["main"].Index == nil || *got[0].Logs["main"].Index != 0 ||
		got[1].Logs["main"] != (host.APILogState{State: "refused", Status: 413}) || got[2].Logs["main"].State != "pending" {
		t.Fatalf("log list --json:\n%s", out.String())
	}
	out.Reset()
	code := run([]string{"log", "verify", "--trust", keyPath + ".pub", "--data-dir", data}, nil, &out, &stderr)
	if strings.Contains(out.String(), ".proof") || strings.Contains(out.String(), ".refused") || code == exitUsage || code == exitMalformed {
		t.Fatalf("log verify looked at the log files: exit %d\n%s%s", code, out.String(), stderr.String())
	}
	out.Reset()
	code = run([]string{"verify", "--chain", "--trust", keyPath + ".pub", filepath.Dir(es[0].Path)}, nil, &out, &stderr)
	if strings.Contains(out.String(), ".proof") || strings.Contains(out.String(), ".refused") || code == exitUsage || code == exitMalformed {
		t.Fatalf("verify --chain looked at the log files: exit %d\n%s%s", code, out.String(), stderr.String())
	}
}
