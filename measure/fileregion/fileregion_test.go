package fileregion

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"hvmon.dev/hvmon/internal/boundedfile"
	"hvmon.dev/hvmon/measure"
)

func writeFile(t *testing.T, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "weights.bin")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestOpen: a range measures to the fingerprint of exactly its bytes,
// through Root and through Measure; size 0 runs to the end of the file.
func TestOpen(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 1000) // 16000 bytes
	path := writeFile(t, data)
	for _, tc := range []struct {
		off, size int64
		want      []byte
	}{
		{0, 0, data},
		{0, 16000, data},
		{4000, 5000, data[4000:9000]},
		{4096, 0, data[4096:]},
		{15000, 1000, data[15000:]},
		{16000, 0, nil},
		{100, 1, data[100:101]},
	} {
		r, err := Open(path, tc.off, tc.size)
		if err != nil {
			t.Fatalf("Open(%d, %d) = %v", tc.off, tc.size, err)
		}
		want := measure.Bytes(tc.want)
		root, err := measure.Root(context.Background(), r, nil)
		if err != nil || root != want || r.Size() != int64(len(tc.want)) {
			t.Errorf("Open(%d, %d): Root = %s, %v, size %d; want %s, size %d", tc.off, tc.size, root, err, r.Size(), want, len(tc.want))
		}
		tree, err := measure.Measure(context.Background(), r, &measure.Options{Workers: 3})
		if err != nil || tree.Root() != want {
			t.Errorf("Open(%d, %d): Measure = %v, %v; want %s", tc.off, tc.size, tree, err, want)
		}
		if err := r.Close(); err != nil {
			t.Errorf("Close = %v", err)
		}
	}
	// Through a symlink, a regular file is measured.
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(path, link)
	r, err := Open(link, 0, 0)
	if err != nil {
		t.Fatalf("Open(symlink to a file) = %v", err)
	}
	defer r.Close()
	if root, err := measure.Root(context.Background(), r, nil); err != nil || root != measure.Bytes(data) {
		t.Errorf("Open(symlink to a file): Root = %s, %v", root, err)
	}
}

// TestOpenRefusesNonRegular: a FIFO no one writes, a directory, a device
// and a socket are refused at once, each named in the error. Opening the
// FIFO with a plain open(2) would wait for a writer forever.
func TestOpenRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "dir")
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
		done := make(chan error, 1)
		go func() {
			r, err := Open(tc.path, 0, 0)
			if err == nil {
				r.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			var e *boundedfile.Error
			if !errors.Is(err, boundedfile.ErrNotRegular) || !errors.As(err, &e) || e.Kind != tc.kind ||
				!strings.Contains(err.Error(), tc.path+" is "+tc.kind+", not a regular file") {
				t.Errorf("Open(%s) = %v, want ErrNotRegular naming %s", tc.path, err, tc.kind)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Open(%s) still blocks after 10 s", tc.path)
		}
	}
}

// TestOpenRange: a range that does not lie inside the file is a
// *RangeError, never a shorter measurement.
func TestOpenRange(t *testing.T) {
	path := writeFile(t, make([]byte, 5000))
	for _, tc := range []struct {
		off, size int64
		want      RangeError
	}{
		{0, 5001, RangeError{Path: path, Offset: 0, Length: 5001, FileSize: 5000}},
		{4000, 2000, RangeError{Path: path, Offset: 4000, Length: 2000, FileSize: 5000}},
		{5001, 0, RangeError{Path: path, Offset: 5001, Length: 0, FileSize: 5000}},
		{6000, 1, RangeError{Path: path, Offset: 6000, Length: 1, FileSize: 5000}},
	} {
		_, err := Open(path, tc.off, tc.size)
		var re *RangeError
		if !errors.As(err, &re) || *re != tc.want {
			t.Errorf("Open(%d, %d) = %v, want %+v", tc.off, tc.size, err, tc.want)
		}
	}
	if _, err := Open(path, 0, 5001); err == nil || err.Error() != "range [0, 5001) exceeds "+path+" (5000 bytes)" {
		t.Errorf("Open(past the end) = %v", err)
	}
	for _, r := range [][2]int64{{-1, 0}, {0, -1}} {
		if _, err := Open(path, r[0], r[1]); err == nil {
			t.Errorf("Open(%d, %d) accepted", r[0], r[1])
		}
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing"), 0, 0); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(missing) = %v, want ErrNotExist", err)
	}
}

// TestReadErrorNamesFile: a file that shrinks after Open fails the
// measurement with ErrShortRead and its path.
func TestReadErrorNamesFile(t *testing.T) {
	path := writeFile(t, make([]byte, 3*measure.PageSize))
	r, err := Open(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := os.Truncate(path, measure.PageSize); err != nil {
		t.Fatal(err)
	}
	if _, err := measure.Root(context.Background(), r, nil); !errors.Is(err, measure.ErrShortRead) || !strings.Contains(err.Error(), path) {
		t.Errorf("Root(truncated file) = %v, want ErrShortRead naming %s", err, path)
	}
}
