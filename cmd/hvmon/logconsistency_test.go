package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"hvmon.dev/hvmon/tlog/tlogclient"
)

// TestLogConsistency checks log consistency over a log published as a
// directory, a consistency file, and a fork signed by the same key.
func TestLogConsistency(t *testing.T) {
	dir := t.TempDir()
	lg := newTestLog(t, "log.example/main")
	fork := newTestLog(t, "log.example/main") // the same key, another history
	var entries [][]byte
	for i := range 300 {
		entries = append(entries, []byte(fmt.Sprintf("entry %d", i)))
	}
	if _, err := lg.Append(entries[:5]...); err != nil {
		t.Fatal(err)
	}
	if _, err := fork.Append(append(entries[:4:4], []byte("forged"))...); err != nil {
		t.Fatal(err)
	}
	old, err := lg.Publish(lg.w04)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := fork.Publish(lg.w04)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lg.Append(entries[5:]...); err != nil {
		t.Fatal(err)
	}
	cur, err := lg.Publish(lg.w04)
	if err != nil {
		t.Fatal(err)
	}
	tiles := filepath.Join(dir, "log")
	if err := tlogclient.WriteDir(context.Background(), lg, cur, lg.Size(), tiles); err != nil {
		t.Fatal(err)
	}
	cfile, err := lg.Consistency(5, cur)
	if err != nil {
		t.Fatal(err)
	}
	wrongOld, err := lg.Consistency(4, cur)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := lg.Proof(2, cur)
	if err != nil {
		t.Fatal(err)
	}
	bare, err := lg.Checkpoint(5)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"old": old, "cur": cur, "forged": forged, "c": cfile, "c4": wrongOld, "cur.proof": proof,
		"garbage": []byte("not a checkpoint\n"), "flipped": flipLast(bare), "wflipped": flipLast(old)}
	for name, b := range files {
		writeFile(t, filepath.Join(dir, name), b)
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	base := []string{"log", "consistency", "--log-key", lg.vkey}
	out := p("made.c")
	for _, c := range []struct {
		name string
		args []string
		want int
	}{
		{"tiles", []string{p("old"), p("cur"), "--tlog", tiles, "--out", out}, 0},
		{"tiles, reversed", []string{p("cur"), p("old"), "--tlog", tiles}, 0},
		{"proof file as NEW", []string{p("old"), p("cur.proof"), "--tlog", tiles}, 0},
		{"consistency file", []string{p("old"), p("cur"), "--proof-file", p("c")}, 0},
		{"consistency file made by --out", []string{p("old"), p("cur"), "--proof-file", out}, 0},
		{"same checkpoint", []string{p("cur"), p("cur"), "--tlog", tiles}, 0},
		{"witness quorum", []string{p("old"), p("cur"), "--tlog", tiles, "--witness-key", lg.w04Key}, 0},
		{"witness missing", []string{p("old"), p("cur"), "--tlog", tiles, "--witness-key", lg.w06Key}, 3},
		{"forged checkpoint, tiles", []string{p("forged"), p("cur"), "--tlog", tiles}, 3},
		{"forged checkpoint, file", []string{p("forged"), p("cur"), "--proof-file", p("c")}, 3},
		{"fork at one size", []string{p("forged"), p("old"), "--tlog", tiles}, 3},
		{"file for another size", []string{p("old"), p("cur"), "--proof-file", p("c4")}, 3},
		{"bad signature", []string{p("flipped"), p("cur"), "--tlog", tiles}, 3},
		{"bad witness signature", []string{p("wflipped"), p("cur"), "--tlog", tiles, "--witness-key", lg.w04Key}, 3},
		{"malformed checkpoint", []string{p("garbage"), p("cur"), "--tlog", tiles}, 2},
		{"malformed consistency file", []string{p("old"), p("cur"), "--proof-file", p("garbage")}, 2},
		{"no tiles", []string{p("old"), p("cur"), "--tlog", p("nothing")}, 1},
		{"both proofs", []string{p("old"), p("cur"), "--tlog", tiles, "--proof-file", p("c")}, 1},
		{"--out without --tlog", []string{p("old"), p("cur"), "--proof-file", p("c"), "--out", p("x")}, 1},
	} {
		code, stdout, stderr := runIn(t, nil, append(base, c.args...)...)
		if code != c.want {
			t.Errorf("%s: exit %d, want %d\n%s%s", c.name, code, c.want, stdout, stderr)
		}
	}
	if _, err := os.Stat(out); err != nil {
		t.Errorf("--out: %v", err)
	}
	code, _, stderr := runIn(t, nil, "log", "consistency", p("old"), p("cur"), "--tlog", tiles)
	checkFailure(t, "no --log-key", code, stderr, exitUsage)
}
