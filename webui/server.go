// Package webui is hvmon's read-only web view of a report store: a fleet
// page (every VM, its hosts, its last report and verdict, whether its
// reports are logged), a VM page (a timeline with one lane per host and a
// drift view of changed pages), a report page (every field hvmon show
// gives, each verification check, the chain findings and the log proof
// state), and the same data as JSON under /api/.
//
// The verdicts are hvmon log verify's: every stored report is verified as
// of its own issued-at under the trusted keys (and appraised against the
// policy, when one is given), and all of them are audited as one history
// with policy.AuditChain.
//
// The view never writes: it answers GET and HEAD only, takes no input but
// the URL path (a VM name or a whole report hash, both validated and only
// ever looked up in what the store lists, never used as a path), escapes
// everything with html/template, and serves a strict Content-Security-Policy
// with no script at all. Pages are rendered on the server as HTML and
// inline SVG; the stylesheet is embedded. It needs no network.
//
// It has no authentication: hvmon ui listens on loopback unless told
// otherwise, and docs/OPERATIONS.md ("The web view") says how to put it
// behind an authenticating proxy or an SSH tunnel.
package webui

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/policy"
	"hvmon.dev/hvmon/tlog"
)

//go:embed templates/*.html static/*.css
var assets embed.FS

// DefaultMaxReports bounds the reports one view reads, the newest first.
const DefaultMaxReports = 20000

// DefaultRequestTimeout bounds the time one request may take to build
// its view.
const DefaultRequestTimeout = 30 * time.Second

// Options configures a Server. Store is required; the zero values of the
// others are safe.
type Options struct {
	// Store is the daemon's report store (its data directory).
	Store *host.FileStore
	// Verify holds the trusted host keys and the hardware evidence
	// verifier. Now is ignored: each report is verified as of its own
	// issued-at, as hvmon log verify does.
	Verify attest.VerifyOptions
	// Policy, when set, appraises every report that verified; its
	// findings join the chain audit's.
	Policy *policy.Policy
	// Log, when set, is the transparency log's policy (its verifier key,
	// witnesses and quorum): every proof file beside a report is verified
	// against it, as hvmon verify --log-key does. Without it the view
	// shows the proof state the store records (logged, pending, refused).
	Log *tlog.Policy
	// Now is the clock for the age of VMs' last reports; nil means
	// time.Now.
	Now func() time.Time
	// MaxReports bounds the reports a view reads (the newest are kept);
	// 0 means DefaultMaxReports.
	MaxReports int
	// RequestTimeout bounds one request; 0 means DefaultRequestTimeout.
	RequestTimeout time.Duration
}

func (o *Options) maxReports() int {
	if o.MaxReports <= 0 {
		return DefaultMaxReports
	}
	return o.MaxReports
}

func (o *Options) now() time.Time {
	if o.Now == nil {
		return time.Now()
	}
	return o.Now()
}

// Server serves the web view. It is safe for concurrent use; requests that
// build a view are serialised (they share a cache of verified reports).
type Server struct {
	opts  Options
	mu    sync.Mutex
	cache map[attest.Digest]verified
	// proofs caches the verification of proof files that verified (a
	// proof file, once written, is kept: docs/FORMAT.md).
	proofs map[proofKey]ProofCheck
	pages  map[string]*template.Template
	css    []byte
	mux    *http.ServeMux
}

// ContentSecurityPolicy is the policy every response carries: nothing but
// the embedded stylesheet may load, no script runs, no form posts, no
// page frames it.
const ContentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// New returns a Server over opts.Store.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("webui: no store")
	}
	s := &Server{opts: opts, pages: map[string]*template.Template{}, mux: http.NewServeMux()}
	var err error
	if s.css, err = fs.ReadFile(assets, "static/style.css"); err != nil {
		return nil, err
	}
	for _, p := range []string{"fleet", "vm", "report", "error"} {
		t, err := template.New(p).Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("webui: template %s: %w", p, err)
		}
		s.pages[p] = t
	}
	s.mux.HandleFunc("GET /{$}", s.fleetPage)
	s.mux.HandleFunc("GET /vm/{name}", s.vmPage)
	s.mux.HandleFunc("GET /report/{hash}", s.reportPage)
	s.mux.HandleFunc("GET /api/fleet", s.fleetAPI)
	s.mux.HandleFunc("GET /api/vm/{name}", s.vmAPI)
	s.mux.HandleFunc("GET /api/report/{hash}", s.reportAPI)
	s.mux.HandleFunc("GET /static/style.css", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Write(s.css)
	})
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, http.StatusNotFound, "no such page")
	})
	return s, nil
}

// maxPath bounds a request's path: the longest the view has is a report
// page (a 64-digit hash); a VM name is at most attest.MaxVMName bytes,
// escaped.
const maxPath = 1024

// ServeHTTP implements http.Handler: it sets the security headers,
// refuses methods other than GET and HEAD and oversized paths, bounds the
// request's time, and dispatches.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "read-only: GET and HEAD only", http.StatusMethodNotAllowed)
		return
	}
	if r.URL == nil || len(r.URL.Path) > maxPath || len(r.URL.RawQuery) > maxPath {
		http.Error(w, "request path too long", http.StatusRequestURITooLong)
		return
	}
	timeout := s.opts.RequestTimeout
	if timeout <= 0 {
		timeout = DefaultRequestTimeout
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	s.mux.ServeHTTP(w, r.WithContext(ctx))
}

// ParseHash parses a report hash from a URL: exactly 64 lowercase hex
// digits (the form the pages link to). Anything else is refused.
func ParseHash(s string) (attest.Digest, error) {
	if len(s) != 2*len(attest.Digest{}) || strings.Trim(s, "0123456789abcdef") != "" {
		return attest.Digest{}, fmt.Errorf("report hash %q: want 64 lowercase hex digits", truncate(s))
	}
	return attest.ParseDigest(s)
}

// parseVM checks a VM name from a URL against the VM name rule.
func parseVM(s string) (string, error) {
	if !attest.ValidVMName(s) {
		return "", fmt.Errorf("VM name %q: want a name matching %s", truncate(s), attest.VMNameRule)
	}
	return s, nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

func (s *Server) view(w http.ResponseWriter, r *http.Request) (*view, bool) {
	v, err := s.load(r.Context())
	if err != nil {
		s.fail(w, r, http.StatusInternalServerError, "reading the store: "+err.Error())
		return nil, false
	}
	return v, true
}

func (s *Server) fleetPage(w http.ResponseWriter, r *http.Request) {
	v, ok := s.view(w, r)
	if !ok {
		return
	}
	s.render(w, r, "fleet", map[string]any{"Title": "Fleet", "Fleet": v.fleet(), "At": v.at})
}

func (s *Server) fleetAPI(w http.ResponseWriter, r *http.Request) {
	v, ok := s.view(w, r)
	if !ok {
		return
	}
	writeJSON(w, v.fleet())
}

func (s *Server) vmData(w http.ResponseWriter, r *http.Request) (*VM, bool) {
	name, err := parseVM(r.PathValue("name"))
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return nil, false
	}
	v, ok := s.view(w, r)
	if !ok {
		return nil, false
	}
	vm, err := v.vm(name)
	if err != nil {
		s.fail(w, r, http.StatusNotFound, fmt.Sprintf("VM %s: the store holds no report about it", name))
		return nil, false
	}
	return vm, true
}

func (s *Server) vmPage(w http.ResponseWriter, r *http.Request) {
	vm, ok := s.vmData(w, r)
	if !ok {
		return
	}
	s.render(w, r, "vm", map[string]any{"Title": "VM " + vm.VM, "VM": vm, "Timeline": layout(vm), "Drift": layoutDrift(vm.Drift)})
}

func (s *Server) vmAPI(w http.ResponseWriter, r *http.Request) {
	if vm, ok := s.vmData(w, r); ok {
		writeJSON(w, vm)
	}
}

func (s *Server) reportData(w http.ResponseWriter, r *http.Request) (*Report, bool) {
	h, err := ParseHash(r.PathValue("hash"))
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return nil, false
	}
	v, ok := s.view(w, r)
	if !ok {
		return nil, false
	}
	rep, ok := v.report(h)
	if !ok {
		s.fail(w, r, http.StatusNotFound, fmt.Sprintf("report %s: not in the store", h))
		return nil, false
	}
	return rep, true
}

func (s *Server) reportPage(w http.ResponseWriter, r *http.Request) {
	rep, ok := s.reportData(w, r)
	if !ok {
		return
	}
	s.render(w, r, "report", map[string]any{"Title": "Report " + rep.Hash.String()[:12], "Report": rep})
}

func (s *Server) reportAPI(w http.ResponseWriter, r *http.Request) {
	if rep, ok := s.reportData(w, r); ok {
		writeJSON(w, rep)
	}
}

// render executes a page into a buffer first, so that a template error
// becomes a 500 rather than half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, page string, data map[string]any) {
	var b strings.Builder
	if err := s.pages[page].ExecuteTemplate(&b, "layout", data); err != nil {
		s.fail(w, r, http.StatusInternalServerError, "rendering "+page+": "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprint(w, b.String())
}

// fail answers an error: JSON under /api/, else an HTML page.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, code int, msg string) {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]string{"error": msg})
		return
	}
	var b strings.Builder
	if err := s.pages["error"].ExecuteTemplate(&b, "layout", map[string]any{"Title": http.StatusText(code), "Code": code, "Message": msg}); err != nil {
		http.Error(w, msg, code)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprint(w, b.String())
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(b, '\n'))
}

var funcs = template.FuncMap{
	"short":  func(d attest.Digest) string { return d.String()[:12] },
	"status": statusClass,
	"age":    age,
	"utc":    func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"indent": func(depth int) string { return fmt.Sprintf("d%d", min(depth, 4)) },
	"seq": func(p *uint64) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprint(*p)
	},
	"join": strings.Join,
	"add":  func(a, b int) int { return a + b },
}

// age shows a duration in seconds the way an admin reads it: "42s",
// "5m", "3h", "2d".
func age(secs int64) string {
	switch {
	case secs < 0:
		return "in the future"
	case secs < 120:
		return fmt.Sprintf("%ds", secs)
	case secs < 2*3600:
		return fmt.Sprintf("%dm", secs/60)
	case secs < 2*86400:
		return fmt.Sprintf("%dh", secs/3600)
	}
	return fmt.Sprintf("%dd", secs/86400)
}
