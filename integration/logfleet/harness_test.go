package logfleet

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/tlog"
	"hvmon.dev/hvmon/tlog/tlogclient"
)

// stackEnv names the env file of a running scripts/logstack.sh stack.
const stackEnv = "HVMON_LOGSTACK_ENV"

// The log's origin and key seed: the same as package logd's tests, so
// that all of them can share one stack's tree.
const testOrigin = "test.hvmon.dev/log"

func logKey(t testing.TB) *tlog.PrivateKey {
	t.Helper()
	k, err := tlog.NewKeyFromSeed(testOrigin, sha256.Sum256([]byte("hvmon logd test key")))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func logPolicy(t testing.TB) tlog.Policy { return tlog.Policy{Log: logKey(t).Verifier()} }

// stack is a running scripts/logstack.sh stack.
type stack struct {
	dir string            // the stack's directory (where env lives)
	env map[string]string // its env file
}

// needStack returns the stack HVMON_LOGSTACK_ENV names, or skips.
func needStack(t testing.TB) *stack {
	t.Helper()
	path := os.Getenv(stackEnv)
	if path == "" {
		t.Skipf("%s is not set: start scripts/logstack.sh start DIR and set it to DIR/env", stackEnv)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{dir: filepath.Dir(path), env: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			s.env[k] = strings.Trim(v, "'")
		}
	}
	return s
}

// do runs a logstack.sh verb (stop-db, start-db, stop-s3, start-s3) on
// the stack.
func (s *stack) do(t testing.TB, verb string) {
	t.Helper()
	out, err := exec.Command(filepath.Join(repoRoot(t), "scripts", "logstack.sh"), verb, s.dir).CombinedOutput()
	if err != nil {
		t.Fatalf("logstack.sh %s: %v\n%s", verb, err, out)
	}
}

// awsBlock is the storage block of a log server on the stack.
func (s *stack) awsBlock() string {
	return fmt.Sprintf(`aws {
  dsn = %q
  antispam_dsn = %q
  bucket = %q
  endpoint = %q
}`, s.env["HVMON_LOG_DSN"], s.env["HVMON_ANTISPAM_DSN"], s.env["HVMON_S3_BUCKET"], s.env["HVMON_S3_ENDPOINT"])
}

// procEnv is the environment of a log server on the stack: the S3
// credentials.
func (s *stack) procEnv() []string {
	return []string{"HVMON_S3_ACCESS_KEY=" + s.env["HVMON_S3_ACCESS_KEY"], "HVMON_S3_SECRET_KEY=" + s.env["HVMON_S3_SECRET_KEY"]}
}

func repoRoot(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	return strings.TrimSpace(string(out))
}

var binary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// hvmonBinary builds cmd/hvmon once per test binary, niced.
func hvmonBinary(t testing.TB) string {
	t.Helper()
	binary.once.Do(func() {
		binary.dir, binary.err = os.MkdirTemp("", "hvmon-logfleet-")
		if binary.err != nil {
			return
		}
		binary.path = filepath.Join(binary.dir, "hvmon")
		out, err := exec.Command("nice", "-n", "19", "go", "build", "-o", binary.path, "hvmon.dev/hvmon/cmd/hvmon").CombinedOutput()
		if err != nil {
			binary.err = fmt.Errorf("building hvmon: %v\n%s", err, out)
		}
	})
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binary.dir != "" {
		os.RemoveAll(binary.dir)
	}
	os.Exit(code)
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// logServer is one `hvmon logd` process, niced, with its configuration
// under dir; it can be killed and started again on the same port.
type logServer struct {
	t    testing.TB
	name string
	dir  string
	url  string
	env  []string
	cmd  *exec.Cmd
	done chan struct{}
}

// newLogServer writes the configuration of a log server that accepts the
// given host keys, on storage (a posix or aws block), and starts it.
func newLogServer(t testing.TB, name, storage string, env []string, hosts []*attest.PrivateKey, extra string) *logServer {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	pemBytes, err := logKey(t).MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "log.key"), pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	var allow bytes.Buffer
	for _, k := range hosts {
		p, err := attest.MarshalPublicKeyPEM(k.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		allow.Write(p)
	}
	if err := os.WriteFile(filepath.Join(dir, "hosts.pem"), allow.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	cfg := fmt.Sprintf(`origin = %q
key = %q
allowlist = %q
listen = "127.0.0.1:%d"
metrics_listen = ""
checkpoint_interval = "1s"
%s
%s
`, testOrigin, filepath.Join(dir, "log.key"), filepath.Join(dir, "hosts.pem"), port, extra, storage)
	if err := os.WriteFile(filepath.Join(dir, "logd.hcl"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &logServer{t: t, name: name, dir: dir, url: fmt.Sprintf("http://127.0.0.1:%d", port), env: env}
	t.Cleanup(s.stop)
	s.start()
	return s
}

// start starts the process and waits until it is ready (GET /healthz).
func (s *logServer) start() {
	t := s.t
	t.Helper()
	log, err := os.OpenFile(filepath.Join(s.dir, "logd.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	s.cmd = exec.Command("nice", "-n", "19", hvmonBinary(t), "logd", "--config", filepath.Join(s.dir, "logd.hcl"))
	s.cmd.Env = append(os.Environ(), s.env...)
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	s.done = done
	go func() { s.cmd.Wait(); close(done) }()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get(s.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-done:
			t.Fatalf("%s exited at start:\n%s", s.name, s.logTail())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after 2 min:\n%s", s.name, s.logTail())
		}
	}
}

// kill sends SIGKILL to the process (by its PID) and waits for it.
func (s *logServer) kill() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		s.t.Fatalf("kill -9 %s: %v", s.name, err)
	}
	<-s.done
}

// stop ends the process with SIGTERM, then SIGKILL after 30 s.
func (s *logServer) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Signal(syscall.SIGKILL)
		<-s.done
	}
}

// exited reports whether the process ended (on its own or killed).
func (s *logServer) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *logServer) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "logd.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func (s *logServer) reader() *tlogclient.HTTPReader { return &tlogclient.HTTPReader{Base: s.url} }

// checkpoint reads and opens the server's current checkpoint.
func (s *logServer) checkpoint(ctx context.Context, p tlog.Policy) (*tlog.Checkpoint, error) {
	b, err := s.reader().ReadCheckpoint(ctx)
	if err != nil {
		return nil, err
	}
	return p.Open(b)
}

// hostKey derives a host key from a test-unique seed.
func hostKey(t testing.TB, name string) *attest.PrivateKey {
	t.Helper()
	seed := sha256.Sum256([]byte("hvmon logfleet host " + name))
	k, err := attest.NewKeyFromSeed(seed[:attest.SeedSize])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// guestEvidence is one guest evidence COSE_Sign1 with two claims, as a
// demo guest sends: reports that carry it have the demo's size.
func guestEvidence(t testing.TB, now time.Time) []byte {
	t.Helper()
	gk := hostKey(t, "guest")
	g := &attest.GuestEvidence{IssuedAt: now, Nonce: make([]byte, 32), Event: attest.EventPeriodic, VM: "vm-1", Platform: "none",
		GuestKey: gk.PublicKey().Bytes(), Claims: demoClaims(now, "vm-1", "none")}
	b, err := attest.SignGuestEvidence(gk, g, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func demoClaims(now time.Time, vm string, p attest.Platform) []attest.Claim {
	var cs []attest.Claim
	for _, id := range []string{"kernel", "weights"} {
		root := sha256.Sum256([]byte(id))
		cs = append(cs, attest.Claim{
			Region:   attest.Region{ID: id, Description: "the " + id + " region of the demo VM", Size: 64 << 20, Protection: "RO", Source: "file:/var/lib/vm/" + id},
			Snapshot: attest.Snapshot{RegionID: id, Root: attest.Digest(root), Size: 64 << 20, TakenAt: now, PageSize: 4096, Mode: "full"},
			Workload: vm, Platform: p,
		})
	}
	return cs
}

// signedReport is a report signed for a host, with its parsed form.
type signedReport struct {
	vm     string
	report *attest.Report
	bytes  []byte
}

// signReports signs n reports of host name (two VMs, sequence numbers and
// times increasing, random nonces so that no two runs share a report),
// on all cores.
func signReports(t testing.TB, k *attest.PrivateKey, name string, n int, guest []byte) []signedReport {
	t.Helper()
	start := time.Now().UTC().Truncate(time.Millisecond)
	out := make([]signedReport, n)
	var wg sync.WaitGroup
	errs := make(chan error, runtime.NumCPU())
	for w := range runtime.NumCPU() {
		wg.Go(func() {
			for i := w; i < n; i += runtime.NumCPU() {
				vm := fmt.Sprintf("vm-%d", i%2)
				nonce := make([]byte, 32)
				rand.Read(nonce)
				at := start.Add(time.Duration(i) * time.Millisecond)
				r := &attest.Report{IssuedAt: at, ExpiresAt: at.Add(5 * time.Minute), Nonce: nonce, Event: attest.EventPeriodic,
					Workload: vm, Platform: "file", Attester: attest.Identity{Name: name}, Seq: uint64(i / 2), Claims: demoClaims(at, vm, "file"),
					Guest: guest, Host: &attest.Observations{Host: name, EventAt: at, Agent: attest.AgentOK}}
				b, err := attest.Sign(k, r, nil)
				if err != nil {
					errs <- err
					return
				}
				out[i] = signedReport{vm: vm, report: r, bytes: b}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	return out
}

// waitFor polls cond every 200 ms until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, d)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
