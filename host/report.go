package host

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"net"
	"strconv"
	"strings"
	"time"

	"hvmon.dev/hvmon/agentproto"
	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/qmp"
)

// Report assembly (docs/ARCHITECTURE.md, "Report assembly"): how a
// request, made by a lifecycle event, the periodic timer or an API call,
// becomes a signed, stored report. vm.report runs the steps in order:
//
//  1. collectFacts: the facts the report starts with; query-status for
//     qmp_status is asked beside step 2 (queryStatus);
//  2. guestEvidence: the agent's guest evidence for a fresh nonce, checked
//     before it is embedded (under the migrate-out hold for migrate-out);
//  3. hostRegions: the ranges of guest memory the host measures itself;
//  4. seal: sign with the host key, store, and only then advance the VM's
//     host chain.
//
// What the steps gather comes from the agent, QEMU, libvirt and API
// callers; assemble.go makes it fit the format as it is signed, so that no
// input costs the event its report. Every step is timed (Timing).

// handle makes the report of one request, times it, and answers the
// request.
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

// report makes, signs and stores the report of r.
func (v *vm) report(ctx context.Context, r request, tm *Timing) (Entry, error) {
	o := v.s.opts
	nonce := r.nonce
	if nonce == nil {
		nonce = make([]byte, attest.NonceSize)
		if _, err := rand.Read(nonce); err != nil {
			return Entry{}, err
		}
	}
	facts := v.collectFacts(r)
	qmpStatus := v.queryStatus(ctx, tm)
	obs := &attest.Observations{Host: o.HostName, EventAt: r.at.Truncate(time.Millisecond).UTC(), Facts: facts}
	guest := v.guestEvidence(ctx, r, nonce, obs, tm)
	facts["qmp_status"] = qmpStatus()
	claims := v.hostRegions(ctx, facts, tm)
	return v.seal(ctx, &attest.Report{
		Nonce: nonce, Event: r.event, Workload: v.cfg.Name, Platform: "host", Attester: attest.Identity{Name: o.HostName},
		Guest: guest, Host: obs, Claims: claims,
	}, tm)
}

// collectFacts is step 1: the facts the report starts with. The lifecycle
// machine's remembered facts come first, then the request's own, then the
// host's: vm_uuid, qemu (QEMU's version from the QMP greeting), and the
// libvirt hook events recorded for the VM since its previous report
// (taken: each is listed once).
func (v *vm) collectFacts(r request) map[string]string {
	facts := map[string]string{}
	maps.Copy(facts, v.lc.facts())
	maps.Copy(facts, r.facts)
	if v.cfg.UUID != "" {
		facts["vm_uuid"] = v.cfg.UUID
	}
	if v.qemu != "" {
		facts["qemu"] = v.qemu
	}
	if h := v.s.opts.Hooks; h != nil {
		if evs := h.Pending(v.cfg.Name, v.cfg.UUID); len(evs) > 0 {
			ops := make([]string, len(evs))
			for i, e := range evs {
				ops[i] = e.Op + "/" + e.SubOp
			}
			facts["libvirt_hooks"] = strings.Join(ops, ",")
			facts["libvirt_hook_xml_sha3"] = evs[len(evs)-1].XMLSHA3
		}
	}
	return facts
}

// queryStatus asks QEMU's run state for fact qmp_status, and returns the
// function that waits for the answer. It runs beside the agent's round
// trip, which dominates a report's latency, rather than before it; a QEMU
// that does not answer delays the report by at most qmp.DefaultTimeout.
func (v *vm) queryStatus(ctx context.Context, tm *Timing) (wait func() string) {
	var status string
	done := make(chan struct{})
	go func() {
		defer close(done)
		t0 := time.Now()
		sctx, cancel := context.WithTimeout(ctx, qmp.DefaultTimeout)
		defer cancel()
		if st, err := v.qmp.QueryStatus(sctx); err == nil {
			status = st.Status
		} else {
			status = "unknown: " + err.Error()
		}
		tm.Status = time.Since(t0)
	}()
	return func() string {
		<-done
		return status
	}
}

// guestEvidence is step 2. It asks the agent for guest evidence answering
// nonce, unless the request or its event rules the agent out, and checks
// what comes back with attest.CheckGuestEvidence. It returns the evidence
// to embed, nil when there is none, and records in obs the agent status
// and detail, and as facts the evidence it rejected. A migrate-out asks
// under the migrate-out hold, which it releases (migrate_hold.go), and
// records how the hold went.
func (v *vm) guestEvidence(ctx context.Context, r request, nonce []byte, obs *attest.Observations, tm *Timing) []byte {
	o := v.s.opts
	var guest []byte
	switch {
	case r.noAgent != "":
		obs.Agent, obs.Detail = attest.AgentNone, r.noAgent
	case r.event == attest.EventShutdown:
		obs.Agent, obs.Detail = attest.AgentNone, "the guest has shut down; no agent to ask"
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
			t0 := time.Now()
			g, err := attest.CheckGuestEvidence(ev, nonce, r.event, v.cfg.Name, attest.VerifyOptions{Evidence: o.Evidence, Now: o.Now()})
			tm.Check = time.Since(t0)
			if err != nil {
				obs.Agent, obs.Detail = "bad-evidence", err.Error()
				obs.Facts["rejected_evidence_hash"] = attest.ReportHash(ev).String()
				obs.Facts["rejected_evidence_size"] = strconv.Itoa(len(ev))
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
		maps.Copy(obs.Facts, v.hold.facts())
	}
	obs.Detail = fitText(obs.Detail) // agent and QEMU text, bounded before it is logged too
	if obs.Agent != attest.AgentOK {
		if m := o.Metrics; m != nil {
			m.agentFailure(v.cfg.Name, string(obs.Agent))
		}
		if r.noAgent != "" || r.event == attest.EventShutdown {
			// Expected: the event rules the agent out.
			v.log.Info("no guest evidence", "event", r.event, "agent", obs.Agent, "detail", obs.Detail)
		} else {
			v.log.Warn("no guest evidence", "event", r.event, "agent", obs.Agent, "detail", obs.Detail)
		}
	}
	v.mu.Lock()
	v.lastAgent = obs.Agent
	v.mu.Unlock()
	return guest
}

// hostRegions is step 3: the VM's host-measured regions (pmem.go) as
// claims of platform "host". A failure is recorded as fact
// host_measure_error, and the report is made all the same.
func (v *vm) hostRegions(ctx context.Context, facts map[string]string, tm *Timing) []attest.Claim {
	t0 := time.Now()
	claims, err := v.measureHost(ctx)
	tm.HostRegions = time.Since(t0)
	if err != nil {
		facts["host_measure_error"] = err.Error()
		v.log.Warn("host-measured regions failed", "error", err)
	}
	return claims
}

// seal is step 4. It stamps rep with its times and its place in the VM's
// host chain (seq and prev), signs it with the host key (signReport fits
// it to the format, and never drops the event for what it carries), and
// stores it. Only a stored report advances the chain; only then do the
// log and the caller learn it exists.
func (v *vm) seal(ctx context.Context, rep *attest.Report, tm *Timing) (Entry, error) {
	o := v.s.opts
	now := o.Now().Truncate(time.Second).UTC()
	rep.IssuedAt, rep.ExpiresAt = now, now.Add(o.TTL)
	rep.Seq, rep.Prev = v.seq, v.prev
	hadGuest := rep.Guest != nil
	t0 := time.Now()
	signed, err := signReport(o.Signer, rep)
	tm.Sign = since(&t0)
	if err != nil {
		return Entry{}, err
	}
	if hadGuest && rep.Guest == nil {
		if m := o.Metrics; m != nil {
			m.agentFailure(v.cfg.Name, string(rep.Host.Agent))
		}
		v.log.Warn("guest evidence left out", "event", rep.Event, "detail", rep.Host.Detail)
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
	v.log.Info("report", "vm", v.cfg.Name, "event", rep.Event, "seq", rep.Seq, "agent", rep.Host.Agent, "hash", e.Hash.String())
	if o.Stored != nil {
		o.Stored(e)
	}
	return e, nil
}

// attestAgent asks the agent for guest evidence, connecting first when no
// connection is open (and syncing), and redialling once on a broken one.
// It returns the evidence and the agent status and detail for the
// observations.
func (v *vm) attestAgent(ctx context.Context, nonce []byte, event attest.Event, tm *Timing) ([]byte, attest.AgentStatus, string) {
	socket := v.lc.agentSocket()
	if socket == "" {
		return nil, attest.AgentNone, "no agent configured for this VM"
	}
	ctx, cancel := context.WithTimeout(ctx, v.s.opts.AgentTimeout)
	defer cancel()
	for attempt := 0; attempt < 2; attempt++ {
		if v.agent == nil {
			t0 := time.Now()
			var d net.Dialer
			c, err := d.DialContext(ctx, "unix", socket)
			if err != nil {
				return nil, attest.AgentUnavailable, fmt.Sprintf("connecting to the agent socket: %v", err)
			}
			v.aconn, v.agent = c, agentproto.NewClient(c)
			tm.Redials++
			// The first call would sync by itself; doing it here times it apart.
			err = v.agent.Sync(ctx)
			tm.AgentConnect += time.Since(t0)
			if err != nil {
				v.closeAgent()
				if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
					return nil, attest.AgentTimeout, err.Error()
				}
				if attempt == 1 {
					return nil, attest.AgentUnavailable, err.Error()
				}
				continue // a broken connection: redial once
			}
		}
		t0 := time.Now()
		res, err := v.agent.Attest(ctx, agentproto.AttestArgs{Nonce: nonce, Event: event, VM: v.cfg.Name, Regions: v.cfg.Regions})
		tm.Agent += time.Since(t0)
		if err == nil {
			return res.Evidence, attest.AgentOK, ""
		}
		var perr *agentproto.Error
		switch {
		case errors.As(err, &perr):
			return nil, attest.AgentError, perr.Error()
		case errors.Is(err, agentproto.ErrBadReply):
			return nil, attest.AgentError, err.Error()
		case ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded):
			v.closeAgent()
			return nil, attest.AgentTimeout, err.Error()
		}
		// A broken connection (QEMU restarted the chardev): redial once.
		v.closeAgent()
		if attempt == 1 {
			return nil, attest.AgentUnavailable, err.Error()
		}
	}
	return nil, attest.AgentUnavailable, "unreachable"
}

// closeAgent drops the agent connection; the next request dials again.
func (v *vm) closeAgent() {
	if v.aconn != nil {
		v.aconn.Close()
		v.aconn, v.agent = nil, nil
	}
}
