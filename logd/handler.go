package logd

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/transparency-dev/tessera"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/tlog"
)

// HTTP paths of the log server (docs/FORMAT.md §15).
const (
	PathAdd        = "/v1/add"
	PathCheckpoint = "/checkpoint"
	PathHealth     = "/healthz"
	tilePrefix     = "/tile/"
)

// ProofContentType is the media type of a tlog-proof answer.
const ProofContentType = "text/x.tlog-proof"

// Retry-After seconds of the 503 answers.
const (
	retryPushback = 1
	retryNotReady = 2
	retryTimeout  = 5
)

// Handler returns the log's HTTP handler: submissions, reads and health.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(PathAdd, s.serveAdd)
	mux.HandleFunc(PathCheckpoint, s.serveCheckpoint)
	mux.HandleFunc(tilePrefix, s.serveTile)
	mux.HandleFunc(PathHealth, s.serveHealth)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpError(w, http.StatusNotFound, "not found")
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Paths are exact: an unclean one is not redirected to its clean
		// form, it names nothing.
		if p := r.URL.Path; p != path.Clean(p) && p != "/" {
			httpError(w, http.StatusNotFound, "not found")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// httpError answers {"error": msg} with status.
func httpError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func unavailable(w http.ResponseWriter, retry int, msg string) {
	w.Header().Set("Retry-After", strconv.Itoa(retry))
	httpError(w, http.StatusServiceUnavailable, msg)
}

// allow answers 405 unless r's method is one of methods.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	httpError(w, http.StatusMethodNotAllowed, "method not allowed")
	return false
}

// serveAdd logs one report and answers its proof once the entry is in a
// published checkpoint.
func (s *Server) serveAdd(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodPost) {
		return
	}
	start := time.Now()
	outcome, status, msg, retry := s.add1(w, r)
	s.metrics.submissions.WithLabelValues(outcome).Inc()
	switch {
	case status == http.StatusOK:
		s.metrics.submitSeconds.Observe(time.Since(start).Seconds())
	case retry > 0:
		unavailable(w, retry, msg)
	default:
		httpError(w, status, msg)
	}
}

// add1 does the work of serveAdd. It writes the answer itself only on
// success; otherwise it returns the outcome, status, message and, for
// 503, the Retry-After seconds.
func (s *Server) add1(w http.ResponseWriter, r *http.Request) (outcome string, status int, msg string, retry int) {
	if !s.ready.Load() {
		return outcomePushback, http.StatusServiceUnavailable, "log is starting", retryNotReady
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, tlog.MaxEntrySize+1))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig) || len(body) > tlog.MaxEntrySize:
		return outcomeTooLarge, http.StatusRequestEntityTooLarge, "a logged report is at most " + strconv.Itoa(tlog.MaxEntrySize) + " bytes", 0
	case err != nil:
		return outcomeMalformed, http.StatusBadRequest, "reading the request: " + err.Error(), 0
	}
	if _, _, err := attest.Authenticate(body, s.allow.Keys()); err != nil {
		if errors.Is(err, attest.ErrMalformed) {
			return outcomeMalformed, http.StatusBadRequest, err.Error(), 0
		}
		return outcomeForbidden, http.StatusForbidden, err.Error(), 0
	}
	select {
	case s.inflight <- struct{}{}:
		defer func() { <-s.inflight }()
	default:
		return outcomePushback, http.StatusServiceUnavailable, "too many submissions in flight", retryPushback
	}
	s.metrics.inflight.Inc()
	defer s.metrics.inflight.Dec()

	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Durations.AwaitTimeout)
	defer cancel()
	idx, cp, err := s.await(ctx, s.add(ctx, body))
	switch {
	case errors.Is(err, tessera.ErrPushback):
		return outcomePushback, http.StatusServiceUnavailable, "log is busy", retryPushback
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return outcomeTimeout, http.StatusServiceUnavailable, "not yet in a published checkpoint; submit the same report again", retryTimeout
	case err != nil:
		s.log.Error("logging a report", "error", err)
		return outcomeError, http.StatusInternalServerError, "internal error", 0
	}
	proof, err := s.proofs.prove(ctx, cp, idx.Index)
	if err != nil {
		s.log.Error("building a proof", "index", idx.Index, "error", err)
		return outcomeError, http.StatusInternalServerError, "internal error", 0
	}
	if e, err := s.proofs.get(cp); err == nil {
		s.metrics.treeSize.Set(float64(e.cp.Size))
	}
	outcome = outcomeLogged
	if idx.IsDup {
		outcome = outcomeDuplicate
	}
	h := w.Header()
	h.Set("Content-Type", ProofContentType)
	h.Set("Hvmon-Log-Index", strconv.FormatUint(idx.Index, 10))
	h.Set("Hvmon-Log-Duplicate", strconv.FormatBool(idx.IsDup))
	w.WriteHeader(http.StatusOK)
	w.Write(proof)
	return outcome, http.StatusOK, "", 0
}

func (s *Server) serveCheckpoint(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	if r.URL.Path != PathCheckpoint {
		httpError(w, http.StatusNotFound, "not found")
		return
	}
	cp, err := s.reader.ReadCheckpoint(r.Context())
	if !s.readOK(w, err) {
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(cp)
}

// serveTile serves hash tiles and entry bundles. Only canonical tlog-tiles
// paths are accepted (tlog.ParseTilePath).
func (s *Server) serveTile(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	level, index, width, entries, err := tlog.ParseTilePath(strings.TrimPrefix(r.URL.Path, "/"))
	if err != nil || r.URL.RawQuery != "" {
		httpError(w, http.StatusNotFound, "not a tile path")
		return
	}
	var b []byte
	if entries {
		b, err = s.reader.ReadEntryBundle(r.Context(), index, width)
	} else {
		b, err = s.reader.ReadTile(r.Context(), level, index, width)
	}
	if !s.readOK(w, err) {
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if width == 0 {
		w.Header().Set("Cache-Control", "max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	w.Write(b)
}

// readOK answers 404 or 500 for a read error and reports whether err was
// nil.
func (s *Server) readOK(w http.ResponseWriter, err error) bool {
	switch {
	case err == nil:
		return true
	case errors.Is(err, os.ErrNotExist):
		httpError(w, http.StatusNotFound, "not found")
	default:
		s.log.Error("reading the log", "error", err)
		httpError(w, http.StatusInternalServerError, "internal error")
	}
	return false
}

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !s.ready.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("starting\n"))
		return
	}
	w.Write([]byte("ready\n"))
}
