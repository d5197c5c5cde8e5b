package logd

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/tlog"
)

// fakeReader serves every tile and bundle as its own path, and records the
// last coordinates asked for.
type fakeReader struct {
	level, index uint64
	width        uint8
	entries      bool
}

func (f *fakeReader) ReadCheckpoint(context.Context) ([]byte, error) { return []byte("cp\n"), nil }
func (f *fakeReader) ReadTile(_ context.Context, l, i uint64, w uint8) ([]byte, error) {
	if i == 404 {
		return nil, os.ErrNotExist
	}
	f.level, f.index, f.width, f.entries = l, i, w, false
	return []byte(tlog.TilePath(l, i, w)), nil
}
func (f *fakeReader) ReadEntryBundle(_ context.Context, i uint64, w uint8) ([]byte, error) {
	f.level, f.index, f.width, f.entries = 0, i, w, true
	return []byte(tlog.EntriesPath(i, w)), nil
}
func (f *fakeReader) NextIndex(context.Context) (uint64, error)      { return 0, nil }
func (f *fakeReader) IntegratedSize(context.Context) (uint64, error) { return 0, nil }

func readServer(r *fakeReader) *Server {
	return &Server{reader: r, log: hclog.NewNullLogger(), metrics: NewMetrics(nil)}
}

func get(h http.Handler, method, target string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, "http://log.example"+target, nil))
	return w
}

func TestTileHandler(t *testing.T) {
	h := readServer(&fakeReader{}).Handler()
	for _, p := range []string{"/tile/0/000", "/tile/3/x001/x234/067", "/tile/0/005.p/7", "/tile/entries/000.p/255", "/tile/entries/x999/999"} {
		w := get(h, "GET", p)
		if w.Code != http.StatusOK || "/"+w.Body.String() != p || w.Header().Get("Content-Type") != "application/octet-stream" {
			t.Errorf("GET %s: %d %q", p, w.Code, w.Body)
		}
		immutable := w.Header().Get("Cache-Control") == "max-age=31536000, immutable"
		if immutable == strings.Contains(p, ".p/") {
			t.Errorf("GET %s: Cache-Control %q", p, w.Header().Get("Cache-Control"))
		}
	}
	for _, p := range []string{
		"/tile/0/1", "/tile/0/0001", "/tile/0/x000/001", "/tile/0/000.p/0", "/tile/0/000.p/256", "/tile/0/000.p/07",
		"/tile/64/000", "/tile/-1/000", "/tile/entries/000/", "/tile/0/../000", "/tile/0/000?x=1", "/tile/", "/tile/entries",
		"/tile/0/404", "/tiles/0/000", "/checkpoint/x", "/",
	} {
		if w := get(h, "GET", p); w.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, w.Code)
		}
	}
	for _, m := range []string{"POST", "PUT", "DELETE"} {
		for _, p := range []string{"/tile/0/000", PathCheckpoint, PathHealth} {
			if w := get(h, m, p); w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") == "" {
				t.Errorf("%s %s: %d, want 405 with Allow", m, p, w.Code)
			}
		}
	}
	if w := get(h, "GET", PathCheckpoint); w.Code != http.StatusOK || w.Body.String() != "cp\n" || w.Header().Get("Cache-Control") != "no-cache" {
		t.Errorf("GET /checkpoint: %d %q %v", w.Code, w.Body, w.Header())
	}
}

// FuzzTileHandler: the handler serves exactly the canonical tile paths,
// and asks the reader for the coordinates the path names.
func FuzzTileHandler(f *testing.F) {
	for _, p := range []string{"tile/0/000", "tile/3/x001/x234/067", "tile/0/005.p/7", "tile/entries/000.p/255", "tile/0/0001", "tile/entries/x000/001"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		r := &fakeReader{index: 1 << 62}
		h := readServer(r).Handler()
		req, err := http.NewRequest("GET", "http://log.example/", nil)
		if err != nil {
			t.Skip()
		}
		req.URL.Path = "/" + p
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		level, index, width, entries, perr := tlog.ParseTilePath(p)
		if w.Code == http.StatusOK && !strings.HasPrefix(p, "checkpoint") && !strings.HasPrefix(p, "healthz") {
			if perr != nil {
				t.Fatalf("served non-canonical path %q", p)
			}
			if r.level != level || r.index != index || r.width != width || r.entries != entries {
				t.Fatalf("%q read as %+v", p, r)
			}
			if w.Body.String() != p {
				t.Fatalf("%q served %q", p, w.Body)
			}
		}
	})
}
