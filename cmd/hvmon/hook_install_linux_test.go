package main

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// TestHookInstallNothingElseInQemuD: libvirt runs every executable in
// qemu.d, so install and update must never make a name there other than
// the wrapper's, not even for a moment: the temporary file is written in
// the hooks directory and renamed into qemu.d.
func TestHookInstallNothingElseInQemuD(t *testing.T) {
	dir := t.TempDir()
	hooks := filepath.Join(dir, "hooks")
	qemuD := filepath.Join(hooks, "qemu.d")
	os.MkdirAll(qemuD, 0o755)
	bin := filepath.Join(dir, "hvmon")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)

	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		t.Skipf("inotify: %v", err)
	}
	defer syscall.Close(fd)
	if _, err := syscall.InotifyAddWatch(fd, qemuD, syscall.IN_CREATE|syscall.IN_MOVED_TO); err != nil {
		t.Fatal(err)
	}
	for _, flags := range [][]string{{"--fail-closed"}, nil} { // install, then update
		args := append([]string{"hook", "install", "--dir", hooks, "--binary", bin}, flags...)
		if code, _, stderr := runWith(nil, args...); code != 0 {
			t.Fatalf("%s = %d: %s", strings.Join(args, " "), code, stderr)
		}
	}
	var names []string
	buf := make([]byte, 64<<10)
	n, _ := syscall.Read(fd, buf) // the kernel queued the events as it acted
	for off := 0; off+syscall.SizeofInotifyEvent <= n; {
		l := int(binary.NativeEndian.Uint32(buf[off+12:]))
		names = append(names, strings.TrimRight(string(buf[off+syscall.SizeofInotifyEvent:][:l]), "\x00"))
		off += syscall.SizeofInotifyEvent + l
	}
	if !slices.Equal(names, []string{"hvmon", "hvmon"}) {
		t.Errorf("names that appeared in qemu.d = %q, want the wrapper's only, once per install", names)
	}
	if es, _ := os.ReadDir(hooks); len(es) != 1 {
		t.Errorf("the hooks directory holds %v, want qemu.d only", es)
	}
}
