//go:build integration

package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/internal/tinyvm"
)

// TestBrokenKVMFallsBackToTCG boots the real test guest on a stand-in for
// the nested-virt host that hvmon's users run: a KVM device that opens (a
// regular file), and a QEMU that, asked for KVM, aborts the way QEMU does
// there ("failed to set MSR 0x10a", SIGABRT) or never gets the guest
// going. Whatever this machine's own /dev/kvm does, the guest must come up
// under TCG, run a command, and the fallback must be one warning that
// names QEMU's reason; an explicit kvm must fail with QEMU's message.
func TestBrokenKVMFallsBackToTCG(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatalf("qemu-system-x86_64: %v (make test installs qemu-system-x86)", err)
	}
	dir := t.TempDir()
	dev := filepath.Join(dir, "kvm")
	if err := os.WriteFile(dev, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, onKVM, reason string }{
		{"abort", `echo 'qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69' >&2; kill -ABRT $$`, "failed to set MSR 0x10a"},
		// QEMU starts, the guest's CPUs never run: what a stuck
		// decompressor looks like from outside.
		// (Under TCG with -S, since this machine's own KVM may abort.)
		{"hang", `for a do shift; [ "$a" = kvm ] && a=tcg; set -- "$@" "$a"; done; exec ` + qemu + ` "$@" -S`, "not ready within"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wrapper := filepath.Join(dir, "qemu-"+tc.name)
			script := "#!/bin/sh\ncase \" $* \" in *' -accel kvm '*) " + tc.onKVM + " ;; esac\nexec " + qemu + " \"$@\"\n"
			if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			var log lockedBuffer
			logger := hclog.New(&hclog.LoggerOptions{Output: &log, Level: hclog.Warn})
			vdir, err := os.MkdirTemp("", "hvmon-kvm")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(vdir)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			o := tinyvm.BootOptions{Dir: vdir, Binary: wrapper, KVMDevice: dev, Log: logger, KVMProbeTimeout: 5 * time.Second}
			vm, err := tinyvm.Boot(ctx, image, o)
			if err != nil {
				t.Fatalf("Boot on a broken KVM (%s): %v", tc.name, err)
			}
			defer vm.Kill()
			if vm.Accel != "tcg" {
				t.Fatalf("accel %q, want tcg", vm.Accel)
			}
			if err := vm.WaitReady(ctx); err != nil {
				t.Fatalf("the guest under TCG after the fallback: %v", err)
			}
			out, status, err := vm.Output(ctx, "echo fallback-ok")
			if err != nil || status != 0 || !strings.Contains(out, "fallback-ok") {
				t.Fatalf("running a command in the guest: %q %d %v", out, status, err)
			}
			var lines []string
			for _, l := range strings.Split(log.String(), "\n") {
				if strings.Contains(l, "KVM opens but cannot run guests") {
					lines = append(lines, l)
				}
			}
			if len(lines) != 1 || !strings.Contains(lines[0], tc.reason) {
				t.Fatalf("fallback warnings %q, want one naming %q; whole log:\n%s", lines, tc.reason, log.String())
			}
			t.Logf("fallback: %s", lines[0])

			o.Accel, o.Dir = "kvm", filepath.Join(vdir, "x")
			os.Mkdir(o.Dir, 0o755)
			kctx, kcancel := context.WithTimeout(ctx, 10*time.Second)
			defer kcancel()
			kvm, err := tinyvm.Boot(kctx, image, o)
			if err == nil {
				err = kvm.WaitReady(kctx)
				kvm.Kill()
			}
			if err == nil {
				t.Fatalf("an explicit kvm ran the guest on a broken KVM")
			}
			t.Logf("explicit kvm: %.200s", err)
		})
	}
}
