package webui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/internal/keyfile"
	"hvmon.dev/hvmon/webui"
)

// Example serves the view over a store holding the clean chain vector
// (vm-1 boots on hv-a and migrates to hv-b) and reads the fleet as JSON.
func Example() {
	dir, _ := os.MkdirTemp("", "webui-example")
	defer os.RemoveAll(dir)
	store, _ := host.NewFileStore(dir)
	paths, _ := filepath.Glob("../policy/testdata/chain/clean/*.cose")
	for _, p := range paths {
		b, _ := os.ReadFile(p)
		in, _ := attest.Inspect(b)
		store.Put(context.Background(), in.Report.Workload, b, in.Report)
	}
	var keys []*attest.PublicKey
	for _, n := range []string{"host.pub", "other.pub"} {
		k, _ := keyfile.LoadPublic(filepath.Join("..", "testdata", "keys", n))
		keys = append(keys, k)
	}
	srv, err := webui.New(webui.Options{Store: store, Verify: attest.VerifyOptions{TrustedKeys: keys},
		Now: func() time.Time { return time.Date(2026, 11, 27, 13, 0, 0, 0, time.UTC) }})
	if err != nil {
		fmt.Println(err)
		return
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest("GET", "/api/fleet", nil))
	var f webui.Fleet
	json.Unmarshal(rec.Body.Bytes(), &f)
	for _, vm := range f.VMs {
		fmt.Println(vm.VM, vm.Hosts, vm.Reports, vm.LastEvent, vm.Status, vm.AgeSeconds)
	}
	// Output: vm-1 [hv-a hv-b] 7 shutdown affirming 3180
}

func ExampleParseHash() {
	_, err := webui.ParseHash("../../etc/passwd")
	fmt.Println(err)
	// Output: report hash "../../etc/passwd": want 64 lowercase hex digits
}
