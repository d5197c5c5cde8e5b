// Package host is hvmon's host supervisor: it follows VMs over QMP, turns
// their lifecycle events into attestation requests to the guest agent,
// checks the guest evidence, adds what the host saw, signs one combined
// report per event, and stores it durably.
package host

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
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
		Pending(vm string) []HookEvent
	}
	// Trace, when set, is called after every request with the time each
	// step of its report took. It runs on the VM's worker: keep it short.
	Trace func(Timing)
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
	v := &vm{s: s, cfg: cfg, log: s.log.Named(cfg.Name), requests: make(chan request, 64), stop: make(chan struct{})}
	if head != nil {
		v.seq = head.Seq + 1
		h := head.Hash
		v.prev = &h
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
	Name      string    `json:"name"`
	QMP       string    `json:"qmp"`
	Connected bool      `json:"connected"`
	State     string    `json:"state"`
	Seq       uint64    `json:"next_seq"`
	LastEvent string    `json:"last_event,omitempty"`
	LastAt    time.Time `json:"last_at,omitzero"`
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
		return Entry{}, fmt.Errorf("host: unknown event %q", event)
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

	// owned by run
	qmp   *qmp.Client
	agent *agentproto.Client
	aconn net.Conn
	seq   uint64
	prev  *attest.Digest
	qemu  string
	lc    lifecycle
	llc   libvirtLifecycle
	hold  *migrationHold // shared by the gate and the worker
}

func (v *vm) close() { v.once.Do(func() { close(v.stop) }) }

func (v *vm) status() VMStatus {
	v.mu.Lock()
	defer v.mu.Unlock()
	return VMStatus{Name: v.cfg.Name, QMP: v.cfg.QMP, Connected: v.connected, State: v.state, Seq: v.seq,
		LastEvent: string(v.lastEvent), LastAt: v.lastAt}
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
	onEvent := v.onEvent
	if v.cfg.Source == SourceLibvirt {
		v.llc = newLibvirtLifecycle()
		onEvent = v.onLibvirtEvent
	}
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
			for _, r := range onEvent(ctx, e) {
				r.made = made
				v.handle(ctx, r)
			}
		case <-tick:
			if v.periodicDue() {
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

// periodicDue says whether the VM runs with its agent up (or has no agent),
// so that a periodic report is worth making.
func (v *vm) periodicDue() bool {
	if v.cfg.Source == SourceLibvirt {
		return v.llc.running && (v.llc.booted || v.cfg.Agent == "")
	}
	return v.lc.running && (v.lc.booted || v.cfg.Agent == "")
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

// handle makes one report and answers the request.
func (v *vm) handle(ctx context.Context, r request) {
	start := time.Now()
	if r.made.IsZero() {
		r.made = start
	}
	tm := Timing{VM: v.cfg.Name, Event: r.event, Queued: start.Sub(r.made)}
	e, err := v.report(ctx, r, &tm)
	tm.Err, tm.Total = err, time.Since(r.made)
	if m := v.s.opts.Metrics; m != nil {
		m.observe(v.cfg.Name, r.event, err, tm.Total)
	}
	logTiming(v.log, &tm)
	if v.s.opts.Trace != nil {
		v.s.opts.Trace(tm)
	}
	if err != nil {
		v.log.Error("report failed", "event", r.event, "error", err)
	} else {
		v.mu.Lock()
		v.lastEvent, v.lastAt = r.event, e.Time
		v.mu.Unlock()
	}
	if r.done != nil {
		r.done <- result{e, err}
	}
}

func (v *vm) closeAgent() {
	if v.aconn != nil {
		v.aconn.Close()
		v.aconn, v.agent = nil, nil
	}
}

// attestAgent asks the agent for guest evidence, reconnecting first when
// needed. It returns the evidence and the agent status for observations.
func (v *vm) attestAgent(ctx context.Context, nonce []byte, event attest.Event, tm *Timing) ([]byte, attest.AgentStatus, string) {
	if v.cfg.Agent == "" {
		return nil, "none", "no agent configured for this VM"
	}
	ctx, cancel := context.WithTimeout(ctx, v.s.opts.AgentTimeout)
	defer cancel()
	for attempt := 0; attempt < 2; attempt++ {
		if v.agent == nil {
			t0 := time.Now()
			var d net.Dialer
			c, err := d.DialContext(ctx, "unix", v.cfg.Agent)
			if err != nil {
				return nil, "unavailable", fmt.Sprintf("connecting to the agent socket: %v", err)
			}
			v.aconn, v.agent = c, agentproto.NewClient(c)
			tm.Redials++
			// The first call would sync by itself; doing it here times it apart.
			err = v.agent.Sync(ctx)
			tm.AgentConnect += time.Since(t0)
			if err != nil {
				v.closeAgent()
				if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
					return nil, "timeout", err.Error()
				}
				if attempt == 1 {
					return nil, "unavailable", err.Error()
				}
				continue // a broken connection: redial once
			}
		}
		t0 := time.Now()
		res, err := v.agent.Attest(ctx, agentproto.AttestArgs{Nonce: nonce, Event: event, VM: v.cfg.Name, Regions: v.cfg.Regions})
		tm.Agent += time.Since(t0)
		if err == nil {
			return res.Evidence, "ok", ""
		}
		var perr *agentproto.Error
		switch {
		case errors.As(err, &perr):
			return nil, "error", perr.Error()
		case errors.Is(err, agentproto.ErrBadReply):
			return nil, "error", err.Error()
		case ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded):
			v.closeAgent()
			return nil, "timeout", err.Error()
		}
		// A broken connection (QEMU restarted the chardev): redial once.
		v.closeAgent()
		if attempt == 1 {
			return nil, "unavailable", err.Error()
		}
	}
	return nil, "unavailable", "unreachable"
}

// report makes, signs and stores one report.
func (v *vm) report(ctx context.Context, r request, tm *Timing) (Entry, error) {
	o := v.s.opts
	nonce := r.nonce
	if nonce == nil {
		nonce = make([]byte, attest.NonceSize)
		if _, err := rand.Read(nonce); err != nil {
			return Entry{}, err
		}
	}
	facts := map[string]string{}
	maps.Copy(facts, v.lc.facts)
	maps.Copy(facts, r.facts)
	if v.cfg.UUID != "" {
		facts["vm_uuid"] = v.cfg.UUID
	}
	if v.qemu != "" {
		facts["qemu"] = v.qemu
	}
	if o.Hooks != nil {
		if evs := o.Hooks.Pending(v.cfg.Name); len(evs) > 0 {
			ops := make([]string, len(evs))
			for i, e := range evs {
				ops[i] = e.Op + "/" + e.SubOp
			}
			facts["libvirt_hooks"] = strings.Join(ops, ",")
			facts["libvirt_hook_xml_sha3"] = evs[len(evs)-1].XMLSHA3
		}
	}
	// query-status runs beside the agent's round trip, which dominates a
	// report's latency, rather than before it; a QEMU that does not answer
	// delays the report by at most qmp.DefaultTimeout.
	var qmpStatus string
	statusDone := make(chan struct{})
	go func() {
		defer close(statusDone)
		t0 := time.Now()
		sctx, cancel := context.WithTimeout(ctx, qmp.DefaultTimeout)
		defer cancel()
		if st, err := v.qmp.QueryStatus(sctx); err == nil {
			qmpStatus = st.Status
		} else {
			qmpStatus = "unknown: " + err.Error()
		}
		tm.Status = time.Since(t0)
	}()
	obs := &attest.Observations{Host: o.HostName, EventAt: r.at.Truncate(time.Millisecond).UTC(), Facts: facts}
	var guest []byte
	var t0 time.Time
	switch {
	case r.noAgent != "":
		obs.Agent, obs.Detail = "none", r.noAgent
	case r.event == attest.EventShutdown:
		obs.Agent, obs.Detail = "none", "the guest has shut down; no agent to ask"
	default:
		actx, done := ctx, func() {}
		if r.event == attest.EventMigrateOut {
			// The source may stop for the switchover (when the hold could
			// not be set, or was skipped): the agent cannot answer then.
			actx, done = v.hold.agentContext(ctx)
		}
		ev, status, detail := v.attestAgent(actx, nonce, r.event, tm)
		if ev == nil && errors.Is(context.Cause(actx), errSourceStopped) {
			status, detail = "unavailable", errSourceStopped.Error()
		}
		done()
		if r.event == attest.EventMigrateOut {
			// Asked first, released first: the migration goes on before
			// anything else the report needs.
			v.hold.release("the agent was asked: " + string(status))
		}
		obs.Agent, obs.Detail = status, detail
		if ev != nil {
			t0 = time.Now()
			g, err := attest.CheckGuestEvidence(ev, nonce, r.event, v.cfg.Name, attest.VerifyOptions{Evidence: o.Evidence, Now: o.Now()})
			tm.Check = time.Since(t0)
			if err != nil {
				obs.Agent, obs.Detail = "bad-evidence", err.Error()
				facts["rejected_evidence_hash"] = attest.ReportHash(ev).String()
				facts["rejected_evidence_size"] = strconv.Itoa(len(ev))
			} else {
				guest = ev
				if m := o.Metrics; m != nil {
					for _, c := range g.Claims {
						if len(c.Snapshot.Changed) > 0 {
							m.regionChanged(v.cfg.Name, c.Region.ID)
						}
					}
				}
			}
		}
	}
	if r.event == attest.EventMigrateOut {
		v.hold.release("migrate-out reported") // when the agent was not asked
		maps.Copy(facts, v.hold.facts())
	}
	obs.Detail = fitText(obs.Detail) // agent and QEMU text, bounded before it is logged too
	if obs.Agent != "ok" {
		if m := o.Metrics; m != nil {
			m.agentFailure(v.cfg.Name, string(obs.Agent))
		}
		v.log.Warn("no guest evidence", "event", r.event, "agent", obs.Agent, "detail", obs.Detail)
	}
	<-statusDone
	facts["qmp_status"] = qmpStatus
	t0 = time.Now()
	claims, err := v.measureHost(ctx)
	tm.HostRegions = since(&t0)
	if err != nil {
		facts["host_measure_error"] = err.Error()
		v.log.Warn("host-measured regions failed", "error", err)
	}
	now := o.Now().Truncate(time.Second).UTC()
	rep := &attest.Report{
		IssuedAt: now, ExpiresAt: now.Add(o.TTL), Nonce: nonce, Event: r.event, Workload: v.cfg.Name,
		Platform: "host", Attester: attest.Identity{Name: o.HostName}, Seq: v.seq, Prev: v.prev,
		Guest: guest, Host: obs, Claims: claims,
	}
	t0 = time.Now()
	signed, err := signReport(o.Signer, rep) // fits the observations; never drops the event for what it carries
	tm.Sign = since(&t0)
	if err != nil {
		return Entry{}, err
	}
	if guest != nil && rep.Guest == nil {
		if m := o.Metrics; m != nil {
			m.agentFailure(v.cfg.Name, string(rep.Host.Agent))
		}
		v.log.Warn("guest evidence left out", "event", r.event, "detail", rep.Host.Detail)
	}
	e, err := o.Store.Put(ctx, v.cfg.Name, signed, rep)
	tm.Store = since(&t0)
	if err != nil {
		return Entry{}, err
	}
	v.mu.Lock()
	v.seq++
	h := e.Hash
	v.prev = &h
	v.mu.Unlock()
	v.log.Info("report", "vm", v.cfg.Name, "event", r.event, "seq", rep.Seq, "agent", rep.Host.Agent, "hash", e.Hash.String())
	return e, nil
}
