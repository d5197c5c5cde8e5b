package tinyvm

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// BootOptions describe one QEMU process.
type BootOptions struct {
	// Dir holds the VM's sockets, pid file and console log; it must exist
	// and its path must be short (unix socket paths are limited to 107 bytes).
	Dir string
	// Accel is "kvm", "tcg" or "" (KVM when it runs guests here, else TCG:
	// see Boot). An explicit "kvm" never falls back.
	Accel string
	// MemoryMiB is the guest memory; 0 means 256.
	MemoryMiB int
	// Incoming, when set, starts QEMU waiting for a migration
	// (-incoming VALUE, e.g. "defer" or "unix:/path").
	Incoming string
	// ExtraQMP adds one more QMP socket for another client (hvmon's own,
	// next to the test's), named qmp2.sock.
	ExtraQMP bool
	// Binary is the QEMU binary; empty means qemu-system-x86_64.
	Binary string
	// KVMDevice is the KVM device Boot opens to decide whether to try KVM;
	// empty means /dev/kvm. (Tests put a stand-in for a broken one here.)
	KVMDevice string
	// Log receives the one line that says KVM was tried and could not run
	// the guest; nil discards it.
	Log hclog.Logger
	// KVMProbeTimeout bounds the wait for the first guest under KVM; zero
	// means DefaultKVMProbeTimeout.
	KVMProbeTimeout time.Duration
}

// VM is a running QEMU process.
type VM struct {
	Cmd        *exec.Cmd
	Dir        string
	QMPPath    string // the test's QMP socket
	QMP2Path   string // a second QMP socket, when ExtraQMP
	AgentPath  string // the host end of the agent's virtio-serial port
	SerialPath string // the console
	LogPath    string // QEMU's stderr
	Accel      string

	cmdMu   sync.Mutex // one console command at a time
	mu      sync.Mutex
	console bytes.Buffer
	serial  net.Conn
	exited  chan struct{}
	exitErr error
}

// DefaultKVMProbeTimeout bounds how long Boot waits for a guest under KVM to get
// ready before it decides that KVM cannot run guests here. A guest that
// runs under KVM is ready in a second or two; one that does not either
// makes QEMU exit at once or hangs in the kernel's decompressor.
const DefaultKVMProbeTimeout = 20 * time.Second

// The verdict on KVM, once Boot has tried it: per QEMU binary and KVM
// device, for the life of the process, so that a test run or a demo tries
// (and logs) it once.
var (
	accelMu    sync.Mutex
	accelKnown = map[string]string{}
)

// Boot starts QEMU on img. It returns once the QEMU process runs and its
// sockets exist; WaitReady waits for the guest.
//
// With Accel "" it uses KVM only when KVM actually runs a guest: the KVM
// device must open, and the first guest booted under KVM must get ready
// within the probe timeout. A KVM that opens but cannot run guests (nested
// virtualisation: QEMU aborts with "failed to set MSR", exits, or hangs)
// makes Boot fall back to TCG, say so in one log line, and remember it for
// later boots. A migration destination (Incoming) cannot show that its
// guest runs, so when the verdict is not known yet Boot first boots a
// throwaway guest to find out. With Accel "kvm" there is no fallback: a
// QEMU that cannot start under KVM is an error that quotes QEMU.
func Boot(ctx context.Context, img *Image, o BootOptions) (*VM, error) {
	switch o.Accel {
	case "tcg", "kvm":
		vm, err := boot(ctx, img, o, o.Accel)
		if err != nil && o.Accel == "kvm" {
			return nil, fmt.Errorf("QEMU cannot start a guest under KVM (%s): %w", o.kvmDevice(), err)
		}
		return vm, err
	case "":
	default:
		return nil, fmt.Errorf("unknown accelerator %q: want kvm, tcg or empty (KVM when it runs guests, else TCG)", o.Accel)
	}
	key := o.binary() + "\x00" + o.kvmDevice()
	// Boots wait for a probe in progress, not for each other.
	accelMu.Lock()
	accel, known := accelKnown[key]
	if !known {
		if f, err := os.OpenFile(o.kvmDevice(), os.O_RDWR, 0); err != nil {
			accel, known = "tcg", true
			accelKnown[key] = accel
		} else {
			f.Close()
		}
	}
	if known {
		accelMu.Unlock()
		return boot(ctx, img, o, accel)
	}
	defer accelMu.Unlock()
	probe := o
	if o.Incoming != "" {
		// The real VM waits for a migration and prints nothing: try KVM
		// on a throwaway guest in a directory of its own.
		dir, err := os.MkdirTemp(o.Dir, "kvm-probe")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		probe = BootOptions{Dir: dir, MemoryMiB: o.MemoryMiB, Binary: o.Binary, KVMProbeTimeout: o.KVMProbeTimeout}
	}
	vm, reason := probeKVM(ctx, img, probe)
	if ctx.Err() != nil {
		if vm != nil {
			vm.Kill()
		}
		return nil, ctx.Err()
	}
	if vm == nil {
		accelKnown[key] = "tcg"
		o.logger().Warn("KVM opens but cannot run guests here; using TCG (emulation, much slower)",
			"device", o.kvmDevice(), "reason", reason)
		return boot(ctx, img, o, "tcg")
	}
	accelKnown[key] = "kvm"
	if o.Incoming == "" {
		return vm, nil
	}
	vm.Kill()
	return boot(ctx, img, o, "kvm")
}

// probeKVM boots o under KVM and waits for the guest. It returns the
// running VM, or nil and why KVM did not run it (QEMU's last words).
func probeKVM(ctx context.Context, img *Image, o BootOptions) (*VM, string) {
	vm, err := boot(ctx, img, o, "kvm")
	if err != nil {
		if last := lastLine(filepath.Join(o.Dir, "qemu.log")); last != "" {
			return nil, "QEMU: " + last
		}
		return nil, err.Error()
	}
	timeout := cmp.Or(o.KVMProbeTimeout, DefaultKVMProbeTimeout)
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err = vm.WaitReady(wctx)
	if err == nil {
		return vm, ""
	}
	vm.Kill()
	if last := lastLine(vm.LogPath); last != "" {
		return nil, "QEMU: " + last
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Sprintf("the guest was not ready within %s", timeout)
	}
	return nil, "QEMU exited before the guest was ready"
}

// lastLine returns the first line QEMU wrote to its log that says why it
// stopped ("failed to set MSR ..."), or the last one.
func lastLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for _, l := range lines {
		if strings.Contains(l, "error") || strings.Contains(l, "failed") {
			return strings.TrimSpace(l)
		}
	}
	return strings.TrimSpace(lines[len(lines)-1])
}

func (o BootOptions) kvmDevice() string { return cmp.Or(o.KVMDevice, "/dev/kvm") }
func (o BootOptions) binary() string    { return cmp.Or(o.Binary, "qemu-system-x86_64") }

func (o BootOptions) logger() hclog.Logger {
	if o.Log == nil {
		return hclog.NewNullLogger()
	}
	return o.Log
}

func boot(ctx context.Context, img *Image, o BootOptions, accel string) (*VM, error) {
	mem := o.MemoryMiB
	if mem == 0 {
		mem = 256
	}
	bin := o.binary()
	vm := &VM{
		Dir: o.Dir, QMPPath: filepath.Join(o.Dir, "qmp.sock"), AgentPath: filepath.Join(o.Dir, "agent.sock"),
		SerialPath: filepath.Join(o.Dir, "serial.sock"), LogPath: filepath.Join(o.Dir, "qemu.log"),
		Accel: accel, exited: make(chan struct{}),
	}
	for _, p := range []string{vm.QMPPath, vm.AgentPath, vm.SerialPath} {
		os.Remove(p)
	}
	args := []string{
		"-machine", "q35", "-accel", accel, "-cpu", "max", "-m", strconv.Itoa(mem),
		"-nodefaults", "-display", "none", "-no-reboot",
		"-kernel", img.Kernel, "-initrd", img.Initramfs,
		"-append", "console=ttyS0 quiet panic=-1 mitigations=off",
		"-chardev", "socket,id=ser0,path=" + vm.SerialPath + ",server=on,wait=off",
		"-serial", "chardev:ser0",
		"-qmp", "unix:" + vm.QMPPath + ",server=on,wait=off",
		"-device", "virtio-serial-pci,id=vser0",
		"-chardev", "socket,id=agent0,path=" + vm.AgentPath + ",server=on,wait=off",
		"-device", "virtserialport,bus=vser0.0,chardev=agent0,name=org.hvmon.agent.0,id=agentport0",
	}
	if o.ExtraQMP {
		vm.QMP2Path = filepath.Join(o.Dir, "qmp2.sock")
		os.Remove(vm.QMP2Path)
		args = append(args, "-qmp", "unix:"+vm.QMP2Path+",server=on,wait=off")
	}
	if o.Incoming != "" {
		args = append(args, "-incoming", o.Incoming)
	}
	logf, err := os.Create(vm.LogPath)
	if err != nil {
		return nil, err
	}
	// The process outlives ctx on purpose: Kill tears it down.
	vm.Cmd = exec.Command(bin, args...)
	vm.Cmd.Stdout, vm.Cmd.Stderr = logf, logf
	vm.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := vm.Cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s (install qemu-system-x86): %w", bin, err)
	}
	go func() {
		vm.exitErr = vm.Cmd.Wait()
		logf.Close()
		close(vm.exited)
	}()
	// Wait for the sockets, then attach to the console.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(vm.SerialPath); err == nil {
			if _, err := os.Stat(vm.QMPPath); err == nil {
				break
			}
		}
		select {
		case <-vm.exited:
			b, _ := os.ReadFile(vm.LogPath)
			return nil, fmt.Errorf("qemu exited at start: %v: %s", vm.exitErr, b)
		case <-ctx.Done():
			vm.Kill()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			vm.Kill()
			return nil, errors.New("qemu did not create its sockets within 10 s")
		}
	}
	c, err := net.Dial("unix", vm.SerialPath)
	if err != nil {
		vm.Kill()
		return nil, err
	}
	vm.serial = c
	go vm.readConsole()
	return vm, nil
}

func (vm *VM) readConsole() {
	r := bufio.NewReader(vm.serial)
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		vm.mu.Lock()
		vm.console.Write(buf[:n])
		vm.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// Console returns everything the guest printed so far.
func (vm *VM) Console() string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.console.String()
}

// waitConsole waits until the console output after offset contains s.
func (vm *VM) waitConsole(ctx context.Context, offset int, s string) (int, error) {
	for {
		vm.mu.Lock()
		out := vm.console.String()
		vm.mu.Unlock()
		if i := strings.Index(out[min(offset, len(out)):], s); i >= 0 {
			return min(offset, len(out)) + i + len(s), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("waiting for %q on the guest console: %w; console so far:\n%s", s, ctx.Err(), tail(out, 2000))
		case <-vm.exited:
			return 0, fmt.Errorf("qemu exited (%v: %s) while waiting for %q; console:\n%s", vm.exitErr, lastLine(vm.LogPath), s, tail(out, 2000))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// WaitReady waits until the guest's init has started the agent.
func (vm *VM) WaitReady(ctx context.Context) error {
	_, err := vm.waitConsole(ctx, 0, MarkerReady)
	return err
}

// Run runs a shell command in the guest through its console and returns
// its exit status. It is how tests change guest memory.
func (vm *VM) Run(ctx context.Context, command string) (int, error) {
	_, status, err := vm.Output(ctx, command)
	return status, err
}

// Output runs a shell command in the guest and returns what it printed
// (with the console's carriage returns removed; kernel messages printed
// meanwhile would show up too) and its exit status. Commands are one line
// and run one at a time.
func (vm *VM) Output(ctx context.Context, command string) (string, int, error) {
	vm.cmdMu.Lock()
	defer vm.cmdMu.Unlock()
	vm.mu.Lock()
	offset := vm.console.Len()
	vm.mu.Unlock()
	if _, err := vm.serial.Write([]byte(command + "\n")); err != nil {
		return "", 0, err
	}
	begin, err := vm.waitConsole(ctx, offset, MarkerBegin)
	if err != nil {
		return "", 0, err
	}
	end, err := vm.waitConsole(ctx, begin, MarkerCommand+" ")
	if err != nil {
		return "", 0, err
	}
	// Wait for the status digits and the end of their line.
	if _, err := vm.waitConsole(ctx, end, "\n"); err != nil {
		return "", 0, err
	}
	console := vm.Console()
	var status int
	if _, err := fmt.Sscanf(console[end:], "%d", &status); err != nil {
		return "", 0, fmt.Errorf("unreadable status after %q: %q", MarkerCommand, tail(console[end:], 40))
	}
	out := console[begin : end-len(MarkerCommand)-1]
	out = strings.TrimLeft(strings.ReplaceAll(out, "\r", ""), "\n")
	return out, status, nil
}

// Exited is closed when the QEMU process has ended.
func (vm *VM) Exited() <-chan struct{} { return vm.exited }

// Kill ends QEMU by PID and waits for it.
func (vm *VM) Kill() {
	if vm.Cmd.Process != nil {
		vm.Cmd.Process.Kill()
	}
	<-vm.exited
	if vm.serial != nil {
		vm.serial.Close()
	}
}
