package webui

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/policy"
)

func TestFleetPage(t *testing.T) {
	srv, _ := demoServer(t)
	res, body := get(t, srv, "GET", "/")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %d %s", res.StatusCode, body)
	}
	for _, want := range []string{
		`<a href="/vm/vm-1">vm-1</a>`, `<a href="/vm/vm-2">vm-2</a>`,
		"<td>hv-a, hv-b</td>", "shutdown on hv-b", "periodic on hv-a",
		`<span class="badge contraindicated">contraindicated</span>`, `<span class="badge affirming">affirming</span>`,
		"<td>52m</td>", // 13:00 minus vm-1's last report at 12:08
		"no log",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /: want %q in the page:\n%s", want, body)
		}
	}
	checkHeaders(t, "/", res)
	if ct := res.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("GET /: Content-Type %q", ct)
	}
}

func checkHeaders(t *testing.T, path string, res *http.Response) {
	t.Helper()
	for k, want := range map[string]string{
		"Content-Security-Policy": ContentSecurityPolicy,
		"X-Content-Type-Options":  "nosniff",
		"X-Frame-Options":         "DENY",
		"Cache-Control":           "no-store",
	} {
		if got := res.Header.Get(k); got != want {
			t.Errorf("GET %s: header %s = %q, want %q", path, k, got, want)
		}
	}
}

func TestFleetAPI(t *testing.T) {
	srv, s := demoServer(t)
	// One report of vm-1 refused by a log labelled "main": the fleet
	// counts it.
	es, err := s.List(context.Background(), hostQuery("vm-1"))
	if err != nil || len(es) != 8 {
		t.Fatalf("listing vm-1: %d entries, %v", len(es), err)
	}
	if err := s.MarkRefused(context.Background(), es[0], "main", 413, "too large"); err != nil {
		t.Fatal(err)
	}
	res, body := get(t, srv, "GET", "/api/fleet")
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /api/fleet: %d %s %s", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	var f Fleet
	if err := json.Unmarshal([]byte(body), &f); err != nil {
		t.Fatal(err)
	}
	if f.Status != policy.Contraindicated || f.Reports != 11 || len(f.VMs) != 2 || len(f.Logs) != 1 || f.Logs[0] != "main" {
		t.Fatalf("GET /api/fleet: status %s, %d reports, %d VMs, logs %v; want contraindicated, 11, 2, [main]", f.Status, f.Reports, len(f.VMs), f.Logs)
	}
	vm1 := f.VMs[0]
	if vm1.VM != "vm-1" || strings.Join(vm1.Hosts, ",") != "hv-a,hv-b" || vm1.LastEvent != attest.EventShutdown || vm1.AgeSeconds != 52*60 {
		t.Errorf("vm-1 summary %+v", vm1)
	}
	if want := (LogSummary{Label: "main", Refused: 1, Pending: 7}); len(vm1.Logs) != 1 || vm1.Logs[0] != want {
		t.Errorf("vm-1 logs %+v, want [%+v]", vm1.Logs, want)
	}
	_, page := get(t, srv, "GET", "/")
	if !strings.Contains(page, "main: 0/8 (1 refused)") {
		t.Errorf("GET /: want the log column main: 0/8 (1 refused) in\n%s", page)
	}
}

// TestVMPageVectors renders the VM page of each chain vector and checks
// the timeline's marks against the vector's findings: one mark per report,
// migration arrows, restore links, and the rollback, fork and gap marks.
func TestVMPageVectors(t *testing.T) {
	for _, name := range vectorNames(t) {
		t.Run(name, func(t *testing.T) {
			srv, _ := newTestServer(t, false, name)
			var want struct {
				VMs      []string `json:"vms"`
				Status   policy.Status
				Findings []struct{ Check, Reason, Subject string }
			}
			b, err := os.ReadFile(filepath.Join(chainDir, name, "want.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &want); err != nil {
				t.Fatal(err)
			}
			has := func(reason string) bool {
				for _, f := range want.Findings {
					if f.Reason == reason {
						return true
					}
				}
				return false
			}
			_, fleet := get(t, srv, "GET", "/")
			for _, vm := range want.VMs {
				res, body := get(t, srv, "GET", "/vm/"+vm)
				if res.StatusCode != http.StatusOK {
					t.Fatalf("GET /vm/%s: %d\n%s", vm, res.StatusCode, body)
				}
				if !strings.Contains(fleet, `<a href="/vm/`+vm+`">`) {
					t.Errorf("fleet page does not list %s", vm)
				}
				var api VM
				_, js := get(t, srv, "GET", "/api/vm/"+vm)
				if err := json.Unmarshal([]byte(js), &api); err != nil {
					t.Fatal(err)
				}
				marks := strings.Count(body, `<circle class="mark `)
				if marks != len(api.Events) || marks == 0 {
					t.Errorf("%s: %d marks for %d events", vm, marks, len(api.Events))
				}
				count := func(needle string) int { return strings.Count(body, needle) }
				ins, outs := 0, 0
				for _, e := range api.Events {
					switch e.Event {
					case attest.EventMigrateIn:
						ins++
					case attest.EventMigrateOut:
						outs++
					}
				}
				if got, w := count(`<line class="migration `), min(ins, outs); got != w {
					t.Errorf("%s: %d migration arrows, want %d", vm, got, w)
				}
				if has(policy.ReasonMigrationMismatch) && count(`<line class="migration contraindicated"`) != 1 {
					t.Errorf("%s: want the mismatched migration's arrow contraindicated", vm)
				}
				for _, flag := range []string{policy.ReasonRollback, policy.ReasonRewind, policy.ReasonFork} {
					if got := count(`<circle class="flag ` + flag + `"`); (got > 0) != has(flag) {
						t.Errorf("%s: %d %s mark(s); want.json has %s: %v", vm, got, flag, flag, has(flag))
					}
				}
				if got := count(`<g class="gap">`); (got > 0) != has(policy.ReasonGap) {
					t.Errorf("%s: %d gap mark(s); want.json has a gap: %v", vm, got, has(policy.ReasonGap))
				}
				// The store keeps a report once (its name is its hash), so
				// the duplicate vector's warning cannot happen here.
				if api.Status != want.Status && len(want.VMs) == 1 && name != "duplicate" {
					t.Errorf("%s: status %s, want %s", vm, api.Status, want.Status)
				}
				if !strings.Contains(body, `id="vm-status">`+string(api.Status)+`<`) {
					t.Errorf("%s: the page's status badge is not %s", vm, api.Status)
				}
			}
		})
	}
}

func TestVMPageLifecycle(t *testing.T) {
	srv, _ := demoServer(t)
	_, body := get(t, srv, "GET", "/vm/vm-1")
	for _, want := range []string{
		`<text x="8" y="`, ">hv-a</text>", ">hv-b</text>", // one lane per host
		`<line class="migration affirming"`, "migration hv-a → hv-b (#3 → #4): affirming",
		`<path class="restore-link"`, "restore #7 back to the snapshot #5",
		`<circle class="flag rollback"`, `>rollback</text>`,
		`<a href="/report/`, "No report of this VM names changed pages.",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /vm/vm-1: want %q in\n%s", want, body)
		}
	}
}

func TestDriftView(t *testing.T) {
	srv, _ := demoServer(t)
	_, body := get(t, srv, "GET", "/vm/"+driftVM)
	// 64 pages over 640 units: pages 3–5 are x 260+30, 30 wide.
	for _, want := range []string{
		`<rect class="changed" x="290" y="5" width="30" height="16"><title>pages 3–5</title>`,
		`<rect class="changed" x="360" y="5" width="10" height="16"><title>page 10</title>`,
		`<rect class="changed" x="260" y="35" width="10" height="16"><title>page 0</title>`,
		"pages 3–5, page 10", "#2 periodic · weights",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /vm/%s: want %q in\n%s", driftVM, want, body)
		}
	}
	var api VM
	_, js := get(t, srv, "GET", "/api/vm/"+driftVM)
	if err := json.Unmarshal([]byte(js), &api); err != nil {
		t.Fatal(err)
	}
	if len(api.Drift) != 2 || api.Drift[0].Pages != 64 || api.Drift[0].Text() != "pages 3–5, page 10" {
		t.Errorf("GET /api/vm/%s: drift %+v", driftVM, api.Drift)
	}
}

func TestReportPage(t *testing.T) {
	srv, _ := demoServer(t)
	var vm VM
	_, js := get(t, srv, "GET", "/api/vm/vm-1")
	if err := json.Unmarshal([]byte(js), &vm); err != nil {
		t.Fatal(err)
	}
	restore := vm.Events[6]
	if restore.Event != attest.EventRestore {
		t.Fatalf("event 7 of vm-1 is %s, want restore", restore.Event)
	}
	res, body := get(t, srv, "GET", "/report/"+restore.Hash.String())
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET report: %d\n%s", res.StatusCode, body)
	}
	checkHeaders(t, "/report/…", res)
	for _, want := range []string{
		"<td class=\"d0\">report hash</td><td><code>" + restore.Hash.String() + "</code>",
		`<td class="d0">event</td><td><code>restore</code>`,
		`<th colspan="2" class="d0">host observations</th>`,
		`<td class="d1">fact job_type</td><td><code>snapshot-load</code>`,
		`<th colspan="2" class="d0">guest evidence</th>`,
		`<th colspan="2" class="d1">region weights</th>`,
		`<td class="d3">size</td>`,
		`<tr class="check pass"><td>signature</td>`,
		`<span class="badge contraindicated">contraindicated</span></td><td>rollback</td>`,
		`id="report-status">contraindicated<`,
		"No log proof",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /report/%s: want %q in\n%s", restore.Hash, want, body)
		}
	}
	var rep Report
	_, js = get(t, srv, "GET", "/api/report/"+restore.Hash.String())
	if err := json.Unmarshal([]byte(js), &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.Valid || rep.Status != policy.Contraindicated || len(rep.Fields) < 20 || len(rep.Checks) == 0 {
		t.Errorf("GET /api/report: valid %v, status %s, %d fields, %d checks", rep.Valid, rep.Status, len(rep.Fields), len(rep.Checks))
	}
}

// TestUntrustedReport: a report under a key the view does not trust is
// listed as unverified, and its page says so and still shows its fields.
func TestUntrustedReport(t *testing.T) {
	srv, s := demoServer(t)
	srv.opts.Verify.TrustedKeys = srv.opts.Verify.TrustedKeys[:1] // hv-a only
	_, fleet := get(t, srv, "GET", "/")
	if !strings.Contains(fleet, "Reports that did not verify") || !strings.Contains(fleet, "under vm-1") {
		t.Errorf("fleet page does not list hv-b's reports as unverified:\n%s", fleet)
	}
	es, err := s.List(context.Background(), hostQuery("vm-1"))
	if err != nil {
		t.Fatal(err)
	}
	_, body := get(t, srv, "GET", "/report/"+es[len(es)-1].Hash.String())
	for _, want := range []string{`id="report-status">did not verify<`, "Verification failed:", "UNVERIFIED: every field", `<tr class="check fail"><td>trust</td>`} {
		if !strings.Contains(body, want) {
			t.Errorf("untrusted report page: want %q in\n%s", want, body)
		}
	}
}

func TestReadOnlyAndBounded(t *testing.T) {
	srv, _ := demoServer(t)
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{"POST", "/", http.StatusMethodNotAllowed},
		{"PUT", "/vm/vm-1", http.StatusMethodNotAllowed},
		{"DELETE", "/api/fleet", http.StatusMethodNotAllowed},
		{"HEAD", "/", http.StatusOK},
		{"GET", "/vm/vm-9", http.StatusNotFound},
		{"GET", "/vm/..%2F..%2Fetc%2Fpasswd", http.StatusBadRequest},
		{"GET", "/vm/%3Cscript%3E", http.StatusBadRequest},
		{"GET", "/api/vm/a%00b", http.StatusBadRequest},
		{"GET", "/report/zz", http.StatusBadRequest},
		{"GET", "/report/" + strings.Repeat("A", 64), http.StatusBadRequest},
		{"GET", "/report/" + strings.Repeat("0", 64), http.StatusNotFound},
		{"GET", "/api/report/" + strings.Repeat("0", 64), http.StatusNotFound},
		{"GET", "/static/../../go.mod", http.StatusTemporaryRedirect}, // to /go.mod, cleaned
		{"GET", "/go.mod", http.StatusNotFound},
		{"GET", "/nothing", http.StatusNotFound},
		{"GET", "/vm/" + strings.Repeat("a", 2000), http.StatusRequestURITooLong},
	} {
		res, body := get(t, srv, tc.method, tc.path)
		if res.StatusCode != tc.code {
			t.Errorf("%s %s: %d, want %d\n%s", tc.method, tc.path, res.StatusCode, tc.code, body)
		}
		if res.Header.Get("Content-Security-Policy") != ContentSecurityPolicy {
			t.Errorf("%s %s: no CSP", tc.method, tc.path)
		}
		if strings.Contains(body, "<script") {
			t.Errorf("%s %s: the answer holds a script element:\n%s", tc.method, tc.path, body)
		}
	}
	// The error page escapes what the URL said.
	_, body := get(t, srv, "GET", "/vm/"+url.PathEscape(`"><script>alert(1)</script>`))
	if strings.Contains(body, "<script>") || !strings.Contains(body, "&lt;script&gt;") {
		t.Errorf("error page does not escape the VM name:\n%s", body)
	}
}

func TestNoScriptsOrExternalAssets(t *testing.T) {
	srv, _ := demoServer(t)
	ref := regexp.MustCompile(`(?:href|src)="([^"]*)"`)
	for _, p := range []string{"/", "/vm/vm-1", "/vm/" + driftVM} {
		_, body := get(t, srv, "GET", p)
		if strings.Contains(body, "<script") || strings.Contains(body, " style=") {
			t.Errorf("GET %s: a script or inline style (the CSP forbids both)", p)
		}
		for _, m := range ref.FindAllStringSubmatch(body, -1) {
			if !strings.HasPrefix(m[1], "/") || strings.HasPrefix(m[1], "//") {
				t.Errorf("GET %s: reference %q leaves the view", p, m[1])
			}
		}
	}
}
