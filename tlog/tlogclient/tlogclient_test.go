package tlogclient

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"hvmon.dev/hvmon/tlog"
	"hvmon.dev/hvmon/tlog/tlogtest"
)

// serve publishes l over HTTP in the tlog-tiles layout.
func serve(t *testing.T, l *tlogtest.Log) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b []byte
		var err error
		if p := strings.TrimPrefix(r.URL.Path, "/"); p == "checkpoint" {
			b, err = l.ReadCheckpoint(r.Context())
		} else if level, index, width, entries, perr := tlog.ParseTilePath(p); perr != nil {
			err = fs.ErrNotExist
		} else if entries {
			b, err = l.ReadEntryBundle(r.Context(), index, width)
		} else {
			b, err = l.ReadTile(r.Context(), level, index, width)
		}
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestHTTPReaderFallback: a partial tile the log collected is read from
// the full tile, and proofs built over HTTP check.
func TestHTTPReaderFallback(t *testing.T) {
	key, err := tlog.NewKeyFromSeed("test.hvmon.dev/log", [32]byte{7})
	if err != nil {
		t.Fatal(err)
	}
	l := tlogtest.New(key, tlog.SignerOptions{})
	l.GC = true
	for i := range 600 {
		if _, err := l.Append([]byte("entry " + strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	oldSigned, _ := l.Checkpoint(300)
	newSigned, _ := l.Publish()
	p := tlog.Policy{Log: key.Verifier()}
	old, err := p.Open(oldSigned)
	if err != nil {
		t.Fatal(err)
	}
	r := &HTTPReader{Base: serve(t, l).URL + "/"}
	ctx := context.Background()
	if _, err := r.ReadTile(ctx, 0, 1, 44); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ReadTile(collected partial) = %v, want fs.ErrNotExist", err)
	}
	got, err := r.ReadCheckpoint(ctx)
	if err != nil || string(got) != string(newSigned) {
		t.Fatalf("ReadCheckpoint = %q, %v", got, err)
	}
	cur, err := p.Open(got)
	if err != nil {
		t.Fatal(err)
	}
	path, err := tlog.ProveInclusion(ctx, r, old, 299)
	if err != nil {
		t.Fatalf("ProveInclusion over a collected partial tile: %v", err)
	}
	if err := tlog.CheckInclusion(old, 299, tlog.LeafHash([]byte("entry 299")), path); err != nil {
		t.Fatal(err)
	}
	cpath, err := tlog.ProveConsistency(ctx, r, old, cur)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckConsistency(old, cur, cpath); err != nil {
		t.Fatal(err)
	}
}

// TestSubmit: the answer classes of the log server's add call.
func TestSubmit(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/add" || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		switch r.Header.Get("X-Want") {
		case "":
			w.Write([]byte("proof"))
		default:
			w.Header().Set("Retry-After", "3")
			http.Error(w, "busy", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	res, err := Submit(context.Background(), nil, srv.URL, []byte("entry"))
	if err != nil || res.Status != 200 || string(res.Proof) != "proof" {
		t.Fatalf("Submit = %+v, %v", res, err)
	}
	c := &http.Client{Transport: headerRT{}}
	res, err = Submit(context.Background(), c, srv.URL+"/", []byte("entry"))
	if err != nil || res.Status != 503 || res.RetryAfter != 3 || res.Message != "busy" {
		t.Fatalf("Submit = %+v, %v", res, err)
	}
}

type headerRT struct{}

func (headerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r.Header.Set("X-Want", "503")
	return http.DefaultTransport.RoundTrip(r)
}

// TestNewHTTPReader: a read URL given by a user must be http or https
// with a host; a trailing slash is dropped.
func TestNewHTTPReader(t *testing.T) {
	for _, bad := range []string{"ftp://x/", "log", "http:///x", "://", "/var/lib/log"} {
		if _, err := NewHTTPReader(bad, nil); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	r, err := NewHTTPReader("https://log.example/tiles/", nil)
	if err != nil || r.Base != "https://log.example/tiles" {
		t.Fatalf("%+v, %v", r, err)
	}
}

// TestDirReader: WriteDir publishes a log as a directory, DirReader reads
// it back (inclusion proofs check through it; a missing tile is
// fs.ErrNotExist; an oversize file is refused, not read whole).
func TestDirReader(t *testing.T) {
	key, err := tlog.NewKeyFromSeed("test.hvmon.dev/log", [32]byte{7})
	if err != nil {
		t.Fatal(err)
	}
	l := tlogtest.New(key, tlog.SignerOptions{})
	for i := range 300 {
		if _, err := l.Append([]byte("entry " + strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	signed, err := l.Publish()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dir := t.TempDir()
	if err := WriteDir(ctx, l, signed, l.Size(), dir); err != nil {
		t.Fatal(err)
	}
	d := DirReader{Root: dir}
	got, err := d.ReadCheckpoint(ctx)
	if err != nil || string(got) != string(signed) {
		t.Fatalf("ReadCheckpoint = %q, %v", got, err)
	}
	cp, err := tlog.Policy{Log: key.Verifier()}.Open(got)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadTile(ctx, 0, 5, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadTile(absent) = %v, want fs.ErrNotExist", err)
	}
	path, err := tlog.ProveInclusion(ctx, d, cp, 299)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckInclusion(cp, 299, tlog.LeafHash([]byte("entry 299")), path); err != nil {
		t.Errorf("inclusion through the directory: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tile", "0", "000"), make([]byte, MaxTileSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadTile(ctx, 0, 0, 0); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadTile(oversize) = %v, want a size error", err)
	}
}

// FuzzNewHTTPReader: a log URL from a flag is accepted only as http(s)
// with a host, never a panic, and its base ends in no slash (paths are
// joined with one).
func FuzzNewHTTPReader(f *testing.F) {
	for _, s := range []string{"https://log.example/tiles/", "http://127.0.0.1:8790", "ftp://x/", "log", "http:///x", "://", "http://[::1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := NewHTTPReader(s, nil)
		if err != nil {
			return
		}
		if b := strings.ToLower(r.Base); !strings.HasPrefix(b, "http://") && !strings.HasPrefix(b, "https://") || strings.HasSuffix(b, "/") {
			t.Fatalf("NewHTTPReader(%q) = %+v", s, r)
		}
	})
}
