package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"hvmon.dev/hvmon/attest"
)

// hvmonExe links the test binary under a name testscript.Main runs as a
// command of TestMain, and returns the link.
func hvmonExe(t *testing.T, name string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), name)
	if err := os.Symlink(exe, link); err != nil {
		t.Fatal(err)
	}
	return link
}

// waitLine reads r until a line containing want; it fails the test when r
// ends first.
func waitLine(t *testing.T, r *bufio.Reader, want string) {
	t.Helper()
	for {
		line, err := r.ReadString('\n')
		if strings.Contains(line, want) {
			return
		}
		if err != nil {
			t.Fatalf("no line with %q before %v", want, err)
		}
	}
}

// TestSignalEndsRun: hvmon verify reading a report from a stdin that
// never ends stops at the first SIGINT (or SIGTERM), with exit code 1 and
// a message, instead of waiting for input.
func TestSignalEndsRun(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(hvmonExe(t, "hvmon"), "--log-level", "debug", "verify", "--trust", "../../testdata/keys/host.pub", "-")
			stdin, _ := cmd.StdinPipe() // held open, never written
			defer stdin.Close()
			pr, pw := io.Pipe()
			var stderr bytes.Buffer
			cmd.Stderr = io.MultiWriter(pw, &stderr)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait(); pw.Close() }()
			go io.Copy(io.Discard, bufio.NewReader(pr)) // after waitLine, keep the pipe drained
			br := bufio.NewReader(pr)
			waitLine(t, br, "reading the report from stdin")
			cmd.Process.Signal(sig)
			var err error
			select {
			case err = <-done:
			case <-time.After(time.Minute): // a guard against a hung test, not a timing assertion
				cmd.Process.Kill()
				t.Fatalf("hvmon still runs after %s; stderr:\n%s", sig, stderr.String())
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != exitUsage || !strings.Contains(stderr.String(), "hvmon: reading stdin: interrupted") {
				t.Fatalf("after %s: %v; stderr:\n%s", sig, err, stderr.String())
			}
		})
	}
}

// TestSecondSignal: a run that does not get to observe its context after
// the first SIGINT still ends at the second, by the signal's default
// action.
func TestSecondSignal(t *testing.T) {
	cmd := exec.Command(hvmonExe(t, "hvmon-ignore-signal"))
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(stderr)
	waitLine(t, br, "ready")
	cmd.Process.Signal(syscall.SIGINT)
	waitLine(t, br, "first signal seen")
	cmd.Process.Signal(syscall.SIGINT)
	go io.Copy(io.Discard, br)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(time.Minute): // a guard against a hung test, not a timing assertion
		cmd.Process.Kill()
		t.Fatal("still running after the second SIGINT")
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("Wait = %v, want death by SIGINT", err)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGINT {
		t.Fatalf("exit status %v, want killed by SIGINT", ee)
	}
}

// TestNoHangOnNonRegularFiles: every file a command reads (reports, a
// history directory, keys, hardware roots, certificates, the daemon's
// configuration) may be a FIFO no one writes, a device or a directory:
// the command refuses it at once with exit code 1 and names it.
func TestNoHangOnNonRegularFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.cose")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	report := signedTestReport(t, dir)
	hist := filepath.Join(dir, "history")
	os.Mkdir(hist, 0o755)
	os.WriteFile(filepath.Join(hist, "a.cose"), report, 0o644)
	withFIFO := func(name string, mk func(string) error) string {
		d := filepath.Join(dir, "h-"+name)
		os.Mkdir(d, 0o755)
		os.WriteFile(filepath.Join(d, "a.cose"), report, 0o644)
		if err := mk(filepath.Join(d, "b.cose")); err != nil {
			t.Fatal(err)
		}
		return d
	}
	fifoDir := withFIFO("fifo", func(p string) error { return syscall.Mkfifo(p, 0o600) })
	dirDir := withFIFO("dir", func(p string) error { return os.Mkdir(p, 0o755) })
	loopDir := withFIFO("loop", func(p string) error { return os.Symlink(p, p) })
	devDir := withFIFO("dev", func(p string) error { return os.Symlink("/dev/zero", p) })
	pub := filepath.Join(dir, "k.key.pub")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"verify", "--trust", pub, fifo}, "is a FIFO"},
		{[]string{"verify", "--trust", pub, "/dev/zero"}, "is a character device"},
		{[]string{"show", fifo}, "is a FIFO"},
		{[]string{"verify", "--trust", pub, "--chain", fifoDir}, "b.cose is a FIFO"},
		{[]string{"verify", "--trust", pub, "--chain", dirDir}, "b.cose is a directory"},
		{[]string{"verify", "--trust", pub, "--chain", loopDir}, "too many levels of symbolic links"},
		{[]string{"verify", "--trust", pub, "--chain", devDir}, "b.cose is a character device"},
		{[]string{"verify", "--trust", fifo, filepath.Join(hist, "a.cose")}, "is a FIFO"},
		{[]string{"verify", "--trust", pub, "--allow-simulated", "--simulated-roots", fifo, filepath.Join(hist, "a.cose")}, "is a FIFO"},
		{[]string{"verify", "--trust", pub, "--amd-roots", fifo, filepath.Join(hist, "a.cose")}, "is a FIFO"},
		{[]string{"verify", "--trust", pub, "--intel-roots", "/dev/zero", filepath.Join(hist, "a.cose")}, "is a character device"},
		{[]string{"evidence", "verify", "--type", "sev-snp", "--roots", fifo, fifo}, "is a FIFO"},
		{[]string{"evidence", "verify", "--type", "sev-snp", "--vcek", fifo, fifo}, "is a FIFO"},
		{[]string{"daemon", "--config", fifo}, "is a FIFO"},
		{[]string{"measure", fifo}, "is a FIFO"},
		{[]string{"attest", "--key", filepath.Join(dir, "k.key"), "--region", "a=" + fifo, "-o", filepath.Join(dir, "o.cose")}, "is a FIFO"},
		{[]string{"attest", "--key", fifo, "--region", "a=" + filepath.Join(dir, "w.bin"), "-o", filepath.Join(dir, "o.cose")}, "FIFO"},
	} {
		var stdout, stderr bytes.Buffer
		done := make(chan int, 1)
		go func() { done <- run(tc.args, strings.NewReader(""), &stdout, &stderr) }()
		select {
		case code := <-done:
			if code != exitUsage || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("hvmon %s: exit %d, stderr %q; want 1 and %q", strings.Join(tc.args, " "), code, stderr.String(), tc.want)
			}
		case <-time.After(time.Minute): // a guard against a hang, not a timing assertion
			t.Fatalf("hvmon %s hangs", strings.Join(tc.args, " "))
		}
	}
	// The daemon's store with a FIFO, a directory and a symlink loop named
	// like reports: log list and log verify skip them.
	vmDir := filepath.Join(dir, "data", "reports", "vm-1")
	os.MkdirAll(vmDir, 0o750)
	h := strings.Repeat("ab", 32)
	syscall.Mkfifo(filepath.Join(vmDir, "1795780800001-00000000000000000000-boot-"+h+".cose"), 0o600)
	os.Mkdir(filepath.Join(vmDir, "1795780800002-00000000000000000001-boot-"+h+".cose"), 0o750)
	loop := filepath.Join(vmDir, "1795780800003-00000000000000000002-boot-"+h+".cose")
	os.Symlink(loop, loop)
	for _, args := range [][]string{{"log", "list", "--data-dir", filepath.Join(dir, "data")}, {"log", "verify", "--trust", pub, "--data-dir", filepath.Join(dir, "data")}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, nil, &stdout, &stderr); code != exitOK || strings.Contains(stdout.String(), h) {
			t.Errorf("hvmon %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, stdout.String(), stderr.String())
		}
	}
	// A history without anything odd still verifies.
	var stdout, stderr bytes.Buffer
	if code := run([]string{"verify", "--trust", pub, "--chain", hist}, nil, &stdout, &stderr); code != exitOK {
		t.Errorf("verify --chain of a plain history: exit %d: %s", code, stderr.String())
	}
}

// signedTestReport signs a small report with a key of its own, whose
// public half is dir/k.key.pub.
func signedTestReport(t *testing.T, dir string) []byte {
	t.Helper()
	os.WriteFile(filepath.Join(dir, "w.bin"), []byte("weights"), 0o644)
	out := filepath.Join(dir, "r.cose")
	var stderr bytes.Buffer
	if code := run([]string{"keygen", "-o", filepath.Join(dir, "k.key")}, nil, io.Discard, &stderr); code != 0 {
		t.Fatalf("keygen: %d %s", code, stderr.String())
	}
	if code := run([]string{"attest", "--key", filepath.Join(dir, "k.key"), "--region", "w=" + filepath.Join(dir, "w.bin"), "-o", out}, nil, io.Discard, &stderr); code != 0 {
		t.Fatalf("attest: %d %s", code, stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := attest.Inspect(b); err != nil {
		t.Fatal(err)
	}
	return b
}
