package host

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"hvmon.dev/hvmon/attest"
)

// TestStoreLongAndOddNames: VM names that escape to more than a file name
// may hold (1000 bytes; 500 two-byte characters; 1024 dots) are stored
// under a directory of at most 255 bytes, and listed and found under their
// own names; names that differ only after the kept prefix do not share a
// directory.
func TestStoreLongAndOddNames(t *testing.T) {
	dir := t.TempDir()
	s, _ := NewFileStore(dir)
	k, _ := attest.NewKeyFromSeed(make([]byte, 32))
	ctx := context.Background()
	names := []string{
		strings.Repeat("a", 1000), strings.Repeat("a", 999) + "b", strings.Repeat("é", 500),
		strings.Repeat(".", 1024), "%~" + strings.Repeat("0", 64), "vm\x00\n\u202e",
	}
	for i, vm := range names {
		b, r := testSigned(t, k, vm, 0, attest.EventBoot, testNow.Add(time.Duration(i)*time.Second))
		e, err := s.Put(ctx, vm, b, r)
		if err != nil {
			t.Fatalf("Put(%.20q…) = %v", vm, err)
		}
		if d := filepath.Base(filepath.Dir(e.Path)); len(d) > 255 || !filepathWithin(dir, e.Path) {
			t.Errorf("VM %.20q… stored in a directory name of %d bytes", vm, len(d))
		}
		if got, _, err := s.Get(ctx, e.Hash); err != nil || !bytes.Equal(got, b) {
			t.Errorf("Get(%.20q…) = %v", vm, err)
		}
	}
	for _, vm := range names {
		es, err := s.List(ctx, Query{VM: vm})
		if err != nil || len(es) != 1 || es[0].VM != vm {
			t.Errorf("List(%.20q…) = %d entries, %v", vm, len(es), err)
		}
	}
	// A name file that does not hash to its directory is not believed.
	es, _ := s.List(ctx, Query{VM: names[0]})
	os.WriteFile(filepath.Join(filepath.Dir(es[0].Path), vmNameFile), []byte(names[1]), 0o640)
	if es, _ := s.List(ctx, Query{VM: names[1]}); len(es) != 1 {
		t.Errorf("a forged name file made %d reports another VM's", len(es)-1)
	}
	// Names no report can carry are refused, not stored under a mangled name.
	b, r := testSigned(t, k, "x", 0, attest.EventBoot, testNow)
	for _, vm := range []string{"", strings.Repeat("x", 1025), "bad \xff"} {
		if _, err := s.Put(ctx, vm, b, r); err == nil {
			t.Errorf("Put(%.20q) accepted", vm)
		}
	}
}

// TestStoreSkipsNonRegularFiles: a FIFO, a directory, a device node and a
// symlink loop named like reports are skipped by List, which neither hangs
// nor fails; Get of a report whose file became a FIFO fails at once.
func TestStoreSkipsNonRegularFiles(t *testing.T) {
	dir := t.TempDir()
	s, _ := NewFileStore(dir)
	k, _ := attest.NewKeyFromSeed(make([]byte, 32))
	ctx := context.Background()
	b, r := testSigned(t, k, "vm-1", 0, attest.EventBoot, testNow)
	e, err := s.Put(ctx, "vm-1", b, r)
	if err != nil {
		t.Fatal(err)
	}
	vmDir := filepath.Dir(e.Path)
	h := strings.Repeat("ab", 32)
	fifo := filepath.Join(vmDir, "1795780800001-00000000000000000001-boot-"+h+".cose")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(vmDir, "1795780800002-00000000000000000002-boot-"+h+".cose"), 0o755)
	loop := filepath.Join(vmDir, "1795780800003-00000000000000000003-boot-"+h+".cose")
	os.Symlink(loop, loop)
	os.Symlink("/dev/zero", filepath.Join(vmDir, "1795780800004-00000000000000000004-boot-"+h+".cose"))
	syscall.Mkfifo(filepath.Join(dir, "reports", "fifo-vm"), 0o600)
	es, err := s.List(ctx, Query{})
	if err != nil || len(es) != 1 || es[0].Hash != e.Hash {
		t.Fatalf("List = %+v, %v; want only the report", es, err)
	}
	os.Remove(e.Path)
	syscall.Mkfifo(e.Path, 0o600)
	// List now skips it; Get, reading a path it listed before, must not hang.
	if _, _, err := s.Get(ctx, e.Hash); err == nil {
		t.Fatal("Get of a FIFO succeeded")
	}
}

// TestSupervisorLongVMName: the longest VM name the rule allows gets its
// reports stored, verified and chained; a longer one, a multibyte one or
// one that is not UTF-8 is refused when the VM is added, with a message of
// bounded length (the store's own safety for names that bypass the rule is
// TestStoreLongAndOddNames).
func TestSupervisorLongVMName(t *testing.T) {
	r := newRig(t)
	r.sup.Close()
	sup, err := New(Options{Signer: r.key, HostName: "hv", Store: r.store})
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Close()
	ctx := context.Background()
	name := strings.Repeat("v", attest.MaxVMName)
	if err := sup.Add(ctx, VMConfig{Name: name, QMP: r.qemu.Path, Agent: r.agent.Path}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { v := sup.VMs(); return len(v) == 1 && v[0].Connected })
	for seq := range 2 {
		e, err := sup.Attest(ctx, name, attest.EventOnDemand, nil)
		if err != nil {
			t.Fatal(err)
		}
		res := r.verify(e)
		if res.Report.Workload != name || res.Guest == nil || res.Report.Seq != uint64(seq) {
			t.Fatalf("report %d: workload of %d bytes, guest evidence %v, seq %d", seq, len(res.Report.Workload), res.Guest != nil, res.Report.Seq)
		}
	}
	for _, bad := range []string{strings.Repeat("x", attest.MaxVMName+1), strings.Repeat("ü", 512), strings.Repeat("x", 100000), "vm\xff"} {
		err := sup.Add(ctx, VMConfig{Name: bad, QMP: r.qemu.Path})
		if !errors.Is(err, attest.ErrInvalidVMName) {
			t.Errorf("Add(%.20q) = %v, want ErrInvalidVMName", bad, err)
		} else if len(err.Error()) > 1024 {
			t.Errorf("Add(%.20q): a message of %d bytes", bad, len(err.Error()))
		}
	}
}
