// Package qmptest is a fake QEMU that speaks QMP on a unix socket: it
// greets, insists on capability negotiation, echoes command ids, answers
// with handlers (in any order, after any delay, of any size), and injects
// events. It is how hvmon's QMP client and supervisor are tested without
// QEMU.
package qmptest

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Handler answers one command: a return value, or a QMP error class and
// description.
type Handler func(args json.RawMessage) (ret any, errClass, errDesc string)

// Server is a fake QEMU QMP endpoint.
type Server struct {
	Path string

	ln       net.Listener
	mu       sync.Mutex
	handlers map[string]Handler
	delays   map[string]time.Duration
	conns    map[net.Conn]*sync.Mutex // negotiated connections: events go there
	all      map[net.Conn]bool        // every open connection
	received []string
	closed   bool
	wg       sync.WaitGroup
}

// New listens on a unix socket named qmp.sock in dir.
func New(dir string) (*Server, error) {
	s := &Server{Path: filepath.Join(dir, "qmp.sock"), handlers: map[string]Handler{}, delays: map[string]time.Duration{}, conns: map[net.Conn]*sync.Mutex{}, all: map[net.Conn]bool{}}
	os.Remove(s.Path)
	ln, err := net.Listen("unix", s.Path)
	if err != nil {
		return nil, err
	}
	s.ln = ln
	s.Handle("query-status", func(json.RawMessage) (any, string, string) {
		return map[string]any{"status": "running", "running": true, "singlestep": false}, "", ""
	})
	s.Handle("query-version", func(json.RawMessage) (any, string, string) {
		return map[string]any{"qemu": map[string]int{"major": 7, "minor": 2, "micro": 0}, "package": "qmptest"}, "", ""
	})
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Handle sets the handler of a command.
func (s *Server) Handle(name string, h Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handlers[name] = h
}

// Delay makes the server answer a command only after d; other commands
// sent meanwhile are answered first (replies out of order).
func (s *Server) Delay(name string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delays[name] = d
}

// Received returns the names of the commands received, in order.
func (s *Server) Received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.received...)
}

// Inject sends an event to every negotiated connection.
func (s *Server) Inject(name string, data map[string]any) {
	now := time.Now()
	ev := map[string]any{"event": name, "timestamp": map[string]int64{"seconds": now.Unix(), "microseconds": int64(now.Nanosecond() / 1000)}}
	if data != nil {
		ev["data"] = data
	}
	s.mu.Lock()
	conns := make(map[net.Conn]*sync.Mutex, len(s.conns))
	for c, m := range s.conns {
		conns[c] = m
	}
	s.mu.Unlock()
	for c, m := range conns {
		send(c, m, ev)
	}
}

// Stream writes what r yields, as raw bytes, to the negotiated
// connections in turn (they share r: use it with one), holding each
// connection's write lock: a QEMU that sends a message without end, or
// anything else. It returns the bytes written and the first write error
// (a client that hung up).
func (s *Server) Stream(r io.Reader) (int64, error) {
	s.mu.Lock()
	conns := make(map[net.Conn]*sync.Mutex, len(s.conns))
	for c, m := range s.conns {
		conns[c] = m
	}
	s.mu.Unlock()
	var total int64
	for c, m := range conns {
		m.Lock()
		n, err := io.Copy(c, r)
		m.Unlock()
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// Repeat is an io.Reader of n bytes: prefix, then fill over and over (an
// endless string, array or nesting for Stream).
func Repeat(prefix, fill string, n int64) io.Reader {
	return io.MultiReader(strings.NewReader(prefix), io.LimitReader(&filler{fill: fill}, n-int64(len(prefix))))
}

type filler struct {
	fill string
	at   int
}

func (f *filler) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = f.fill[f.at]
		f.at = (f.at + 1) % len(f.fill)
	}
	return len(p), nil
}

// DropConnections closes every client connection, as a QEMU restart would;
// the server keeps listening.
func (s *Server) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.all {
		c.Close()
	}
	clear(s.all)
	clear(s.conns)
}

// Close stops the server.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.ln.Close()
	s.DropConnections()
	s.wg.Wait()
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.all[c] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(c)
	}
}

func send(c net.Conn, m *sync.Mutex, v any) {
	b, _ := json.Marshal(v)
	m.Lock()
	defer m.Unlock()
	c.Write(append(b, '\n'))
}

func (s *Server) serve(c net.Conn) {
	defer s.wg.Done()
	defer c.Close()
	wm := &sync.Mutex{}
	send(c, wm, map[string]any{"QMP": map[string]any{
		"version":      map[string]any{"qemu": map[string]int{"major": 7, "minor": 2, "micro": 0}, "package": "qmptest"},
		"capabilities": []string{"oob"},
	}})
	dec := json.NewDecoder(c)
	negotiated := false
	for {
		var req struct {
			Execute   string          `json:"execute"`
			Arguments json.RawMessage `json:"arguments"`
			ID        json.RawMessage `json:"id"`
		}
		if err := dec.Decode(&req); err != nil {
			s.mu.Lock()
			delete(s.conns, c)
			delete(s.all, c)
			s.mu.Unlock()
			return
		}
		reply := func(ret any, class, desc string) {
			out := map[string]any{}
			if class != "" {
				out["error"] = map[string]string{"class": class, "desc": desc}
			} else {
				if ret == nil {
					ret = map[string]any{}
				}
				out["return"] = ret
			}
			if req.ID != nil {
				out["id"] = req.ID
			}
			send(c, wm, out)
		}
		s.mu.Lock()
		s.received = append(s.received, req.Execute)
		h, delay := s.handlers[req.Execute], s.delays[req.Execute]
		s.mu.Unlock()
		switch {
		case req.Execute == "qmp_capabilities":
			negotiated = true
			s.mu.Lock()
			s.conns[c] = wm
			s.mu.Unlock()
			reply(nil, "", "")
		case !negotiated:
			reply(nil, "CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'")
		case h == nil:
			reply(nil, "CommandNotFound", fmt.Sprintf("The command %s has not been found", req.Execute))
		case delay > 0:
			args := req.Arguments
			go func() {
				time.Sleep(delay)
				reply(h(args))
			}()
		default:
			reply(h(req.Arguments))
		}
	}
}
