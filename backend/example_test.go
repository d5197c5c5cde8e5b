package backend_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/backend"
	"hvmon.dev/hvmon/measure"
)

func ExampleNewFile() {
	dir, _ := os.MkdirTemp("", "hvmon-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "model.bin")
	os.WriteFile(path, make([]byte, 10000), 0o644)

	f, _ := backend.NewFile([]backend.FileRegion{
		{ID: "whole", Path: path},
		{ID: "head", Path: path, Offset: 0, Length: 4096},
	})
	regions, _ := f.Regions(context.Background(), "vm-1")
	for _, r := range regions {
		s, _ := f.Snapshot(context.Background(), "vm-1", r)
		fmt.Println(r.ID, s.Size, s.Root == measure.Bytes(make([]byte, s.Size)))
	}
	// Output:
	// whole 10000 true
	// head 4096 true
}

func ExampleMemory() {
	m := backend.NewMemory()
	m.Register("vm-1", attest.Region{ID: "kv-cache", Protection: "RW"}, []byte("cache"))
	before, _ := m.Snapshot(context.Background(), "vm-1", attest.Region{ID: "kv-cache"})
	m.Write("vm-1", "kv-cache", 0, []byte("C"))
	after, _ := m.Snapshot(context.Background(), "vm-1", attest.Region{ID: "kv-cache"})
	fmt.Println(before.Root == after.Root)
	// Output: false
}
