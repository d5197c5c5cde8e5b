//go:build cgo

package libvirt

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	golibvirt "libvirt.org/go/libvirt"

	"hvmon.dev/hvmon/host"
)

// DefaultURI is the libvirt connection the watcher uses by default.
const DefaultURI = "qemu:///system"

// Options configure a Watcher.
type Options struct {
	// URI is the libvirt connection URI; empty means DefaultURI.
	URI    string
	Logger hclog.Logger
	// Supervisor receives the domains to follow.
	Supervisor *host.Supervisor
	// Domains are name patterns (path.Match) of domains to follow even
	// without hvmon's agent channel (their reports then carry host
	// observations only). Domains with the channel are always followed.
	Domains []string
	// Base is copied into every domain's VMConfig (periodic interval,
	// regions); name, UUID, agent and transport come from libvirt.
	Base host.VMConfig
	// Retry bounds the wait between reconnection attempts; zero means 2 s.
	Retry time.Duration
}

// Watcher follows the domains of one libvirt connection.
type Watcher struct {
	opts Options
	log  hclog.Logger

	attempted   chan struct{} // closed after the first connection attempt
	attemptOnce sync.Once

	mu       sync.Mutex
	conn     *golibvirt.Connect // nil while disconnected
	up       chan struct{}      // closed while connected
	sessions map[string]*session
	followed map[string]string // uuid -> name, as added to the supervisor
	refused  map[string]bool   // uuids of wanted domains whose name breaks the VM name rule (logged once)
}

var eventLoopOnce sync.Once
var eventLoopErr error

// startEventLoop starts libvirt's default event loop once per process.
// libvirt needs it registered before the first connection that wants
// events.
func startEventLoop() error {
	eventLoopOnce.Do(func() {
		if eventLoopErr = golibvirt.EventRegisterDefaultImpl(); eventLoopErr != nil {
			return
		}
		go func() {
			for {
				if err := golibvirt.EventRunDefaultImpl(); err != nil {
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	})
	return eventLoopErr
}

// New returns a watcher; Run starts it.
func New(opts Options) (*Watcher, error) {
	if opts.Supervisor == nil {
		return nil, errors.New("libvirt: a watcher needs a supervisor")
	}
	if opts.URI == "" {
		opts.URI = DefaultURI
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Retry <= 0 {
		opts.Retry = 2 * time.Second
	}
	for _, p := range opts.Domains {
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("libvirt: domain pattern %q: %w", p, err)
		}
	}
	if err := startEventLoop(); err != nil {
		return nil, fmt.Errorf("libvirt: event loop: %w", err)
	}
	return &Watcher{opts: opts, log: opts.Logger, up: make(chan struct{}), attempted: make(chan struct{}),
		sessions: map[string]*session{}, followed: map[string]string{}, refused: map[string]bool{}}, nil
}

// connection waits for the libvirt connection.
func (w *Watcher) connection(ctx context.Context) (*golibvirt.Connect, error) {
	for {
		w.mu.Lock()
		conn, up := w.conn, w.up
		w.mu.Unlock()
		if conn != nil {
			return conn, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("libvirt: waiting for the connection to %s: %w", w.opts.URI, ctx.Err())
		case <-up:
		}
	}
}

// Run connects, follows domains and reconnects whenever the connection
// drops (libvirtd restarting), until ctx ends. When libvirtd is not
// running yet (its socket is absent or refuses connections) it says so
// once and connects when it comes up; it returns an error only when the
// first connection fails otherwise (a URI no driver takes, a refusal), so
// a misconfiguration is reported at start.
func (w *Watcher) Run(ctx context.Context) error {
	first, waiting := true, false
	for ctx.Err() == nil {
		lost, err := w.connect()
		if err != nil {
			if first && !daemonDown(err) {
				return err
			}
			if first && !waiting {
				waiting = true
				w.log.Warn("libvirtd is not reachable yet; following its domains once it is up", "uri", w.opts.URI, "error", err)
				w.markAttempted()
			}
			w.log.Debug("libvirt reconnect failed", "uri", w.opts.URI, "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(w.opts.Retry / 4):
			}
			continue
		}
		switch {
		case waiting && first:
			w.log.Info("connected to libvirt", "uri", w.opts.URI)
		case !first:
			w.log.Info("reconnected to libvirt", "uri", w.opts.URI)
		}
		first = false
		w.markAttempted()
		select {
		case <-ctx.Done():
		case <-lost:
			w.log.Warn("libvirt connection lost; reconnecting", "uri", w.opts.URI)
		}
		w.disconnect()
	}
	return nil
}

// connect opens the connection, registers the event callbacks and adopts
// the domains. lost is closed when the connection drops.
func (w *Watcher) connect() (lost chan struct{}, err error) {
	conn, err := golibvirt.NewConnect(w.opts.URI)
	if err != nil {
		return nil, fmt.Errorf("libvirt: connecting to %s: %w", w.opts.URI, err)
	}
	fail := func(what string, err error) (chan struct{}, error) {
		conn.Close()
		return nil, fmt.Errorf("libvirt: %s on %s: %w", what, w.opts.URI, err)
	}
	// A dead daemon that keeps the socket open is found by keepalive.
	if err := conn.SetKeepAlive(2, 3); err != nil {
		return fail("keepalive", err)
	}
	lost = make(chan struct{})
	var once sync.Once
	if err := conn.RegisterCloseCallback(func(*golibvirt.Connect, golibvirt.ConnectCloseReason) {
		once.Do(func() { close(lost) })
	}); err != nil {
		return fail("close callback", err)
	}
	if _, err := conn.DomainEventLifecycleRegister(nil, w.onLifecycle); err != nil {
		return fail("lifecycle events", err)
	}
	if _, err := conn.DomainQemuMonitorEventRegister(nil, ".*", w.onMonitor,
		golibvirt.CONNECT_DOMAIN_QEMU_MONITOR_EVENT_REGISTER_REGEX); err != nil {
		return fail("QEMU monitor events", err)
	}
	w.mu.Lock()
	w.conn = conn
	close(w.up)
	w.mu.Unlock()
	doms, err := conn.ListAllDomains(0)
	if err != nil {
		w.disconnect()
		return nil, fmt.Errorf("libvirt: listing domains on %s: %w", w.opts.URI, err)
	}
	for i := range doms {
		w.adopt(conn, &doms[i])
		doms[i].Free()
	}
	return lost, nil
}

// disconnect drops the connection; every session's stream hangs up, and
// the supervisor's clients redial, waiting for the next connection.
func (w *Watcher) disconnect() {
	w.mu.Lock()
	conn := w.conn
	w.conn = nil
	w.up = make(chan struct{})
	sessions := make([]*session, 0, len(w.sessions))
	for _, s := range w.sessions {
		sessions = append(sessions, s)
	}
	w.mu.Unlock()
	for _, s := range sessions {
		s.hangUp()
	}
	if conn != nil {
		conn.UnregisterCloseCallback()
		conn.Close()
	}
}

// wanted says whether the watcher follows a domain.
func (w *Watcher) wanted(info *DomainInfo) bool {
	if info.HasAgent {
		return true
	}
	for _, p := range w.opts.Domains {
		if ok, _ := path.Match(p, info.Name); ok {
			return true
		}
	}
	return false
}

// admit says whether to follow a domain: it is wanted, and its name
// follows the VM name rule. A wanted domain with a name outside the rule
// is logged once, naming the domain and the rule.
func (w *Watcher) admit(uuid string, info *DomainInfo) bool {
	if !w.wanted(info) {
		return false
	}
	err := info.CheckName()
	if err == nil {
		return true
	}
	w.mu.Lock()
	first := !w.refused[uuid]
	w.refused[uuid] = true
	w.mu.Unlock()
	if first {
		w.log.Error("not following a libvirt domain: its name breaks the VM name rule", "domain", info.Name, "uuid", uuid, "error", err)
	}
	return false
}

// adopt starts following a domain when it is wanted and not yet followed.
func (w *Watcher) adopt(conn *golibvirt.Connect, dom *golibvirt.Domain) {
	uuid, err := dom.GetUUIDString()
	if err != nil {
		return
	}
	doc, err := dom.GetXMLDesc(0)
	if err != nil {
		w.log.Debug("cannot read a domain's XML", "uuid", uuid, "error", err)
		return
	}
	info, err := ParseDomainXML(doc)
	if err != nil {
		w.log.Warn("ignoring a domain", "uuid", uuid, "error", err)
		return
	}
	if !w.admit(uuid, info) {
		return
	}
	w.mu.Lock()
	if _, ok := w.followed[uuid]; ok {
		w.mu.Unlock()
		return
	}
	s := w.sessions[uuid]
	if s == nil {
		s = newSession(w, uuid, info.Name)
		w.sessions[uuid] = s
	}
	w.followed[uuid] = info.Name
	w.mu.Unlock()
	cfg := w.opts.Base
	cfg.Name, cfg.UUID, cfg.Source = info.Name, uuid, host.SourceLibvirt
	cfg.QMP = "libvirt:" + w.opts.URI + "#" + info.Name
	cfg.Agent, cfg.AgentPortID = info.AgentPath, info.AgentAlias
	cfg.Dial = s.dial
	if err := w.opts.Supervisor.Add(context.Background(), cfg); err != nil {
		w.log.Error("cannot follow a domain", "domain", info.Name, "error", err)
		w.mu.Lock()
		delete(w.followed, uuid)
		delete(w.sessions, uuid)
		w.mu.Unlock()
		return
	}
	w.log.Info("following libvirt domain", "domain", info.Name, "uuid", uuid, "agent", info.HasAgent)
}

// forget stops following an undefined domain.
func (w *Watcher) forget(uuid string) {
	w.mu.Lock()
	name, ok := w.followed[uuid]
	s := w.sessions[uuid]
	delete(w.followed, uuid)
	delete(w.sessions, uuid)
	w.mu.Unlock()
	if s != nil {
		s.hangUp()
	}
	if ok {
		w.opts.Supervisor.Remove(name)
		w.log.Info("domain undefined; no longer followed", "domain", name)
	}
}

// session returns the session of a domain, creating one for a domain not
// seen before so that none of its events is lost while it is adopted.
func (w *Watcher) session(d *golibvirt.Domain) (*session, bool) {
	uuid, err := d.GetUUIDString()
	if err != nil {
		return nil, false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.sessions[uuid]
	if s != nil {
		return s, false
	}
	name, _ := d.GetName()
	s = newSession(w, uuid, name)
	w.sessions[uuid] = s
	return s, true
}

// onLifecycle runs on libvirt's event loop: it queues and returns.
func (w *Watcher) onLifecycle(c *golibvirt.Connect, d *golibvirt.Domain, e *golibvirt.DomainEventLifecycle) {
	ev, detail := LifecycleNames(int(e.Event), e.Detail)
	s, fresh := w.session(d)
	if s == nil {
		return
	}
	uuid := s.uuid
	switch ev {
	case "undefined":
		go w.forget(uuid)
		return
	case "defined":
		// a definition changed; it is not a lifecycle event of the guest
		if fresh || !w.isFollowed(uuid) {
			go w.adoptUUID(uuid)
		}
		return
	}
	s.push(lifecycleEvent(ev, detail))
	if !w.isFollowed(uuid) {
		go w.adoptUUID(uuid)
	}
}

// lifecycleEvent is the stream's event for a libvirt lifecycle event (names
// as LifecycleNames gives them). A "started" one is delivered after a
// description of the new QEMU instance.
func lifecycleEvent(ev, detail string) event {
	return event{Event: host.EventLibvirtLifecycle, Data: map[string]any{"event": ev, "detail": detail},
		describe: ev == "started"}
}

func (w *Watcher) isFollowed(uuid string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.followed[uuid]
	return ok
}

// adoptUUID adopts a domain seen first in an event (a new or incoming
// domain); a domain that is not wanted loses the session made for it.
func (w *Watcher) adoptUUID(uuid string) {
	conn, err := w.connection(context.Background())
	if err != nil {
		return
	}
	dom, err := conn.LookupDomainByUUIDString(uuid)
	if err != nil {
		return
	}
	defer dom.Free()
	w.adopt(conn, dom)
	w.mu.Lock()
	if _, ok := w.followed[uuid]; !ok {
		delete(w.sessions, uuid)
	}
	w.mu.Unlock()
}

// onMonitor runs on libvirt's event loop: it queues and returns.
func (w *Watcher) onMonitor(c *golibvirt.Connect, d *golibvirt.Domain, e *golibvirt.DomainQemuMonitorEvent) {
	uuid, err := d.GetUUIDString()
	if err != nil {
		return
	}
	w.mu.Lock()
	s := w.sessions[uuid]
	w.mu.Unlock()
	if s != nil {
		s.push(monitorEvent(e))
	}
}

// Connected returns a channel closed once the watcher is connected.
// daemonDown tells a libvirtd that is not running (its socket is absent
// or refuses connections: a system error on the connection) from a
// connection that cannot work (no driver for the URI, a refusal).
func daemonDown(err error) bool {
	var le golibvirt.Error
	return errors.As(err, &le) && le.Code == golibvirt.ERR_SYSTEM_ERROR
}

// markAttempted closes Attempted's channel once.
func (w *Watcher) markAttempted() {
	w.attemptOnce.Do(func() { close(w.attempted) })
}

// Attempted is closed once Run's first connection attempt is over: it
// connected, or libvirtd is not running yet and Run waits for it.
func (w *Watcher) Attempted() <-chan struct{} { return w.attempted }

func (w *Watcher) Connected() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.up
}
