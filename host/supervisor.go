// Package host is hvmon's host supervisor: it follows VMs over QMP, turns
// their lifecycle events into attestation requests to the guest agent,
// checks the guest evidence, adds what the host saw, signs one combined
// report per event, and stores it durably.
package host

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/agentproto"
	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/internal/dropq"
	"hvmon.dev/hvmon/qmp"
)

// Options configure a Supervisor.
type Options struct {
	Logger hclog.Logger
	// Signer is the host key every report is signed with.
	Signer attest.Signer
	// HostName is recorded in every report's observations; empty means
	// the system's host name. New refuses a name no report can carry.
	HostName string
	Store    Store
	// Evidence verifies hardware evidence in guest evidence before the
	// host signs around it; nil refuses any guest evidence that carries
	// hardware evidence (the report then says "bad-evidence").
	Evidence attest.EvidenceVerifier
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// TTL is the lifetime of reports; zero means attest.DefaultTTL.
	TTL time.Duration
	// AgentTimeout bounds one attest request; zero means 60 s.
	AgentTimeout time.Duration
	// MigrationHold bounds how long an outgoing live migration is held
	// (its bulk transfer stopped, the guest running) while the agent is
	// asked for the migrate-out evidence (migrate_hold.go); zero means
	// AgentTimeout, negative turns the hold off.
	MigrationHold time.Duration
	// Metrics, when set, receives counters and latencies.
	Metrics *Metrics
	// Hooks, when set, gives the libvirt hook events recorded for a VM
	// since its previous report; each report lists them as facts.
	Hooks interface {
		Pending(vm, uuid string) []HookEvent
	}
	// Trace, when set, is called after every request with the time each
	// step of its report took. It runs on the VM's worker: keep it short.
	Trace func(Timing)
	// Stored, when set, is called with every report stored, after Put
	// returned (the outbox's Kick). It runs on the VM's worker and must
	// not block.
	Stored func(Entry)
}

// VMConfig names a VM and where to reach it.
type VMConfig struct {
	// Name identifies the VM in reports (the report's workload).
	Name string
	// UUID is recorded in observations when known.
	UUID string
	// QMP is the path of a QMP unix socket reserved for hvmon; with Dial
	// set, only a name for the transport (shown in status and logs).
	QMP string
	// Dial, when set, opens the QMP transport instead of dialing QMP as a
	// unix socket (package host/libvirt passes QMP through libvirt).
	Dial func(ctx context.Context) (net.Conn, error)
	// Source is "" for a QMP socket, SourceLibvirt for a libvirt domain
	// (its stream carries libvirt's lifecycle events too).
	Source string
	// Agent is the path of the unix socket of the agent's virtio-serial
	// chardev; empty for VMs without an agent (reports then carry host
	// observations only).
	Agent string
	// AgentPortID is the QEMU device id of the agent's virtserialport
	// (VSERPORT_CHANGE names it); empty means "agentport0".
	AgentPortID string
	// Periodic is the interval of periodic attestations; zero disables them.
	Periodic time.Duration
	// Regions selects agent regions; empty means all.
	Regions []string
	// HostRegions are guest-physical ranges the host measures itself
	// (pmemsave), for VMs whose memory the host can read: non-confidential
	// VMs. Their claims say platform "host"; they never stand in for
	// hardware evidence.
	HostRegions []HostRegion
}

// HostRegion is a guest-physical range the host measures.
type HostRegion struct {
	ID      string
	Address uint64
	Size    uint64
}

// Supervisor follows VMs and produces their reports.
type Supervisor struct {
	opts Options
	log  hclog.Logger

	mu  sync.Mutex
	vms map[string]*vm
	wg  sync.WaitGroup
}

// New returns a supervisor with no VMs.
func New(opts Options) (*Supervisor, error) {
	if opts.Signer == nil || opts.Store == nil {
		return nil, errors.New("host: a supervisor needs a signer and a store")
	}
	if opts.HostName == "" {
		opts.HostName, _ = os.Hostname()
	}
	if err := checkReportText("host name", opts.HostName); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.TTL == 0 {
		opts.TTL = attest.DefaultTTL
	}
	if opts.AgentTimeout == 0 {
		opts.AgentTimeout = 60 * time.Second
	}
	if opts.MigrationHold == 0 {
		opts.MigrationHold = opts.AgentTimeout
	}
	return &Supervisor{opts: opts, log: opts.Logger, vms: map[string]*vm{}}, nil
}

// ErrUnknownVM is returned for a VM the supervisor does not follow.
var ErrUnknownVM = errors.New("unknown vm")

// ErrBadNonce is returned for a caller's nonce outside the format's bounds.
var ErrBadNonce = errors.New("bad nonce")

// ErrBadEvent is an event the caller may not ask for: one hvmon does not
// know, or, on demand, a lifecycle step (see OnDemandEvents).
var ErrBadEvent = errors.New("bad event")

// OnDemandEvents are the events an admin may ask a report for on demand
// (hvmon vm attest): checks of a running VM. Any other would let a
// request forge a lifecycle step (a boot of a running VM, a restore that
// never happened) that only the VM's own lifecycle may record.
var OnDemandEvents = []attest.Event{attest.EventOnDemand, attest.EventPeriodic}

// Add starts following a VM. Its host chain (seq and prev) continues from
// the head of this host's own chain for the VM in the store: the report
// with the highest seq signed by this host's key under its host name.
// Neither the reports' times (a clock that stepped back) nor other hosts'
// reports in a shared store move it.
func (s *Supervisor) Add(ctx context.Context, cfg VMConfig) error {
	if cfg.Name == "" || cfg.QMP == "" {
		return errors.New("host: a VM needs a name and a QMP socket")
	}
	if err := attest.CheckVMName(cfg.Name); err != nil {
		return fmt.Errorf("host: %w", err)
	}
	if cfg.AgentPortID == "" {
		cfg.AgentPortID = "agentport0"
	}
	head, err := s.chainHead(ctx, cfg.Name)
	if err != nil {
		return fmt.Errorf("host: finding the head of %s's host chain: %w", cfg.Name, err)
	}
	v := &vm{s: s, cfg: cfg, log: s.log.Named(cfg.Name), requests: make(chan request, 64), stop: make(chan struct{}), followed: s.opts.Now()}
	if head != nil {
		v.seq = head.Seq + 1
		h := head.Hash
		v.prev = &h
		// What the host chain's head says is the VM's last report, also
		// across a daemon restart.
		v.lastEvent, v.lastAt = head.Event, head.Time
	}
	s.mu.Lock()
	if _, dup := s.vms[cfg.Name]; dup {
		s.mu.Unlock()
		return fmt.Errorf("host: VM %q is already followed", cfg.Name)
	}
	s.vms[cfg.Name] = v
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		v.run()
	}()
	return nil
}

// chainHead returns the stored report at the head of this host's chain
// for vm, or nil when there is none. Entries are taken by seq, highest
// first; one whose name carries a chain tag is this host's when the tag is
// its own, and one stored without a tag (by an older hvmon) is read to
// tell. The head is found without reading a report, unless the store
// holds untagged reports of other chains above it.
func (s *Supervisor) chainHead(ctx context.Context, vm string) (*Entry, error) {
	es, err := s.opts.Store.List(ctx, Query{VM: vm})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(es, func(a, b Entry) int {
		return cmp.Or(cmp.Compare(b.Seq, a.Seq), b.Time.Compare(a.Time), strings.Compare(b.Hash.String(), a.Hash.String()))
	})
	kid := s.opts.Signer.KeyID()
	own := ChainTag(kid, s.opts.HostName)
	for _, e := range es {
		if e.Chain != "" {
			if e.Chain == own {
				return &e, nil
			}
			continue
		}
		var b []byte
		if r, ok := s.opts.Store.(interface{ read(Entry) ([]byte, error) }); ok {
			b, err = r.read(e)
		} else {
			b, _, err = s.opts.Store.Get(ctx, e.Hash)
		}
		if err != nil {
			return nil, err
		}
		in, err := attest.Inspect(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Hash, err)
		}
		if in.KeyID == kid && reportChainTag(in.Report) == own {
			return &e, nil
		}
	}
	return nil, nil
}

// Remove stops following a VM.
func (s *Supervisor) Remove(name string) error {
	s.mu.Lock()
	v := s.vms[name]
	delete(s.vms, name)
	s.mu.Unlock()
	if v == nil {
		return fmt.Errorf("%w: %q", ErrUnknownVM, name)
	}
	v.close()
	return nil
}

// Close stops following every VM and waits for their workers.
func (s *Supervisor) Close() {
	s.mu.Lock()
	vms := slices.Collect(maps.Values(s.vms))
	s.vms = map[string]*vm{}
	s.mu.Unlock()
	for _, v := range vms {
		v.close()
	}
	s.wg.Wait()
}

// VMStatus describes a followed VM.
type VMStatus struct {
	Name string `json:"name"`
	QMP  string `json:"qmp"`
	// Connected: hvmon reaches the VM's running QEMU over QMP (a libvirt
	// domain's stream stays open while the domain is shut off: that is
	// not connected).
	Connected bool   `json:"connected"`
	State     string `json:"state"`
	// Agent is the agent status of the VM's last report ("" before one).
	Agent     attest.AgentStatus `json:"agent,omitempty"`
	Seq       uint64             `json:"next_seq"`
	LastEvent string             `json:"last_event,omitempty"`
	LastAt    time.Time          `json:"last_at,omitzero"`
	// Followed is when the daemon started following the VM.
	Followed time.Time `json:"followed"`
	// Periodic is the VM's interval of periodic attestations (zero: none).
	// It is exported as the metric hvmon_vm_periodic_seconds, not in the
	// API's JSON.
	Periodic time.Duration `json:"-"`
}

// VMs lists the followed VMs.
func (s *Supervisor) VMs() []VMStatus {
	s.mu.Lock()
	vms := slices.Collect(maps.Values(s.vms))
	s.mu.Unlock()
	out := make([]VMStatus, 0, len(vms))
	for _, v := range vms {
		out = append(out, v.status())
	}
	slices.SortFunc(out, func(a, b VMStatus) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// Attest makes an on-demand report for a VM now and returns its entry.
func (s *Supervisor) Attest(ctx context.Context, name string, event attest.Event, facts map[string]string) (Entry, error) {
	return s.AttestNonce(ctx, name, event, facts, nil)
}

// AttestNonce is Attest answering nonce: the agent's guest evidence and the
// report carry it, so that a relying party that chose it can check the
// report answers its own question. A nil nonce is drawn fresh.
func (s *Supervisor) AttestNonce(ctx context.Context, name string, event attest.Event, facts map[string]string, nonce []byte) (Entry, error) {
	if nonce != nil && (len(nonce) < attest.MinNonceSize || len(nonce) > attest.MaxNonceSize) {
		return Entry{}, fmt.Errorf("%w: %d bytes, want %d to %d", ErrBadNonce, len(nonce), attest.MinNonceSize, attest.MaxNonceSize)
	}
	s.mu.Lock()
	v := s.vms[name]
	s.mu.Unlock()
	if v == nil {
		return Entry{}, fmt.Errorf("%w: %q", ErrUnknownVM, name)
	}
	if !event.Valid() {
		return Entry{}, fmt.Errorf("%w: unknown event %q", ErrBadEvent, event)
	}
	r := request{event: event, at: s.opts.Now(), made: time.Now(), facts: facts, nonce: nonce, done: make(chan result, 1)}
	select {
	case v.requests <- r:
	case <-ctx.Done():
		return Entry{}, ctx.Err()
	case <-v.stop:
		return Entry{}, fmt.Errorf("%w: %q stopped", ErrUnknownVM, name)
	}
	select {
	case res := <-r.done:
		return res.entry, res.err
	case <-ctx.Done():
		return Entry{}, ctx.Err()
	}
}

// request is one report to make.
type request struct {
	event attest.Event
	at    time.Time // when the host saw the lifecycle event
	made  time.Time // when the request was made (monotonic; for Timing)
	facts map[string]string
	nonce []byte      // the caller's nonce; nil draws a fresh one
	done  chan result // nil for event-driven requests
	// noAgent, when set, says why the agent is not asked (the guest is
	// gone or cannot run); the report's agent status is "none".
	noAgent string
}

type result struct {
	entry Entry
	err   error
}

// vm is the worker of one VM: one goroutine owns its QMP client, its agent
// connection and its chain.
type vm struct {
	s        *Supervisor
	cfg      VMConfig
	log      hclog.Logger
	requests chan request
	stop     chan struct{}
	once     sync.Once

	mu        sync.Mutex
	connected bool
	state     string // QMP run state
	lastEvent attest.Event
	lastAt    time.Time
	lastAgent attest.AgentStatus // of the last report; "" before one
	followed  time.Time          // when Add started following the VM

	// owned by run
	qmp   *qmp.Client
	agent *agentproto.Client
	aconn net.Conn
	seq   uint64
	prev  *attest.Digest
	qemu  string         // QEMU's version, from the QMP greeting
	lc    lifecycle      // what the worker knows of the VM between events
	hold  *migrationHold // shared by the gate and the worker
}

func (v *vm) close() { v.once.Do(func() { close(v.stop) }) }

func (v *vm) status() VMStatus {
	v.mu.Lock()
	defer v.mu.Unlock()
	return VMStatus{Name: v.cfg.Name, QMP: v.cfg.QMP, Connected: v.connected && v.state != "shutoff", State: v.state, Seq: v.seq,
		Agent: v.lastAgent, LastEvent: string(v.lastEvent), LastAt: v.lastAt, Followed: v.followed, Periodic: v.cfg.Periodic}
}

// run is the VM's worker loop: QMP events and requests in, reports out.
func (v *vm) run() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-v.stop
		cancel()
	}()
	v.qmp = qmp.New(v.cfg.QMP, qmp.Options{Logger: v.log.Named("qmp"), Reconnect: true, Dial: v.cfg.Dial})
	v.hold = newMigrationHold(v, v.s.opts.MigrationHold)
	v.lc = newLifecycle(v.cfg)
	defer v.qmp.Disconnect()
	defer v.hold.close() // before the client goes: a hold never outlives the worker
	defer v.closeAgent()
	// Events reach the worker through its gate (migrate_hold.go), which
	// holds a starting migration even while the worker is busy.
	raw, _ := v.qmp.Events(ctx)
	inbox := dropq.New[qmp.Event](qmp.QueueSize)
	go v.gate(ctx, raw, inbox)
	events := forward(ctx, inbox)
	go v.connectLoop(ctx)
	var tick <-chan time.Time
	if v.cfg.Periodic > 0 {
		t := time.NewTicker(v.cfg.Periodic)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-events:
			if !ok {
				return
			}
			made := time.Now()
			for _, r := range v.onEvent(ctx, e) {
				r.made = made
				v.handle(ctx, r)
			}
		case <-tick:
			if v.lc.periodicDue() {
				v.handle(ctx, request{event: attest.EventPeriodic, at: v.s.opts.Now(), made: time.Now()})
			}
		case r := <-v.requests:
			v.handle(ctx, r)
		}
	}
}

// forward delivers the gate's queue to the worker, with an EventDropped
// for the events the queue dropped while the worker was busy.
func forward(ctx context.Context, q *dropq.Queue[qmp.Event]) <-chan qmp.Event {
	out := make(chan qmp.Event)
	go q.Forward(ctx, out, qmp.DroppedEvent)
	return out
}

// connectLoop makes the first QMP connection (later ones are the client's
// own reconnects).
func (v *vm) connectLoop(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, qmp.DefaultTimeout)
		err := v.qmp.ConnectContext(cctx)
		cancel()
		if err == nil || errors.Is(err, qmp.ErrClosed) {
			return
		}
		v.log.Trace("qmp connect failed", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// onEvent runs one event of the VM's QMP stream through its lifecycle
// machine, does what the machine's transition asks, and returns the
// reports to make.
func (v *vm) onEvent(ctx context.Context, e qmp.Event) []request {
	if m := v.s.opts.Metrics; m != nil && e.Event != "" {
		m.event(v.cfg.Name, e.Event)
	}
	if v.cfg.Source == SourceLibvirt {
		v.log.Trace("libvirt event", "event", e.Event, "data", e.Data)
	} else {
		v.log.Trace("qmp event", "event", e.Event, "data", e.Data)
	}
	if e.Event == qmp.EventConnected {
		v.qemu = v.qmp.Greeting().QMP.Version.String()
	}
	t := v.lc.step(ctx, clientQueries{v.qmp, v.log}, e, eventTime(e, v.s.opts.Now()))
	if t.closeAgent {
		v.closeAgent()
	}
	if t.state != "" {
		v.setState(t.state)
	}
	if n := t.note; n != nil {
		v.log.Log(n.level, n.msg, n.args...)
	}
	switch e.Event {
	case qmp.EventConnected:
		// Without MIGRATION events, hvmon would not see migrations. (libvirt
		// sets the migration capabilities of its domains itself.)
		if v.cfg.Source != SourceLibvirt {
			if err := v.qmp.MigrateSetCapabilities(ctx, qmp.MigrationCapability{Capability: "events", State: true}); err != nil {
				v.log.Warn("cannot enable migration events", "error", err)
			}
		}
		v.setConnected(true)
	case qmp.EventDisconnected:
		v.setConnected(false)
	case "MIGRATION":
		if !slices.ContainsFunc(t.events, func(le lifecycleEvent) bool { return le.event == attest.EventMigrateOut }) {
			// Not a migrate-out: a hold the gate set is not needed.
			v.hold.release("not a migrate-out")
		}
	}
	reqs := make([]request, len(t.events))
	for i, le := range t.events {
		reqs[i] = request{event: le.event, at: le.at, facts: le.facts, noAgent: le.noAgent}
	}
	return reqs
}

// clientQueries answers a lifecycle machine's queries over the worker's
// QMP client.
type clientQueries struct {
	*qmp.Client
	log hclog.Logger
}

var _ lifecycleQueries = clientQueries{}

// LibvirtSnapshots asks the libvirt transport for the domain's snapshots
// created at since or later, up to 10 times 200 ms apart while it lists
// none.
func (c clientQueries) LibvirtSnapshots(ctx context.Context, since time.Time) ([]libvirtSnapshot, error) {
	for try := 1; ; try++ {
		var list []libvirtSnapshot
		if err := c.Execute(ctx, CommandLibvirtSnapshots, nil, &list); err != nil {
			c.log.Debug("cannot list snapshots", "error", err)
			return nil, err
		}
		if list = snapshotsSince(list, since); len(list) > 0 || try == 10 {
			return list, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (v *vm) setConnected(c bool) {
	v.mu.Lock()
	v.connected = c
	v.mu.Unlock()
}

func (v *vm) setState(s string) {
	v.mu.Lock()
	v.state = s
	v.mu.Unlock()
}
