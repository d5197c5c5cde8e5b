package backend

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/internal/boundedfile"
	"hvmon.dev/hvmon/measure"
	"hvmon.dev/hvmon/measure/fileregion"
)

func TestFile(t *testing.T) {
	dir := t.TempDir()
	data := bytes.Repeat([]byte("0123456789abcdef"), 1000) // 16000 bytes
	path := filepath.Join(dir, "weights.bin")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := NewFile([]FileRegion{{ID: "all", Path: path}, {ID: "mid", Path: path, Offset: 4000, Length: 5000}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rs, err := f.Regions(ctx, "w")
	if err != nil || len(rs) != 2 || rs[1].Source != "file:"+path || *rs[1].Address != 4000 {
		t.Fatalf("Regions = %+v, %v", rs, err)
	}
	for i, want := range [][]byte{data, data[4000:9000]} {
		s, err := f.Snapshot(ctx, "w", rs[i])
		if err != nil {
			t.Fatal(err)
		}
		if s.Root != measure.Bytes(want) || s.Size != uint64(len(want)) || s.PageSize != measure.PageSize || s.RegionID != rs[i].ID {
			t.Errorf("Snapshot(%s) = %+v, want root %s size %d", rs[i].ID, s, measure.Bytes(want), len(want))
		}
	}
	// A range past the end of the file is an error, not a shorter measurement.
	past, _ := NewFile([]FileRegion{{ID: "past", Path: path, Offset: 15000, Length: 2000}})
	var re *fileregion.RangeError
	if _, err := past.Snapshot(ctx, "w", attest.Region{ID: "past"}); !errors.As(err, &re) {
		t.Errorf("Snapshot of a range past the end = %v, want a RangeError", err)
	}
	// A directory, or a FIFO no one writes, is refused at once.
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, fifo} {
		other, _ := NewFile([]FileRegion{{ID: "d", Path: p}})
		if _, err := other.Snapshot(ctx, "w", attest.Region{ID: "d"}); !errors.Is(err, boundedfile.ErrNotRegular) {
			t.Errorf("Snapshot(%s) = %v, want ErrNotRegular", p, err)
		}
	}
	if _, err := f.Snapshot(ctx, "w", attest.Region{ID: "nope"}); !errors.Is(err, ErrNoRegion) {
		t.Errorf("Snapshot(unknown region) = %v, want ErrNoRegion", err)
	}
	for name, regions := range map[string][]FileRegion{
		"duplicate": {{ID: "a", Path: path}, {ID: "a", Path: path}},
		"bad id":    {{ID: "a=b", Path: path}},
		"no path":   {{ID: "a"}},
		"negative":  {{ID: "a", Path: path, Offset: -1}},
		"overflow":  {{ID: "a", Path: path, Offset: math.MaxInt64 - 10, Length: 11}},
	} {
		if _, err := NewFile(regions); !errors.Is(err, attest.ErrInvalidRegion) {
			t.Errorf("NewFile(%s) = %v, want ErrInvalidRegion", name, err)
		}
	}
}

func TestFileAttestation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w")
	os.WriteFile(path, []byte("weights"), 0o644)
	f, _ := NewFile([]FileRegion{{ID: "w0", Path: path}})
	k, _ := attest.NewKeyFromSeed(make([]byte, 32))
	s, err := (&attest.Attester{Signer: k}).Attest(context.Background(), f, attest.Request{Workload: "host", Event: attest.EventOnDemand})
	if err != nil {
		t.Fatal(err)
	}
	res, err := attest.Verify(s.Bytes, attest.VerifyOptions{TrustedKeys: []*attest.PublicKey{k.PublicKey()}, Strict: true,
		Expected: []attest.Expectation{{RegionID: "w0", Roots: []attest.Digest{measure.Bytes([]byte("weights"))}}}})
	if err != nil || res.Report.Claims[0].Region.Size != 7 {
		t.Fatalf("Verify = %v, %+v", err, res)
	}
	os.Remove(path)
	_, err = (&attest.Attester{Signer: k}).Attest(context.Background(), f, attest.Request{Workload: "host", Event: attest.EventOnDemand})
	var be *attest.BackendError
	if !errors.As(err, &be) || be.Region != "w0" || be.Op != "snapshot" {
		t.Errorf("Attest(missing file) = %v, want a snapshot BackendError for w0", err)
	}
}

func TestMemory(t *testing.T) {
	m := NewMemory()
	ctx := context.Background()
	if _, err := m.Regions(ctx, "w"); err == nil {
		t.Error("Regions of an unknown workload succeeded")
	}
	if err := m.Register("w", attest.Region{ID: "r", Size: 3}, []byte("four")); !errors.Is(err, attest.ErrInvalidRegion) {
		t.Errorf("Register(size mismatch) = %v", err)
	}
	if err := m.Register("w", attest.Region{ID: "r"}, []byte("four")); err != nil {
		t.Fatal(err)
	}
	if err := m.Write("w", "r", 2, []byte("xyz")); err == nil {
		t.Error("Write past the end succeeded")
	}
	if err := m.Write("w", "q", 0, []byte("x")); !errors.Is(err, ErrNoRegion) {
		t.Errorf("Write(unknown region) = %v", err)
	}
	before, _ := m.Snapshot(ctx, "w", attest.Region{ID: "r"})
	m.Write("w", "r", 0, []byte("F"))
	after, _ := m.Snapshot(ctx, "w", attest.Region{ID: "r"})
	if before.Root == after.Root || after.Root != measure.Bytes([]byte("Four")) {
		t.Errorf("Write did not change the measured content")
	}
	// Register keeps its own copy.
	buf := []byte("abc")
	m.Register("w", attest.Region{ID: "c"}, buf)
	buf[0] = 'X'
	s, _ := m.Snapshot(ctx, "w", attest.Region{ID: "c"})
	if s.Root != measure.Bytes([]byte("abc")) {
		t.Error("Register aliases the caller's buffer")
	}
}
