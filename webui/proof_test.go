package webui

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"hvmon.dev/hvmon/tlog"
	"hvmon.dev/hvmon/tlog/tlogtest"
)

// testLog returns an in-memory log for origin and its policy.
func testLog(t *testing.T, origin string) (*tlogtest.Log, *tlog.Policy) {
	t.Helper()
	k, err := tlog.NewKeyFromSeed(origin, sha256.Sum256([]byte("log "+origin)))
	if err != nil {
		t.Fatal(err)
	}
	lv, err := tlog.LogVerifier(k.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	opts := tlog.SignerOptions{Now: func() time.Time { return testNow }, Deterministic: true}
	return tlogtest.New(k, opts), &tlog.Policy{Log: lv}
}

// TestLogProofs: with a log policy, the view verifies the proof files
// beside the reports: one from the log verifies, one from another log
// does not, and both pages say so.
func TestLogProofs(t *testing.T) {
	srv, s := demoServer(t)
	main, pol := testLog(t, "log.example/main")
	other, _ := testLog(t, "log.example/other")
	srv.opts.Log = pol
	es, err := s.List(context.Background(), hostQuery("vm-1"))
	if err != nil {
		t.Fatal(err)
	}
	for i, lg := range []*tlogtest.Log{main, other} {
		b, err := os.ReadFile(es[i].Path)
		if err != nil {
			t.Fatal(err)
		}
		idx, err := lg.Append([]byte("filler"), b)
		if err != nil {
			t.Fatal(err)
		}
		cp, err := lg.Publish()
		if err != nil {
			t.Fatal(err)
		}
		proof, err := lg.Proof(idx+1, cp)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.PutProof(context.Background(), es[i], "main", proof); err != nil {
			t.Fatal(err)
		}
	}
	var f Fleet
	_, js := get(t, srv, "GET", "/api/fleet")
	if err := json.Unmarshal([]byte(js), &f); err != nil {
		t.Fatal(err)
	}
	want := LogSummary{Label: "main", Logged: 2, Pending: 6, Verified: 1, Failed: 1}
	if got := f.VMs[0].Logs; len(got) != 1 || got[0] != want {
		t.Errorf("vm-1 logs %+v, want [%+v]", got, want)
	}
	_, page := get(t, srv, "GET", "/")
	if !strings.Contains(page, "main: 2/8, 1 proof(s) verified, <strong") {
		t.Errorf("fleet page: want the proof counts in\n%s", page)
	}
	_, ok := get(t, srv, "GET", "/report/"+es[0].Hash.String())
	if !strings.Contains(ok, `<span class="badge affirming">verified</span> index 1 of tree size 2`) {
		t.Errorf("report page of the logged report: want its proof verified at index 1 of 2 in\n%s", ok)
	}
	_, bad := get(t, srv, "GET", "/report/"+es[1].Hash.String())
	if !strings.Contains(bad, "does not verify") {
		t.Errorf("report page of the report logged elsewhere: want its proof refused in\n%s", bad)
	}
}
