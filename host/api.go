package host

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/attest"
)

// The local API: HTTP with JSON bodies on a unix socket.
//
//	GET  /v1/vms                         followed VMs (VMStatus list)
//	POST /v1/vms/{name}/attest           {"event": "on-demand", "facts": {...}, "nonce": "HEX"} -> APIEntry
//	GET  /v1/reports?vm=&event=&limit=   stored reports (APIEntry list), oldest first
//	GET  /v1/reports/{hash}              the signed report (application/cose)
//	POST /v1/events                      {"vm": ..., "event": ..., "facts": {...}} -> APIEntry
//	POST /v1/hook                        hook.Message from hvmon hook -> HookDecision (host/hook.go)
//	GET  /v1/hooks?vm=&limit=            recorded HookEvents, oldest first
//
// Errors are {"error": "..."} with a 4xx or 5xx status: 400 for a body or
// query that is not what the API takes (a VM name outside the rule of
// docs/FORMAT.md §6.1, a nonce outside 8 to 64 bytes), 404 for a VM the
// daemon does not follow.

// APIEntry is a stored report's entry as the API renders it.
type APIEntry struct {
	VM    string        `json:"vm"`
	Time  time.Time     `json:"time"`
	Seq   uint64        `json:"seq"`
	Event attest.Event  `json:"event"`
	Hash  attest.Digest `json:"hash"`
	// Logs is the report's state in each transparency log, by label
	// (hvmon log list; absent when no log is known).
	Logs map[string]APILogState `json:"logs,omitempty"`
}

// APILogState is a report's state with one log.
type APILogState struct {
	State  string  `json:"state"`            // logged, pending, refused
	Index  *uint64 `json:"index,omitempty"`  // logged: the entry's index
	Status int     `json:"status,omitempty"` // refused: the log's HTTP status
}

// NewAPILogState returns s as JSON data.
func NewAPILogState(s LogEntryState) APILogState {
	out := APILogState{State: s.State.String()}
	switch s.State {
	case LogLogged:
		i := s.Index
		out.Index = &i
	case LogRefused:
		out.Status = s.Status
	}
	return out
}

// String is the state as hvmon log list prints it: "1234", "pending" or
// "refused(413)".
func (s LogEntryState) String() string {
	switch s.State {
	case LogLogged:
		return strconv.FormatUint(s.Index, 10)
	case LogRefused:
		return "refused(" + strconv.Itoa(s.Status) + ")"
	}
	return "pending"
}

func apiEntry(e Entry) APIEntry {
	return APIEntry{VM: e.VM, Time: e.Time, Seq: e.Seq, Event: e.Event, Hash: e.Hash}
}

// AttestRequest is the body of POST /v1/vms/{name}/attest and /v1/events.
type AttestRequest struct {
	VM    string            `json:"vm,omitempty"`
	Event attest.Event      `json:"event,omitempty"`
	Facts map[string]string `json:"facts,omitempty"`
	// Nonce (hex, 8 to 64 bytes) is the caller's: the agent's guest
	// evidence and the report answer it. Empty: the daemon draws one.
	Nonce attest.HexBytes `json:"nonce,omitempty"`
}

const maxAPIBody = 64 << 10

// APIHandler serves the local API for a supervisor and its store. Each of
// routes adds more endpoints to its mux (HookService.Routes).
func APIHandler(s *Supervisor, store Store, log hclog.Logger, routes ...func(*http.ServeMux)) http.Handler {
	mux := http.NewServeMux()
	for _, add := range routes {
		add(mux)
	}
	mux.HandleFunc("GET /v1/vms", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.VMs())
	})
	// attestHandler serves an on-demand request (vm set from the path) or
	// a forwarded lifecycle event (POST /v1/events, vm in the body).
	attestHandler := func(w http.ResponseWriter, r *http.Request, vm string) {
		onDemand := vm != ""
		var req AttestRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, maxAPIBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			writeError(w, http.StatusBadRequest, fmt.Errorf("request body: %w", err))
			return
		}
		if vm == "" {
			vm = req.VM
		}
		if err := attest.CheckVMName(vm); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		if req.Event == "" {
			req.Event = attest.EventOnDemand
		}
		if !req.Event.Valid() {
			writeError(w, http.StatusBadRequest, fmt.Errorf("%w: unknown event %q", ErrBadEvent, req.Event))
			return
		}
		if onDemand && !slices.Contains(OnDemandEvents, req.Event) {
			writeError(w, http.StatusUnprocessableEntity, fmt.Errorf("%w: %q is a lifecycle step only the VM's own lifecycle records; on demand ask for %s", ErrBadEvent, req.Event, joinEvents(OnDemandEvents)))
			return
		}
		var nonce []byte
		if req.Nonce != nil {
			nonce = req.Nonce
		}
		e, err := s.AttestNonce(r.Context(), vm, req.Event, req.Facts, nonce)
		switch {
		case errors.Is(err, ErrBadNonce), errors.Is(err, ErrBadEvent):
			writeError(w, http.StatusBadRequest, err)
		case errors.Is(err, ErrUnknownVM):
			writeError(w, http.StatusNotFound, err)
		case err != nil:
			log.Warn("api attest failed", "vm", vm, "error", err)
			writeError(w, http.StatusInternalServerError, err)
		default:
			writeJSON(w, http.StatusOK, apiEntry(e))
		}
	}
	mux.HandleFunc("POST /v1/vms/{name}/attest", func(w http.ResponseWriter, r *http.Request) {
		attestHandler(w, r, r.PathValue("name"))
	})
	mux.HandleFunc("POST /v1/events", func(w http.ResponseWriter, r *http.Request) {
		attestHandler(w, r, "")
	})
	mux.HandleFunc("GET /v1/reports", func(w http.ResponseWriter, r *http.Request) {
		q := Query{VM: r.URL.Query().Get("vm"), Event: attest.Event(r.URL.Query().Get("event"))}
		if l := r.URL.Query().Get("limit"); l != "" {
			n, err := strconv.Atoi(l)
			if err != nil || n < 0 {
				writeError(w, http.StatusBadRequest, fmt.Errorf("limit %q", l))
				return
			}
			q.Limit = n
		}
		es, err := store.List(r.Context(), q)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		out := make([]APIEntry, len(es))
		for i, e := range es {
			out[i] = apiEntry(e)
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/reports/{hash}", func(w http.ResponseWriter, r *http.Request) {
		h, err := attest.ParseDigest(r.PathValue("hash"))
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		b, _, err := store.Get(r.Context(), h)
		if errors.Is(err, ErrNotFound) {
			writeError(w, http.StatusNotFound, err)
			return
		}
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		w.Header().Set("Content-Type", "application/cose; cose-type=\"cose-sign1\"")
		w.Write(b)
	})
	return mux
}

func joinEvents(es []attest.Event) string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = string(e)
	}
	return strings.Join(s, " or ")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

// ErrSocketPath is returned by ListenAPI when the socket path holds
// something it must not replace: a symlink, a file that is not a socket,
// or the socket of a daemon that still answers.
var ErrSocketPath = errors.New("api socket path is taken")

// ListenAPI creates the API socket at path, with mode 0600, or 0660 owned
// by group when group is set, from the moment it can be reached.
//
// The socket is bound under a fresh 0700 directory next to path, where no
// other user can connect whatever mode the umask gave it; there it gets
// its owner and mode, and only then is it renamed into place. rename(2)
// is atomic and works on the name, never through it: a symlink planted at
// path is replaced, not followed, so its target is never touched. (Setting
// the umask around bind would do the same, but the umask belongs to the
// whole process and every goroutine creating files meanwhile.) A symlink
// or a non-socket already at path is refused, and so is the socket of a
// daemon that still answers on it; a stale socket is replaced.
//
// Closing the listener removes path if it is still this socket.
func ListenAPI(path, group string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if st, err := os.Lstat(path); err == nil {
		switch {
		case st.Mode()&os.ModeSymlink != 0:
			return nil, fmt.Errorf("%w: %s is a symbolic link; hvmon neither follows nor replaces one there", ErrSocketPath, path)
		case st.Mode()&os.ModeSocket == 0:
			return nil, fmt.Errorf("%w: %s exists and is not a socket", ErrSocketPath, path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%w: a daemon is listening on %s", ErrSocketPath, path)
		}
	}
	mode := os.FileMode(0o600)
	gid := -1
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			return nil, err
		}
		if gid, err = strconv.Atoi(g.Gid); err != nil {
			return nil, fmt.Errorf("group %s: gid %q", group, g.Gid)
		}
		mode = 0o660
	}
	private, err := os.MkdirTemp(dir, ".hvmon-api-") // mode 0700
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(private)
	tmp := filepath.Join(private, "api.sock")
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, err
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false) // it will not be at tmp
	fail := func(err error) (net.Listener, error) {
		ln.Close()
		return nil, err
	}
	if gid >= 0 {
		if err := os.Chown(tmp, -1, gid); err != nil {
			return fail(err)
		}
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	st, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	return &apiListener{Listener: ln, path: path, st: st}, nil
}

// apiListener removes its socket file on Close, if the path still names it.
type apiListener struct {
	net.Listener
	path string
	st   os.FileInfo
	once sync.Once
}

func (l *apiListener) Close() error {
	err := l.Listener.Close()
	l.once.Do(func() {
		if st, e := os.Lstat(l.path); e == nil && os.SameFile(st, l.st) {
			os.Remove(l.path)
		}
	})
	return err
}

// APIClient talks to a daemon's API socket.
type APIClient struct {
	hc *http.Client
}

// NewAPIClient returns a client for the socket at path.
func NewAPIClient(path string) *APIClient {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &APIClient{hc: &http.Client{Transport: tr}}
}

func (c *APIClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://hvmon"+path, rd)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("daemon: %s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return fmt.Errorf("daemon: HTTP %d", resp.StatusCode)
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = b
		return nil
	}
	return json.Unmarshal(b, out)
}

// VMs lists the daemon's VMs.
func (c *APIClient) VMs(ctx context.Context) ([]VMStatus, error) {
	var out []VMStatus
	return out, c.do(ctx, http.MethodGet, "/v1/vms", nil, &out)
}

// Attest asks for a report now.
func (c *APIClient) Attest(ctx context.Context, vm string, event attest.Event, facts map[string]string) (APIEntry, error) {
	var out APIEntry
	return out, c.do(ctx, http.MethodPost, "/v1/vms/"+url.PathEscape(vm)+"/attest", AttestRequest{Event: event, Facts: facts}, &out)
}

// AttestNonce asks for a report now that answers nonce (nil: the daemon
// draws one).
func (c *APIClient) AttestNonce(ctx context.Context, vm string, event attest.Event, facts map[string]string, nonce []byte) (APIEntry, error) {
	var out APIEntry
	return out, c.do(ctx, http.MethodPost, "/v1/vms/"+url.PathEscape(vm)+"/attest", AttestRequest{Event: event, Facts: facts, Nonce: nonce}, &out)
}

// Event forwards a lifecycle event (hvmon hook).
func (c *APIClient) Event(ctx context.Context, req AttestRequest) (APIEntry, error) {
	var out APIEntry
	return out, c.do(ctx, http.MethodPost, "/v1/events", req, &out)
}

// Reports lists stored reports.
func (c *APIClient) Reports(ctx context.Context, vm string, limit int) ([]APIEntry, error) {
	var out []APIEntry
	return out, c.do(ctx, http.MethodGet, fmt.Sprintf("/v1/reports?vm=%s&limit=%d", url.QueryEscape(vm), limit), nil, &out)
}

// Report fetches one signed report.
func (c *APIClient) Report(ctx context.Context, h attest.Digest) ([]byte, error) {
	var out []byte
	return out, c.do(ctx, http.MethodGet, "/v1/reports/"+h.String(), nil, &out)
}
