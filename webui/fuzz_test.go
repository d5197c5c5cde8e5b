package webui

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hvmon.dev/hvmon/attest"
)

// urlSeeds returns the URL inputs the view parses: the hashes of the
// chain vectors' reports, their VM names, and hostile variants.
func urlSeeds(t testing.TB) []string {
	paths, err := filepath.Glob(filepath.Join(chainDir, "*", "*.cose"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no seed reports under %s (%v)", chainDir, err)
	}
	seeds := []string{"vm-1", "vm-2", "..", "%2e%2e", "a/b", "<script>", strings.Repeat("f", 65), "", "\x00"}
	for _, p := range paths[:min(len(paths), 8)] {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		h := attest.ReportHash(b).String()
		seeds = append(seeds, h, strings.ToUpper(h), h[:63], h+"0")
	}
	return seeds
}

// FuzzParseHash: ParseHash accepts exactly 64 lowercase hex digits, and
// what it accepts prints back unchanged.
func FuzzParseHash(f *testing.F) {
	for _, s := range urlSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseHash(s)
		if err != nil {
			return
		}
		if d.String() != s {
			t.Fatalf("ParseHash(%q) = %s: not the input", s, d)
		}
	})
}

// FuzzServe sends any path to the view's routes: it never fails with a
// 5xx, always sets the CSP, and never echoes a script element.
func FuzzServe(f *testing.F) {
	srv, _ := newTestServer(f, false, "clean")
	for _, s := range urlSeeds(f) {
		for _, prefix := range []string{"/vm/", "/report/", "/api/vm/", "/api/report/"} {
			f.Add(prefix + s)
		}
	}
	f.Fuzz(func(t *testing.T, p string) {
		u, err := url.Parse("http://hvmon.test" + p)
		if err != nil || !strings.HasPrefix(p, "/") {
			return
		}
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.URL = u
		req.RequestURI = u.RequestURI()
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("GET %q: %d\n%s", p, rec.Code, rec.Body)
		}
		if rec.Header().Get("Content-Security-Policy") != ContentSecurityPolicy {
			t.Fatalf("GET %q: no CSP", p)
		}
		if strings.Contains(rec.Body.String(), "<script") {
			t.Fatalf("GET %q: a script element in the answer:\n%s", p, rec.Body)
		}
	})
}
