package webui

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowser loads the fleet, a VM and a report page of the demo store in
// a real headless Chromium and checks what it shows: the VM names, the
// migration arrow, the drift range and the rollback mark. It saves a
// screenshot of each page (PNG) into $HVMON_SCREENSHOTS, or a temporary
// directory.
//
// Without Chromium it skips, unless HVMON_REQUIRE_BROWSER=1 (as
// scripts/test.sh sets it), where a missing browser fails.
func TestBrowser(t *testing.T) {
	exe := os.Getenv("HVMON_CHROMIUM")
	if exe == "" {
		for _, n := range []string{"chromium", "chromium-browser", "google-chrome"} {
			if p, err := exec.LookPath(n); err == nil {
				exe = p
				break
			}
		}
	}
	if exe == "" {
		if os.Getenv("HVMON_REQUIRE_BROWSER") == "1" {
			t.Fatal("HVMON_REQUIRE_BROWSER=1 but no chromium on PATH (scripts/deps.sh installs Debian's chromium)")
		}
		t.Skip("no chromium on PATH; set HVMON_REQUIRE_BROWSER=1 to make this a failure")
	}
	shots := os.Getenv("HVMON_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	srv, _ := demoServer(t)
	ts := httptest.NewServer(srv)
	defer ts.Close()

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // as root in a container; the page is our own
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()

	// The first Run starts the browser; it lives as long as ctx.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting %s: %v", exe, err)
	}
	tctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(tctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(tctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	count := func(sel string) int {
		t.Helper()
		n, err := chromedp.Run(tctx, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", sel)))
		if err != nil {
			t.Fatalf("counting %s: %v", sel, err)
		}
		return n
	}
	eval := func(expr string) string {
		t.Helper()
		s, err := chromedp.Run(tctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("evaluating %s: %v", expr, err)
		}
		return s
	}
	shot := func(name string) {
		t.Helper()
		b, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		p := filepath.Join(shots, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s (%d bytes)", p, len(b))
	}

	// The fleet page: both VMs, their hosts and verdicts.
	do("fleet page", chromedp.Navigate(ts.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#fleet")))
	fleet := text("#fleet")
	shot("fleet.png")
	for _, want := range []string{"vm-1", driftVM, "hv-a, hv-b", "contraindicated", "affirming", "shutdown on hv-b"} {
		if !strings.Contains(fleet, want) {
			t.Errorf("fleet page shows %q; want it to show %q", fleet, want)
		}
	}

	// vm-1: a migration arrow from hv-a's lane to hv-b's, a rollback mark
	// at the restore, the restore linked to its snapshot.
	do("VM page", chromedp.Navigate(ts.URL+"/vm/vm-1"), chromedp.WaitVisible(chromedp.CSS("#timeline")))
	migrations := count("#timeline line.migration")
	arrowTitle := eval(`document.querySelector("#timeline line.migration title").textContent`)
	rollbacks := count("#timeline circle.flag.rollback")
	rollbackText := eval(`document.querySelector("#timeline text.flag-label").textContent`)
	restores := count("#timeline path.restore-link")
	// The arrow must be drawn: a box of some width and height, from
	// hv-a's lane down to hv-b's.
	height := eval(`String(document.querySelector("#timeline line.migration").getBoundingClientRect().height)`)
	shot("vm-1.png")
	if migrations != 1 || !strings.Contains(arrowTitle, "hv-a → hv-b") {
		t.Errorf("vm-1 timeline: %d migration arrow(s), first titled %q; want 1, from hv-a to hv-b", migrations, arrowTitle)
	}
	if h, err := strconv.ParseFloat(height, 64); err != nil || h < 40 {
		t.Errorf("migration arrow's rendered height %q: want it drawn across lanes (≥ 40 px)", height)
	}
	if rollbacks != 1 || rollbackText != "rollback" {
		t.Errorf("vm-1 timeline: %d rollback mark(s) labelled %q; want 1 labelled rollback", rollbacks, rollbackText)
	}
	if restores != 1 {
		t.Errorf("vm-1 timeline: %d restore link(s); want 1 (the restore back to the snapshot)", restores)
	}
	href := eval(`document.querySelector("#timeline circle.flag.rollback").closest("a").getAttribute("href")`)

	// vm-2: the drift view draws pages 3–5 and page 10 over 64 pages.
	do("drift page", chromedp.Navigate(ts.URL+"/vm/"+driftVM), chromedp.WaitVisible(chromedp.CSS("#drift")))
	changed := count("#drift rect.changed")
	driftText := eval(`document.querySelector("#drift").textContent`)
	width := eval(`String(document.querySelector("#drift rect.changed").getBoundingClientRect().width)`)
	shot("vm-2-drift.png")
	if changed != 3 || !strings.Contains(driftText, "pages 3–5, page 10") {
		t.Errorf("vm-2 drift view: %d changed range(s), text %q; want 3 ranges and \"pages 3–5, page 10\"", changed, driftText)
	}
	// Pages 3–5 of 64 over a 640-unit bar: 30 units.
	if w, err := strconv.ParseFloat(width, 64); err != nil || w < 25 || w > 35 {
		t.Errorf("drift range pages 3–5 drawn %q wide; want 30 (3/64 of 640)", width)
	}

	// The report page of the restore that rolled vm-1 back.
	do("report page", chromedp.Navigate(ts.URL+href), chromedp.WaitVisible(chromedp.CSS("#fields")))
	fields, checks, status := text("#fields"), text("#checks"), text("#report-status")
	shot("report.png")
	for _, want := range []string{"restore", "vm-1", "guest evidence", "fact job_type", "snapshot-load"} {
		if !strings.Contains(fields, want) {
			t.Errorf("report page %s fields: want %q in %q", href, want, fields)
		}
	}
	if !strings.Contains(checks, "signature") || !strings.Contains(checks, "pass") {
		t.Errorf("report page %s checks: %q; want the signature check passing", href, checks)
	}
	if status != "contraindicated" {
		t.Errorf("report page %s status %q; want contraindicated (the rollback)", href, status)
	}

	// The fork and gap vectors, each in a store of its own: the fork's
	// second report at host seq 1 is ringed, the gap drawn before the
	// report after it.
	for _, tc := range []struct{ vector, sel string }{
		{"fork", "#timeline circle.flag.fork"},
		{"gap", "#timeline g.gap line"},
	} {
		vs, _ := newTestServer(t, false, tc.vector)
		vts := httptest.NewServer(vs)
		do(tc.vector+" page", chromedp.Navigate(vts.URL+"/vm/vm-1"), chromedp.WaitVisible(chromedp.CSS("#timeline")))
		n := count(tc.sel)
		shot("vm-1-" + tc.vector + ".png")
		vts.Close()
		if n != 1 {
			t.Errorf("%s vector: %d × %s; want 1", tc.vector, n, tc.sel)
		}
	}
}
