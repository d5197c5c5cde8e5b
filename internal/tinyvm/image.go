// Package tinyvm builds and boots the small QEMU guest that hvmon's
// integration tests and demo run: the host's Debian kernel (its PVH vmlinux,
// extracted at build time), and an initramfs with busybox-static, the virtio
// console modules and a static hvmon agent. Nothing it builds is committed.
package tinyvm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"hvmon.dev/hvmon/guest"
)

// Modules are the kernel modules the agent's virtio-serial port needs, in
// load order (virtio_console is a module in Debian's kernel).
var Modules = []string{"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "virtio_console"}

// Region is a file the guest's init creates in guest memory (/data is a
// RAM file system) for the agent to measure: Size bytes of the line
// Pattern+"\n" repeated, as `yes PATTERN | head -c SIZE` writes it.
type Region struct {
	ID      string
	Size    int64
	Pattern string
}

// Content returns the bytes the guest writes for r, so that hosts can
// compute the expected root.
func (r Region) Content() []byte {
	line := []byte(r.Pattern + "\n")
	return bytes.Repeat(line, int(r.Size)/len(line)+1)[:r.Size]
}

// Path is where the region's file lives in the guest.
func (r Region) Path() string { return "/data/" + r.ID }

// BuildOptions describe the image.
type BuildOptions struct {
	// Dir receives the image files; it must exist.
	Dir string
	// Kernel is a bzImage; empty means the newest /boot/vmlinuz-*.
	Kernel string
	// Agent is a static hvmon binary; empty means build ./cmd/hvmon from
	// the module root (ModuleRoot) with CGO_ENABLED=0.
	Agent      string
	ModuleRoot string
	// Busybox is a static busybox; empty means /bin/busybox.
	Busybox string
	// Evidence is the agent's evidence type ("none", "simulated-sev-snp", ...).
	Evidence string
	// SimulatedSeed (hex) seeds simulated evidence chains.
	SimulatedSeed string
	// SimulatedHostData (hex, 32 bytes) is the HOST_DATA simulated SEV-SNP
	// evidence reports: what a host sets at an SEV-SNP launch (hvmon sets
	// attest.VMIdentityHostData of the VM's name).
	SimulatedHostData string
	// Regions to create and measure.
	Regions []Region
}

// Image is a bootable guest.
type Image struct {
	Kernel    string // PVH vmlinux (ELF)
	Initramfs string // uncompressed newc cpio
	Version   string // kernel release
	Regions   []Region
}

// Build makes the image. It needs xz and cpio (xz-utils, cpio) and, for
// the default kernel, linux-image-amd64 and busybox-static.
func Build(ctx context.Context, o BuildOptions) (*Image, error) {
	if o.Kernel == "" {
		k, err := newestKernel()
		if err != nil {
			return nil, err
		}
		o.Kernel = k
	}
	release := strings.TrimPrefix(filepath.Base(o.Kernel), "vmlinuz-")
	if o.Busybox == "" {
		o.Busybox = "/bin/busybox"
	}
	if o.Evidence == "" {
		o.Evidence = "none"
	}
	img := &Image{Kernel: filepath.Join(o.Dir, "vmlinux"), Initramfs: filepath.Join(o.Dir, "initramfs.cpio"), Version: release, Regions: o.Regions}
	if err := extractVmlinux(ctx, o.Kernel, img.Kernel); err != nil {
		return nil, err
	}
	root := filepath.Join(o.Dir, "root")
	if err := os.RemoveAll(root); err != nil {
		return nil, err
	}
	for _, d := range []string{"bin", "proc", "sys", "dev", "data", "etc", "lib/modules", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := copyFile(o.Busybox, filepath.Join(root, "bin/busybox"), 0o755); err != nil {
		return nil, fmt.Errorf("busybox (install busybox-static): %w", err)
	}
	for _, m := range Modules {
		src, err := findModule(release, m)
		if err != nil {
			return nil, err
		}
		if err := copyFile(src, filepath.Join(root, "lib/modules", m+".ko"), 0o644); err != nil {
			return nil, err
		}
	}
	agent := filepath.Join(root, "bin/hvmon")
	if o.Agent != "" {
		if err := copyFile(o.Agent, agent, 0o755); err != nil {
			return nil, err
		}
	} else if err := BuildAgent(ctx, o.ModuleRoot, agent); err != nil {
		return nil, err
	}
	cfg := guest.Config{Evidence: o.Evidence, SimulatedSeed: o.SimulatedSeed, SimulatedHostData: o.SimulatedHostData}
	for _, r := range o.Regions {
		cfg.Regions = append(cfg.Regions, guest.RegionConfig{ID: r.ID, File: r.Path(), Protection: "RO", Description: "test region " + r.ID})
	}
	cj, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(root, "etc/hvmon-agent.json"), cj, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(root, "init"), []byte(initScript(o.Regions)), 0o755); err != nil {
		return nil, err
	}
	if err := writeCpio(ctx, root, img.Initramfs); err != nil {
		return nil, err
	}
	return img, nil
}

// BuildAgent builds a static hvmon binary for the guest. The guest's hvmon
// is the agent: it is built with the nologd tag so that it links none of
// the log server's storage.
func BuildAgent(ctx context.Context, moduleRoot, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-tags", "nologd", "-o", out, "./cmd/hvmon")
	cmd.Dir = moduleRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the static agent: %v\n%s", err, b)
	}
	return nil
}

// Marker lines the guest prints on its console.
const (
	MarkerReady   = "HVMON-GUEST-READY"
	MarkerBegin   = "HVMON-CMD-BEGIN"
	MarkerCommand = "HVMON-CMD-DONE"
)

// initScript is the guest's /init: mount, load modules, create regions,
// start the agent, then serve a shell on the console for tests (and the
// demo) to change guest memory the way a tampering process would.
func initScript(regions []Region) string {
	var b strings.Builder
	b.WriteString(`#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs -o size=90% data /data
`)
	for _, m := range Modules {
		fmt.Fprintf(&b, "insmod /lib/modules/%s.ko\n", m)
	}
	for _, r := range regions {
		fmt.Fprintf(&b, "yes %s | head -c %d > %s\n", shellQuote(r.Pattern), r.Size, r.Path())
	}
	b.WriteString(`/bin/hvmon agent --config /etc/hvmon-agent.json --log-level info 2>/dev/console &
echo ` + MarkerReady + `
while true; do
	while read -r line; do
		echo ` + MarkerBegin + `
		eval "$line"
		echo "` + MarkerCommand + ` $?"
	done </dev/console >/dev/console 2>&1
	sleep 1
done
`)
	return b.String()
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func newestKernel() (string, error) {
	ks, _ := filepath.Glob("/boot/vmlinuz-*")
	if len(ks) == 0 {
		return "", errors.New("no /boot/vmlinuz-*: install linux-image-amd64")
	}
	sort.Strings(ks)
	return ks[len(ks)-1], nil
}

func findModule(release, name string) (string, error) {
	for _, dir := range []string{"kernel/drivers/virtio", "kernel/drivers/char"} {
		p := filepath.Join("/lib/modules", release, dir, name+".ko")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("module %s.ko for kernel %s not found under /lib/modules (uncompressed modules expected)", name, release)
}

var xzMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}

// extractVmlinux finds the XZ stream inside a bzImage and decompresses it
// into the ELF vmlinux, which QEMU boots through its PVH note.
func extractVmlinux(ctx context.Context, bzImage, out string) error {
	data, err := os.ReadFile(bzImage)
	if err != nil {
		return err
	}
	i := bytes.Index(data, xzMagic)
	if i < 0 {
		return fmt.Errorf("%s: no XZ payload found", bzImage)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, "xz", "-dc", "--single-stream")
	cmd.Stdin = bytes.NewReader(data[i:])
	cmd.Stdout = f
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("decompressing the kernel (install xz-utils): %v: %s", err, stderr.String())
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err != nil || !bytes.Equal(magic, []byte("\x7fELF")) {
		return fmt.Errorf("%s: the XZ payload is not an ELF vmlinux", bzImage)
	}
	return nil
}

func writeCpio(ctx context.Context, root, out string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, "sh", "-c", "find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner=0:0 --quiet")
	cmd.Dir = root
	cmd.Stdout = f
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("writing the initramfs (install cpio): %v: %s", err, stderr.String())
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
