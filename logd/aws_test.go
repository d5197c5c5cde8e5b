package logd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"hvmon.dev/hvmon/tlog"
)

// stackEnv names the env file scripts/logstack.sh writes. The aws storage
// test runs only when it is set (it needs MariaDB and an S3 gateway).
const stackEnv = "HVMON_LOGSTACK_ENV"

func readStackEnv(t *testing.T) map[string]string {
	t.Helper()
	path := os.Getenv(stackEnv)
	if path == "" {
		t.Skipf("%s is not set: start scripts/logstack.sh and point it at DIR/env", stackEnv)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok {
			env[k] = strings.Trim(v, "'")
		}
	}
	return env
}

// The aws storage, on the local stack: concurrent reports are logged,
// every proof verifies, and tiles are served from the bucket.
func TestAWSStorage(t *testing.T) {
	stack := readStackEnv(t)
	host := hostKey(t, 1)
	dir := t.TempDir()
	pemBytes, err := logKey(t).MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "log.key"), pemBytes, 0o600)
	writeFile(t, filepath.Join(dir, "allowlist.pem"), pubPEM(t, host), 0o644)
	src := strings.Replace(testConfig(dir, ""), fmt.Sprintf("posix {\n  dir = %q\n}", filepath.Join(dir, "log")), fmt.Sprintf(`aws {
  dsn = %q
  antispam_dsn = %q
  bucket = %q
  endpoint = %q
}`, stack["HVMON_LOG_DSN"], stack["HVMON_ANTISPAM_DSN"], stack["HVMON_S3_BUCKET"], stack["HVMON_S3_ENDPOINT"]), 1)
	src = strings.Replace(src, `"100ms"`, `"1s"`, 1)
	cfg, err := ParseConfig([]byte(src), "logd.hcl")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(t.Context(), cfg, Options{Getenv: func(k string) string { return stack[k] }})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{dir: dir, srv: srv, ts: newTestServer(t, srv), policy: tlog.Policy{Log: logKey(t).Verifier()}}
	e.waitReady(t)

	// Reports unique to this run: the stack may hold earlier runs' log.
	salt := int(time.Now().UnixNano() % 1e9)
	const n = 40
	proofs := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			a := e.do(t, "POST", PathAdd, report(t, host, salt+i))
			if a.status != http.StatusOK {
				t.Errorf("report %d: %d %s", i, a.status, a.body)
			}
			proofs[i] = a.body
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	latest, err := e.policy.Open(e.do(t, "GET", PathCheckpoint, nil).body)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range proofs {
		cp, _, err := tlog.VerifyProof(e.policy, report(t, host, salt+i), p)
		if err != nil {
			t.Fatalf("proof %d: %v", i, err)
		}
		path, err := tlog.ProveConsistency(context.Background(), httpReader{t, e}, cp, latest)
		if err == nil {
			err = tlog.CheckConsistency(cp, latest, path)
		}
		if err != nil {
			t.Fatalf("consistency %d → %d: %v", cp.Size, latest.Size, err)
		}
	}
	if a := e.do(t, "POST", PathAdd, report(t, host, salt)); a.header.Get("Hvmon-Log-Duplicate") != "true" {
		t.Errorf("resubmission: %d duplicate %q", a.status, a.header.Get("Hvmon-Log-Duplicate"))
	}
}
