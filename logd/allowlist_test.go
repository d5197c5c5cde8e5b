package logd

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/tlog"
)

func TestParseAllowlist(t *testing.T) {
	a, b := hostKey(t, 1), hostKey(t, 2)
	two := pubPEM(t, a, b)
	keys, err := ParseAllowlist(append(append([]byte("\n# hosts of rack 1\n\n"), two...), pubPEM(t, a)...))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].KeyID() != a.KeyID() || keys[1].KeyID() != b.KeyID() {
		t.Fatalf("keys %v", keys)
	}
	priv, err := attest.MarshalPrivateKeyPEM(a)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"empty":             nil,
		"only comments":     []byte("# nothing\n"),
		"text":              append([]byte("hello\n"), two...),
		"trailing text":     append(bytes.Clone(two), "x"...),
		"private key":       priv,
		"truncated block":   two[:len(two)-20],
		"other block type":  bytes.ReplaceAll(bytes.Clone(two), []byte("PUBLIC KEY"), []byte("CERTIFICATE")),
		"block with header": bytes.Replace(bytes.Clone(two), []byte("-----\n"), []byte("-----\nProc-Type: 4,ENCRYPTED\n\n"), 1),
		"too large":         bytes.Repeat([]byte("#\n"), MaxAllowlistSize),
	} {
		if _, err := ParseAllowlist(data); !errors.Is(err, attest.ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func FuzzParseAllowlist(f *testing.F) {
	f.Add(pubPEM(f, hostKey(f, 1)))
	f.Add([]byte("# c\n-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := ParseAllowlist(data)
		if err == nil && (len(keys) == 0 || len(keys) > MaxAllowlistKeys) {
			t.Fatalf("%d keys accepted", len(keys))
		}
	})
}

// A key file others can read is refused: whoever reads it can sign
// checkpoints in the log's name.
func TestLoadKeyPermissions(t *testing.T) {
	dir := t.TempDir()
	pemBytes, err := logKey(t).MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "log.key")
	writeFile(t, p, pemBytes, 0o644)
	if _, err := LoadKey(p, testOrigin); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("group-readable key: %v", err)
	}
	os.Chmod(p, 0o600)
	if _, err := LoadKey(p, testOrigin); err != nil {
		t.Fatal(err)
	}
	os.Symlink(p, p+".link")
	if _, err := LoadKey(p+".link", testOrigin); err == nil {
		t.Error("a symlinked key was loaded")
	}
}

// restartChildEnv names the log directory a child test process fills
// before TestRestart restarts the log on it.
const restartChildEnv = "HVMON_LOGD_TEST_RESTART_DIR"

// After a restart on the same directory the log becomes ready again and a
// report logged before it gets its old index back (the persistent dedup
// index), not a second one. The first life of the log runs in a child
// process: the dedup index's database is released only when its process
// ends.
func TestRestart(t *testing.T) {
	host := hostKey(t, 1)
	if dir := os.Getenv(restartChildEnv); dir != "" {
		restartChild(t, dir, host)
		return
	}
	dir := t.TempDir()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestRestart$", "-test.count=1")
	cmd.Env = append(os.Environ(), restartChildEnv+"="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("first life of the log: %v\n%s", err, out)
	}
	idx, err := os.ReadFile(filepath.Join(dir, "indexes"))
	if err != nil {
		t.Fatal(err)
	}

	cfg, err := ParseConfig([]byte(testConfig(dir, "")), "logd.hcl")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(t.Context(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{dir: dir, srv: srv, ts: newTestServer(t, srv), policy: tlog.Policy{Log: logKey(t).Verifier()}}
	e.waitReady(t)
	for i, want := range strings.Fields(string(idx)) {
		a := e.do(t, "POST", PathAdd, report(t, host, i))
		if a.status != http.StatusOK || a.header.Get("Hvmon-Log-Index") != want || a.header.Get("Hvmon-Log-Duplicate") != "true" {
			t.Errorf("report %d after restart: %d index %s dup %s, want index %s dup true", i, a.status,
				a.header.Get("Hvmon-Log-Index"), a.header.Get("Hvmon-Log-Duplicate"), want)
		}
	}
	if a := e.do(t, "POST", PathAdd, report(t, host, 3)); a.status != http.StatusOK || a.header.Get("Hvmon-Log-Index") != "3" {
		t.Errorf("new report after restart: %d index %s", a.status, a.header.Get("Hvmon-Log-Index"))
	}
	if n := treeSize(t, e); n != 4 {
		t.Errorf("tree size %d after restart, want 4", n)
	}
}

// restartChild is the first life of TestRestart's log: it logs three
// reports into dir, waits until the dedup index followed them, stops the
// log and writes the indexes to dir/indexes.
func restartChild(t *testing.T, dir string, host *attest.PrivateKey) {
	e := newEnvIn(t, dir, "", host)
	var idx []string
	for i := range 3 {
		a := e.do(t, "POST", PathAdd, report(t, host, i))
		if a.status != http.StatusOK {
			t.Fatalf("report %d: %d %s", i, a.status, a.body)
		}
		idx = append(idx, a.header.Get("Hvmon-Log-Index"))
	}
	for {
		n, err := e.srvFollower(t)
		if err == nil && n >= 3 {
			break
		}
		select {
		case <-t.Context().Done():
			t.Fatal("dedup index never followed the log")
		case <-time.After(20 * time.Millisecond):
		}
	}
	writeFile(t, filepath.Join(dir, "indexes"), []byte(strings.Join(idx, " ")), 0o644)
}
