// Package hookrun is one run of hvmon's libvirt hook: parse libvirt's
// arguments and the domain XML (package hook), post the event to the
// daemon's API socket within a deadline, and decide, fail-open or
// fail-closed, whether the operation may go on. "hvmon hook" and the small
// hvmon-hook binary both run it, so they behave the same.
//
// It imports only the standard library and package hook: the process that
// libvirt waits for must start fast, so nothing here may pull in the
// daemon, libvirt or their dependencies. It never writes to stdout
// (libvirt takes a hook's stdout as a replacement domain XML).
package hookrun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/syslog"
	"net"
	"os"
	"strings"
	"time"

	"hvmon.dev/hvmon/hook"
)

// The hook file "hvmon hook install" writes for hvmon-hook is not a shell
// script: its first line is "#!HVMON-HOOK --config", so the kernel runs
// hvmon-hook as "HVMON-HOOK --config FILE ARGS..." and hvmon-hook takes its
// flags from FILE's line that starts with FlagsPrefix. Without /bin/sh in
// between, libvirt waits a few milliseconds less for each event.
const (
	ConfigFlag  = "--config"
	FlagsPrefix = "flags: "
)

// Defaults.
const (
	DefaultSocket  = "/run/hvmon/api.sock"
	DefaultTimeout = 2 * time.Second
)

// Exit codes of a hook run.
const (
	ExitOK      = 0
	ExitUsage   = 1 // bad arguments; or refused because nobody could vouch for the event
	ExitRefused = 3 // refused because the daemon denied the event
)

// Options configure a run.
type Options struct {
	// Socket is the daemon's API socket; empty means DefaultSocket.
	Socket string
	// FailClosed refuses gated operations that nobody vouched for.
	FailClosed bool
	// Timeout bounds the daemon's answer; it must be positive.
	Timeout time.Duration
	// Driver is the libvirt hook driver; only hook.DriverQEMU is
	// forwarded. Empty means qemu.
	Driver string
	// Syslog also writes warnings and refusals to the local syslog socket.
	Syslog bool
}

// Error is a failed run: usage errors and refusals. Its message is the one
// line for stderr (without a program prefix); Code is the exit code.
type Error struct {
	Code    int
	Refusal bool // a refusal of a fail-closed hook, not a usage error
	Err     error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Run runs the hook for libvirt's args with the domain XML on stdin. It
// writes warnings (one line each, prefixed by prefix) to stderr and returns
// nil when the operation may go on, or an *Error.
func Run(ctx context.Context, opts Options, args []string, stdin io.Reader, stderr io.Writer, prefix string) error {
	if opts.Socket == "" {
		opts.Socket = DefaultSocket
	}
	if opts.Driver == "" {
		opts.Driver = hook.DriverQEMU
	}
	if opts.Timeout <= 0 {
		return &Error{Code: ExitUsage, Err: errors.New("--timeout must be positive")}
	}
	r := &run{opts: opts, stderr: stderr, prefix: prefix}
	m, err := hook.Parse(opts.Driver, args, stdin)
	if errors.Is(err, hook.ErrIgnored) {
		// Read what libvirt writes, so it never meets a closed pipe.
		io.Copy(io.Discard, io.LimitReader(stdin, hook.MaxXML+1))
		return nil
	}
	if err != nil {
		var me *hook.MalformedError
		if errors.As(err, &me) && me.What == "arguments" {
			return &Error{Code: ExitUsage, Err: fmt.Errorf("hook: %w", err)}
		}
		if opts.FailClosed && hook.Gates(args[1]) {
			return r.refuse(ExitUsage, "refusing %s of domain %q: %v (fail-closed)", args[1], args[0], err)
		}
		r.warn("%s of domain %q not forwarded: %v (fail-open)", args[1], args[0], err)
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	d, err := Post(ctx, opts.Socket, m)
	if err != nil {
		gated := m.Op == hook.OpMigrate || (hook.Gates(m.Op) && m.Domain.AttestationRequired)
		if opts.FailClosed && gated {
			why := "its policy requires attestation"
			if m.Op == hook.OpMigrate {
				why = "an incoming migration needs the daemon's word on the source's last report"
			}
			return r.refuse(ExitUsage, "refusing %s of domain %q: %s and the hvmon daemon at %s did not answer: %v (fail-closed)", m.Op, m.Object, why, opts.Socket, err)
		}
		r.warn("%s of domain %q not recorded: the hvmon daemon at %s did not answer: %v (fail-open)", m.Op, m.Object, opts.Socket, err)
		return nil
	}
	if !d.Allow {
		if opts.FailClosed {
			return r.refuse(ExitRefused, "refusing %s of domain %q: %s (fail-closed)", m.Op, m.Object, d.Reason)
		}
		r.warn("the hvmon daemon would refuse %s of domain %q: %s (fail-open: allowed)", m.Op, m.Object, d.Reason)
	}
	return nil
}

type run struct {
	opts   Options
	stderr io.Writer
	prefix string
}

func (r *run) warn(format string, args ...any) {
	msg := oneLine(fmt.Sprintf(format, args...))
	fmt.Fprintf(r.stderr, "%shook: warning: %s\n", r.prefix, msg)
	if r.opts.Syslog {
		toSyslog(syslog.LOG_WARNING, msg)
	}
}

func (r *run) refuse(code int, format string, args ...any) error {
	err := fmt.Errorf("hook: "+format, args...)
	if r.opts.Syslog {
		toSyslog(syslog.LOG_ERR, oneLine(err.Error()))
	}
	return &Error{Code: code, Refusal: true, Err: err}
}

// oneLine keeps a message on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// toSyslog writes one message to the local syslog socket, if there is one,
// and gives up silently otherwise: it must not slow down or fail the hook.
func toSyslog(p syslog.Priority, msg string) {
	for _, path := range []string{"/dev/log", "/var/run/syslog"} {
		if _, err := os.Stat(path); err != nil {
			continue
		}
		w, err := syslog.Dial("", "", p|syslog.LOG_DAEMON, "hvmon-hook")
		if err != nil {
			return
		}
		defer w.Close()
		if p == syslog.LOG_ERR {
			w.Err(msg)
		} else {
			w.Warning(msg)
		}
		return
	}
}

// MaxAnswer bounds the daemon's answer, headers included.
const MaxAnswer = 64 << 10

// Post sends m to POST /v1/hook on the daemon's API socket and returns its
// decision. It speaks just enough HTTP/1.1 for that one exchange (one
// request with Connection: close, a response read to the end) instead of
// using net/http, whose package initialisation (TLS, certificates) would
// cost the hook several milliseconds at every start.
func Post(ctx context.Context, socket string, m *hook.Message) (hook.Decision, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return hook.Decision{}, err
	}
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "unix", socket)
	if err != nil {
		return hook.Decision{}, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	req := fmt.Sprintf("POST /v1/hook HTTP/1.1\r\nHost: hvmon\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", len(body))
	if _, err := conn.Write(append([]byte(req), body...)); err != nil {
		return hook.Decision{}, ctxErr(ctx, err)
	}
	raw, err := io.ReadAll(io.LimitReader(conn, MaxAnswer+1))
	if err != nil {
		return hook.Decision{}, ctxErr(ctx, err)
	}
	if len(raw) > MaxAnswer {
		return hook.Decision{}, fmt.Errorf("daemon: answer larger than %d bytes", MaxAnswer)
	}
	status, b, err := ParseResponse(raw)
	if err != nil {
		return hook.Decision{}, fmt.Errorf("daemon: %w", err)
	}
	if status != 200 {
		var e struct{ Error string }
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return hook.Decision{}, fmt.Errorf("daemon: %s (HTTP %d)", e.Error, status)
		}
		return hook.Decision{}, fmt.Errorf("daemon: HTTP %d", status)
	}
	var d hook.Decision
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return hook.Decision{}, fmt.Errorf("daemon: answer: %w", err)
	}
	return d, nil
}

// ctxErr names a read or write that the deadline cut short.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("no answer before the deadline: %w", err)
	}
	return err
}

// ErrResponse matches every malformed HTTP response.
var ErrResponse = errors.New("malformed HTTP response")

// ParseResponse parses a complete HTTP/1.x response (the connection was
// closed after it): it returns the status code and the body, decoded from
// chunked transfer coding or cut to Content-Length.
func ParseResponse(raw []byte) (int, []byte, error) {
	head, body, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
	if !ok {
		return 0, nil, fmt.Errorf("%w: no end of headers", ErrResponse)
	}
	lines := strings.Split(string(head), "\r\n")
	proto, rest, _ := strings.Cut(lines[0], " ")
	code, _, _ := strings.Cut(rest, " ")
	if proto != "HTTP/1.1" && proto != "HTTP/1.0" || len(code) != 3 {
		return 0, nil, fmt.Errorf("%w: status line %.40q", ErrResponse, lines[0])
	}
	status := 0
	for _, c := range code {
		if c < '0' || c > '9' {
			return 0, nil, fmt.Errorf("%w: status line %.40q", ErrResponse, lines[0])
		}
		status = status*10 + int(c-'0')
	}
	length, chunked := -1, false
	for _, l := range lines[1:] {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			return 0, nil, fmt.Errorf("%w: header line %.40q", ErrResponse, l)
		}
		v = strings.TrimSpace(v)
		switch strings.ToLower(k) {
		case "content-length":
			n, err := parseUint(v, 10)
			if err != nil || length >= 0 {
				return 0, nil, fmt.Errorf("%w: Content-Length %.20q", ErrResponse, v)
			}
			length = n
		case "transfer-encoding":
			if !strings.EqualFold(v, "chunked") {
				return 0, nil, fmt.Errorf("%w: Transfer-Encoding %.20q", ErrResponse, v)
			}
			chunked = true
		}
	}
	switch {
	case chunked:
		b, err := dechunk(body)
		if err != nil {
			return 0, nil, err
		}
		return status, b, nil
	case length >= 0:
		if len(body) < length {
			return 0, nil, fmt.Errorf("%w: body of %d bytes, Content-Length %d", ErrResponse, len(body), length)
		}
		return status, body[:length], nil
	}
	return status, body, nil
}

func dechunk(b []byte) ([]byte, error) {
	var out []byte
	for {
		line, rest, ok := bytes.Cut(b, []byte("\r\n"))
		if !ok {
			return nil, fmt.Errorf("%w: truncated chunk", ErrResponse)
		}
		size, _, _ := bytes.Cut(line, []byte(";"))
		n, err := parseUint(string(bytes.TrimSpace(size)), 16)
		if err != nil || n > len(rest) {
			return nil, fmt.Errorf("%w: chunk size %.20q", ErrResponse, line)
		}
		if n == 0 {
			return out, nil
		}
		out = append(out, rest[:n]...)
		rest = rest[n:]
		if !bytes.HasPrefix(rest, []byte("\r\n")) {
			return nil, fmt.Errorf("%w: chunk not followed by CRLF", ErrResponse)
		}
		b = rest[2:]
	}
}

// parseUint parses a non-negative number of at most 8 digits.
func parseUint(s string, base int) (int, error) {
	if s == "" || len(s) > 8 {
		return 0, errors.New("bad number")
	}
	n := 0
	for _, c := range strings.ToLower(s) {
		var d int
		switch {
		case c >= '0' && c <= '9':
			d = int(c - '0')
		case base == 16 && c >= 'a' && c <= 'f':
			d = int(c-'a') + 10
		default:
			return 0, errors.New("bad number")
		}
		n = n*base + d
	}
	return n, nil
}
