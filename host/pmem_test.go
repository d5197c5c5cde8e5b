package host

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"hvmon.dev/hvmon/internal/boundedfile"
	"hvmon.dev/hvmon/measure"
	"hvmon.dev/hvmon/measure/fileregion"
)

// TestMeasurePmemFile: the host measures the size bytes pmemsave wrote; a
// shorter file is an error, and a FIFO or a directory put in the file's
// place is refused at once instead of blocking the VM's worker.
func TestMeasurePmemFile(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	mem := bytes.Repeat([]byte("guest-physical "), 700)
	path := filepath.Join(dir, "low.bin")
	os.WriteFile(path, mem[:5000], 0o600)
	if root, err := measureFile(ctx, path, 5000); err != nil || root != measure.Bytes(mem[:5000]) {
		t.Errorf("measureFile(5000 bytes) = %s, %v; want %s", root, err, measure.Bytes(mem[:5000]))
	}
	var re *fileregion.RangeError
	if _, err := measureFile(ctx, path, 5001); !errors.As(err, &re) {
		t.Errorf("measureFile(a file shorter than the region) = %v, want a RangeError", err)
	}
	fifo := filepath.Join(dir, "fifo.bin")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fifo, dir} {
		done := make(chan error, 1)
		go func() { _, err := measureFile(ctx, p, 4096); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, boundedfile.ErrNotRegular) {
				t.Errorf("measureFile(%s) = %v, want ErrNotRegular", p, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("measureFile(%s) still blocks after 10 s", p)
		}
	}
}
