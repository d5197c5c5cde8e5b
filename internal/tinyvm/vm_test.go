package tinyvm

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// The test binary doubles as a stand-in QEMU (see fakeQEMU): Boot runs it
// through BootOptions.Binary, so the accelerator logic is tested without
// QEMU, and with a KVM that opens but cannot run guests in several ways.
const (
	envFake    = "TINYVM_FAKE_QEMU"     // set: this process is the fake QEMU
	envKVMMode = "TINYVM_FAKE_KVM_MODE" // what "-accel kvm" does: abort, abort-late, hang, exit, ok
	envCalls   = "TINYVM_FAKE_CALLS"    // a file the fake appends its accelerator to, one line a run
)

func TestMain(m *testing.M) {
	if os.Getenv(envFake) != "" {
		os.Exit(fakeQEMU(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeQEMU behaves like qemu-system-x86_64 as far as Boot can tell: it
// listens on the console, QMP and agent sockets and prints the guest's
// ready marker on the console — unless it runs under "kvm" in a broken
// mode, where it does what QEMU does on a nested-virt host whose /dev/kvm
// opens: abort at start with QEMU's message, abort after creating its
// sockets, exit quietly, or hang with a guest that never gets anywhere.
func fakeQEMU(args []string) int {
	var accel string
	var sockets []string
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-accel":
			accel = args[i+1]
		case "-chardev":
			for _, kv := range strings.Split(args[i+1], ",") {
				if p, ok := strings.CutPrefix(kv, "path="); ok {
					sockets = append(sockets, p)
				}
			}
		case "-qmp":
			p := strings.TrimPrefix(strings.Split(args[i+1], ",")[0], "unix:")
			sockets = append(sockets, p)
		}
	}
	if f, err := os.OpenFile(os.Getenv(envCalls), os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600); err == nil {
		fmt.Fprintln(f, accel)
		f.Close()
	}
	mode := "ok"
	if accel == "kvm" {
		mode = os.Getenv(envKVMMode)
	}
	msr := "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\nqemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed."
	switch mode {
	case "abort":
		fmt.Fprintln(os.Stderr, msr)
		return 134
	case "exit":
		return 1
	}
	var lns []net.Listener
	for _, p := range sockets {
		l, err := net.Listen("unix", p)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		lns = append(lns, l)
	}
	switch mode {
	case "abort-late":
		time.Sleep(100 * time.Millisecond)
		fmt.Fprintln(os.Stderr, msr)
		return 134
	case "hang":
		select {}
	}
	// The first socket is the console: the guest comes up and says so.
	for {
		c, err := lns[0].Accept()
		if err != nil {
			return 1
		}
		fmt.Fprintf(c, "[    0.000000] Linux version (fake)\r\n%s\r\n", MarkerReady)
	}
}

// logLines collects what an hclog.Logger writes.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logLines) lines(substr string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.buf.String(), "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}

type fakeRig struct {
	t     *testing.T
	opts  BootOptions
	log   *logLines
	calls string
}

// newRig sets the fake QEMU up with mode for KVM and a KVM device that
// opens (a regular file: the stand-in for a /dev/kvm that opens but may
// not run guests). Each rig has its own device path, so the verdict Boot
// remembers per binary and device is the rig's own.
func newRig(t *testing.T, mode string) *fakeRig {
	t.Setenv(envFake, "1")
	t.Setenv(envKVMMode, mode)
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	t.Setenv(envCalls, calls)
	dev := filepath.Join(dir, "kvm")
	if err := os.WriteFile(dev, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	log := &logLines{}
	return &fakeRig{t: t, log: log, calls: calls, opts: BootOptions{
		Binary: self, KVMDevice: dev, KVMProbeTimeout: time.Second,
		Log: hclog.New(&hclog.LoggerOptions{Output: log, Level: hclog.Info}),
	}}
}

// boot boots with o (Dir filled in) and registers the VM's teardown.
func (r *fakeRig) boot(o BootOptions) (*VM, error) {
	r.t.Helper()
	dir, err := os.MkdirTemp("", "tvm")
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { os.RemoveAll(dir) })
	o.Dir = dir
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vm, err := Boot(ctx, &Image{Kernel: "vmlinux", Initramfs: "initrd"}, o)
	if vm != nil {
		r.t.Cleanup(vm.Kill)
	}
	return vm, err
}

// runs returns the accelerators the fake QEMU was started with, in order.
func (r *fakeRig) runs() []string {
	b, err := os.ReadFile(r.calls)
	if err != nil {
		return nil
	}
	return strings.Fields(string(b))
}

func (r *fakeRig) waitReady(vm *VM) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return vm.WaitReady(ctx)
}

const fallbackLine = "KVM opens but cannot run guests here; using TCG"

// TestBootFallsBackToTCG: whatever way a KVM that opens fails to run the
// guest — QEMU aborts at start (the MSR assertion seen on nested-virt
// hosts), aborts after creating its sockets, exits, or hangs — an
// automatic boot runs the guest under TCG, says so in exactly one log line
// (with QEMU's reason when it gave one), and later boots go straight to
// TCG without trying KVM again.
func TestBootFallsBackToTCG(t *testing.T) {
	for _, tc := range []struct{ mode, reason string }{
		{"abort", "failed to set MSR 0x10a"},
		{"abort-late", "failed to set MSR 0x10a"},
		{"exit", "exit"},
		{"hang", "not ready within"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			r := newRig(t, tc.mode)
			vm, err := r.boot(r.opts)
			if err != nil {
				t.Fatalf("Boot with a broken KVM (%s): %v; want a fallback to TCG", tc.mode, err)
			}
			if vm.Accel != "tcg" {
				t.Fatalf("Accel = %q, want tcg", vm.Accel)
			}
			if err := r.waitReady(vm); err != nil {
				t.Fatalf("WaitReady after the fallback: %v", err)
			}
			lines := r.log.lines(fallbackLine)
			if len(lines) != 1 || !strings.Contains(lines[0], tc.reason) {
				t.Fatalf("fallback log lines = %q, want one naming %q", lines, tc.reason)
			}
			// The verdict is remembered: no second try, no second line.
			vm2, err := r.boot(r.opts)
			if err != nil || vm2.Accel != "tcg" {
				t.Fatalf("second Boot: accel %v, err %v; want tcg", vm2, err)
			}
			if got := r.runs(); strings.Join(got, ",") != "kvm,tcg,tcg" {
				t.Errorf("QEMU runs = %v, want kvm,tcg,tcg", got)
			}
			if n := len(r.log.lines(fallbackLine)); n != 1 {
				t.Errorf("%d fallback log lines after two boots, want 1", n)
			}
		})
	}
}

// TestBootIncomingProbesFirst: a migration destination prints nothing
// until the migration arrives, so it cannot show that KVM runs it. When
// the verdict is not known yet, Boot tries KVM on a throwaway guest and
// starts the destination with the accelerator that worked.
func TestBootIncomingProbesFirst(t *testing.T) {
	r := newRig(t, "abort-late")
	o := r.opts
	o.Incoming = "defer"
	vm, err := r.boot(o)
	if err != nil {
		t.Fatal(err)
	}
	if vm.Accel != "tcg" {
		t.Fatalf("incoming VM under %q, want tcg", vm.Accel)
	}
	if got := r.runs(); strings.Join(got, ",") != "kvm,tcg" {
		t.Errorf("QEMU runs = %v, want the kvm probe then tcg", got)
	}
	if entries, _ := os.ReadDir(vm.Dir); len(entries) == 0 {
		t.Errorf("the incoming VM's directory is empty")
	} else {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "kvm-probe") {
				t.Errorf("the probe's directory %s was left behind", e.Name())
			}
		}
	}

	// With KVM working, the probe succeeds and the destination runs KVM.
	r = newRig(t, "ok")
	o = r.opts
	o.Incoming = "defer"
	vm, err = r.boot(o)
	if err != nil || vm.Accel != "kvm" {
		t.Fatalf("incoming boot with a working KVM: %v, %v", vm, err)
	}
}

// TestBootExplicitKVMFailsLoudly: --accel kvm never falls back; QEMU's
// own message reaches the caller, at start or while waiting for the guest.
func TestBootExplicitKVMFailsLoudly(t *testing.T) {
	r := newRig(t, "abort")
	o := r.opts
	o.Accel = "kvm"
	_, err := r.boot(o)
	if err == nil || !strings.Contains(err.Error(), "failed to set MSR 0x10a") || !strings.Contains(err.Error(), "KVM") {
		t.Fatalf("Boot with --accel kvm on a broken KVM: %v; want an error quoting QEMU", err)
	}
	if got := r.runs(); strings.Join(got, ",") != "kvm" {
		t.Errorf("QEMU runs = %v, want only kvm", got)
	}

	r = newRig(t, "abort-late")
	o = r.opts
	o.Accel = "kvm"
	vm, err := r.boot(o)
	if err != nil {
		t.Fatalf("Boot: %v (QEMU had started)", err)
	}
	if err := r.waitReady(vm); err == nil || !strings.Contains(err.Error(), "failed to set MSR 0x10a") {
		t.Fatalf("WaitReady under a KVM that aborts: %v; want QEMU's message", err)
	}
	if len(r.log.lines(fallbackLine)) != 0 {
		t.Errorf("an explicit kvm logged a fallback")
	}
}

// TestBootAccel: a KVM that runs guests is used; a KVM device that does
// not open is not tried; an unknown accelerator is refused.
func TestBootAccel(t *testing.T) {
	r := newRig(t, "ok")
	vm, err := r.boot(r.opts)
	if err != nil || vm.Accel != "kvm" {
		t.Fatalf("working KVM: %v, %v", vm, err)
	}
	if n := len(r.log.lines(fallbackLine)); n != 0 {
		t.Errorf("a working KVM logged a fallback")
	}

	r = newRig(t, "abort")
	o := r.opts
	o.KVMDevice = filepath.Join(t.TempDir(), "absent")
	vm, err = r.boot(o)
	if err != nil || vm.Accel != "tcg" {
		t.Fatalf("no KVM device: %v, %v", vm, err)
	}
	if got := r.runs(); strings.Join(got, ",") != "tcg" {
		t.Errorf("QEMU runs = %v, want tcg only", got)
	}

	o.Accel = "hvf"
	if _, err := r.boot(o); err == nil || !strings.Contains(err.Error(), "unknown accelerator") {
		t.Errorf("accel hvf: %v", err)
	}
}
