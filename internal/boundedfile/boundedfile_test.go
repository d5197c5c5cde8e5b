package boundedfile

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestRefusesWhatIsNotARegularFile: a FIFO no one writes, a directory, a
// device, a socket and a symlink loop are refused at once, with a clear
// error; a file over the bound is refused without being read whole.
func TestRefusesWhatIsNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.cose")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	loop := filepath.Join(dir, "loop")
	os.Symlink(loop, loop)
	sub := filepath.Join(dir, "dir.cose")
	os.Mkdir(sub, 0o755)
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, tc := range []struct {
		path, kind string
	}{{fifo, "a FIFO"}, {sub, "a directory"}, {"/dev/zero", "a character device"}, {sock, "a socket"}} {
		_, err := Read(tc.path, 1<<20)
		var e *Error
		if !errors.Is(err, ErrNotRegular) || !errors.As(err, &e) || e.Kind != tc.kind {
			t.Errorf("Read(%s) = %v, want ErrNotRegular naming %s", tc.path, err, tc.kind)
		}
	}
	if _, err := Read(loop, 1<<20); !errors.Is(err, syscall.ELOOP) {
		t.Errorf("Read(a symlink loop) = %v, want ELOOP", err)
	}
	big := filepath.Join(dir, "big")
	os.WriteFile(big, bytes.Repeat([]byte("x"), 1001), 0o600)
	if _, err := Read(big, 1000); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Read(1001 bytes, max 1000) = %v, want ErrTooLarge", err)
	}
	if b, err := Read(big, 1001); err != nil || len(b) != 1001 {
		t.Errorf("Read(1001 bytes, max 1001) = %d bytes, %v", len(b), err)
	}
	// Through a symlink, a regular file is read.
	link := filepath.Join(dir, "link")
	os.Symlink(big, link)
	if b, err := Read(link, 2000); err != nil || len(b) != 1001 {
		t.Errorf("Read(symlink to a file) = %d bytes, %v", len(b), err)
	}
}
