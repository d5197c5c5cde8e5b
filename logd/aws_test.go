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

	"hvmon.dev/hvmon/attest"
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

// awsEnv starts a log server on the local stack's aws storage.
func awsEnv(t *testing.T, stack map[string]string, hosts ...*attest.PrivateKey) *env {
	t.Helper()
	dir := t.TempDir()
	pemBytes, err := logKey(t).MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "log.key"), pemBytes, 0o600)
	writeFile(t, filepath.Join(dir, "allowlist.pem"), pubPEM(t, hosts...), 0o644)
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
	return e
}

// submitAll submits n reports of host, numbered from first, spread over
// the servers by 8 concurrent submitters, and checks every proof and its
// consistency with the latest checkpoint of the first server.
func submitAll(t *testing.T, envs []*env, host *attest.PrivateKey, first, n int) {
	t.Helper()
	proofs := make([][]byte, n)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				e := envs[i%len(envs)]
				a := e.do(t, "POST", PathAdd, report(t, host, first+i))
				if a.status != http.StatusOK {
					t.Errorf("report %d: %d %s", i, a.status, a.body)
					return
				}
				proofs[i] = a.body
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	e := envs[0]
	latest, err := e.policy.Open(e.do(t, "GET", PathCheckpoint, nil).body)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]int{}
	for i, p := range proofs {
		cp, idx, err := tlog.VerifyProof(e.policy, report(t, host, first+i), p)
		if err != nil {
			t.Fatalf("proof %d: %v", i, err)
		}
		if j, ok := seen[idx]; ok {
			t.Fatalf("reports %d and %d both at index %d", j, i, idx)
		}
		seen[idx] = i
		if cp.Size > latest.Size {
			cp, latest = latest, cp
		}
		path, err := tlog.ProveConsistency(context.Background(), httpReader{t, e}, cp, latest)
		if err == nil {
			err = tlog.CheckConsistency(cp, latest, path)
		}
		if err != nil {
			t.Fatalf("consistency %d → %d: %v", cp.Size, latest.Size, err)
		}
	}
}

// The aws storage, on the local stack: concurrent reports are logged,
// every proof verifies, and tiles are served from the bucket.
func TestAWSStorage(t *testing.T) {
	stack := readStackEnv(t)
	host := hostKey(t, 1)
	e := awsEnv(t, stack, host)
	// Reports unique to this run: the stack may hold earlier runs' log.
	salt := int(time.Now().UnixNano() % 1e9)
	submitAll(t, []*env{e}, host, salt, 40)
	if a := e.do(t, "POST", PathAdd, report(t, host, salt)); a.header.Get("Hvmon-Log-Duplicate") != "true" {
		t.Errorf("resubmission: %d duplicate %q", a.status, a.header.Get("Hvmon-Log-Duplicate"))
	}
}

// Two log servers on one aws storage grow one tree: every report gets one
// index, every proof verifies against either server's checkpoints.
func TestAWSFleet(t *testing.T) {
	stack := readStackEnv(t)
	host := hostKey(t, 1)
	envs := []*env{awsEnv(t, stack, host), awsEnv(t, stack, host)}
	salt := int(time.Now().UnixNano()%1e9) + 1e9
	submitAll(t, envs, host, salt, 400)
	// A report first logged through one server is a duplicate through
	// the other once the shared dedup index has followed the log.
	size := treeSize(t, envs[0])
	for {
		n, err := envs[1].srvFollower(t)
		if err == nil && n >= size {
			break
		}
		select {
		case <-t.Context().Done():
			t.Fatal("the dedup index never followed the log")
		case <-time.After(100 * time.Millisecond):
		}
	}
	a := envs[1].do(t, "POST", PathAdd, report(t, host, salt))
	if a.status != http.StatusOK || a.header.Get("Hvmon-Log-Duplicate") != "true" {
		t.Fatalf("resubmission through the other server: %d duplicate %q index %s", a.status, a.header.Get("Hvmon-Log-Duplicate"), a.header.Get("Hvmon-Log-Index"))
	}
}
