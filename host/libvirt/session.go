//go:build cgo

package libvirt

import (
	"context"
	"crypto/sha3"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	golibvirt "libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/internal/boundedfile"
	"hvmon.dev/hvmon/internal/dropq"
	"hvmon.dev/hvmon/qmp"
)

// maxQueued bounds the events a session keeps while the supervisor is not
// connected to it; beyond that the oldest go and the next connection
// starts with an HVMON_EVENTS_DROPPED event, as qmp.Client does.
const maxQueued = 4096

// maxCommands bounds the commands of one stream that run at once.
const maxCommands = 8

// event is one event for a domain, in the QMP wire shape.
type event struct {
	Event     string         `json:"event"`
	Data      map[string]any `json:"data,omitempty"`
	Timestamp struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`

	// describe asks the writer to send an EventLibvirtDomain description
	// of the domain before this event (set on "started").
	describe bool
}

func newEvent(name string, data map[string]any, at time.Time) event {
	e := event{Event: name, Data: data}
	e.Timestamp.Seconds = at.Unix()
	e.Timestamp.Microseconds = int64(at.Nanosecond() / 1000)
	return e
}

// session is the QMP-over-libvirt stream of one domain. The supervisor's
// qmp.Client dials it (dial returns one end of an in-memory pipe) and
// speaks QMP; the session answers qmp_capabilities itself, passes every
// other command to libvirt's QemuMonitorCommand, and writes the domain's
// libvirt lifecycle events and QEMU monitor events as QMP events, in the
// order libvirt delivered them. Events that arrive while no client is
// connected wait in a bounded queue.
type session struct {
	w    *Watcher
	uuid string
	name string
	log  hclog.Logger

	queue *dropq.Queue[event]

	mu   sync.Mutex
	conn net.Conn // the session's end of the current pipe
}

func newSession(w *Watcher, uuid, name string) *session {
	return &session{w: w, uuid: uuid, name: name, log: w.log.Named(name), queue: dropq.New[event](maxQueued)}
}

// push queues an event for the domain. It never blocks: libvirt's event
// loop calls it.
func (s *session) push(e event) { s.queue.Push(e) }

// dial is the supervisor's qmp.Options.Dial for this domain: it waits for
// the watcher's libvirt connection and returns a fresh QMP stream.
func (s *session) dial(ctx context.Context) (net.Conn, error) {
	conn, err := s.w.connection(ctx)
	if err != nil {
		return nil, err
	}
	client, server := net.Pipe()
	s.mu.Lock()
	if s.conn != nil {
		s.conn.Close()
	}
	s.conn = server
	s.mu.Unlock()
	go s.serve(conn, server)
	return client, nil
}

// hangUp closes the current stream, so the client reconnects (after a
// libvirt connection loss, or when the domain goes away).
func (s *session) hangUp() {
	s.mu.Lock()
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	s.mu.Unlock()
}

// serve speaks QMP on one pipe until it closes.
func (s *session) serve(conn *golibvirt.Connect, pipe net.Conn) {
	defer pipe.Close()
	var wmu sync.Mutex
	write := func(v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		b = fitMessage(v, b)
		wmu.Lock()
		defer wmu.Unlock()
		_, err = pipe.Write(append(b, '\n'))
		return err
	}
	// One handle on the domain for the stream's commands and descriptions:
	// a lookup is a round trip to libvirtd.
	dom := &domainRef{conn: conn, uuid: s.uuid}
	defer dom.free()
	if err := write(s.greeting(conn)); err != nil {
		return
	}
	negotiated := make(chan struct{})
	done := make(chan struct{})
	go func() {
		// Commands run side by side (their replies carry the client's
		// ids): one that libvirt keeps waiting, such as a pmemsave, must
		// not hold up another, such as the migration hold's
		// (host/migrate_hold.go). done closes once none is left, before
		// the domain handle they use is freed.
		var running sync.WaitGroup
		slots := make(chan struct{}, maxCommands)
		defer func() {
			running.Wait()
			close(done)
		}()
		dec := json.NewDecoder(pipe)
		once := sync.Once{}
		for {
			var cmd map[string]json.RawMessage
			if err := dec.Decode(&cmd); err != nil {
				return
			}
			id := cmd["id"]
			var name string
			json.Unmarshal(cmd["execute"], &name)
			if name == "qmp_capabilities" {
				if write(map[string]any{"return": map[string]any{}, "id": id}) != nil {
					return
				}
				once.Do(func() { close(negotiated) })
				continue
			}
			slots <- struct{}{}
			running.Add(1)
			go func() {
				defer func() { <-slots; running.Done() }()
				// A reply that cannot be written means the pipe closed;
				// the decoder sees that too.
				write(s.command(dom, name, cmd, id))
			}()
		}
	}()
	defer func() {
		pipe.Close()
		<-done // the commands still running use dom: they end first
	}()
	select {
	case <-negotiated:
	case <-done:
		return
	}
	s.deliver(write, func() event { return s.describe(dom, time.Now()) }, done)
}

// deliver writes the domain's events to one stream in the order they
// happened: first the events queued while no stream was connected, then a
// description of the domain as it is now, then each new event as it comes
// (a "started" one after a description of the new QEMU instance). The
// description comes after the queued events because it is taken now: the
// lifecycle machine compares it with what the events before it told, and
// reports a difference as something that happened unobserved (a libvirtd
// restart loses events). Sent first, it would announce the outcome of
// events still queued — a snapshot revert made while the stream was
// reconnecting would read as an unobserved shutdown. An event that cannot
// be written goes back to the front of the queue for the next stream.
// deliver returns when a write fails or done closes.
func (s *session) deliver(write func(any) error, describe func() event, done <-chan struct{}) {
	described := false
	for {
		for {
			e, dropped, ok := s.queue.Pop()
			if dropped > 0 {
				write(newEvent(qmp.EventDropped, map[string]any{"count": dropped}, time.Now()))
			}
			if !ok {
				break
			}
			if e.describe {
				if err := write(describe()); err != nil {
					s.queue.PushFront(e) // not delivered: first for the next stream
					return
				}
			}
			if err := write(e); err != nil {
				s.queue.PushFront(e)
				return
			}
		}
		if !described {
			if err := write(describe()); err != nil {
				return
			}
			described = true
			continue // events queued while the description was taken
		}
		select {
		case <-s.queue.Wake():
		case <-done:
			return
		}
	}
}

// greeting is the QMP banner: QEMU's version as libvirt reports it.
func (s *session) greeting(conn *golibvirt.Connect) map[string]any {
	v, _ := conn.GetVersion() // major * 1,000,000 + minor * 1,000 + release
	return map[string]any{"QMP": map[string]any{
		"version": map[string]any{
			"qemu":    map[string]any{"major": v / 1000000, "minor": v / 1000 % 1000, "micro": v % 1000},
			"package": "via libvirt",
		},
		"capabilities": []string{},
	}}
}

// command passes one QMP command to libvirt and returns the reply with the
// client's id. libvirt refuses commands while the domain is not running;
// that comes back as a QMP GenericError.
func (s *session) command(ref *domainRef, name string, cmd map[string]json.RawMessage, id json.RawMessage) map[string]any {
	fail := func(class string, err error) map[string]any {
		return map[string]any{"error": map[string]any{"class": class, "desc": err.Error()}, "id": id}
	}
	delete(cmd, "id") // libvirt uses ids of its own on the monitor
	body, err := json.Marshal(cmd)
	if err != nil {
		return fail("GenericError", err)
	}
	dom, err := ref.get()
	if err != nil {
		return fail("DeviceNotFound", fmt.Errorf("libvirt domain %s: %w", s.name, err))
	}
	if name == host.CommandLibvirtSnapshots {
		list, err := snapshots(dom)
		if err != nil {
			return fail("GenericError", fmt.Errorf("listing snapshots: %w", err))
		}
		return map[string]any{"return": list, "id": id}
	}
	out, err := dom.QemuMonitorCommand(string(body), golibvirt.DOMAIN_QEMU_MONITOR_COMMAND_DEFAULT)
	if err != nil {
		return fail("GenericError", fmt.Errorf("%s through libvirt: %w", name, err))
	}
	if len(out) > qmp.MaxMessageSize {
		// libvirt bounds what it reads from QEMU itself (10 MiB), above
		// hvmon's bound.
		return fail("GenericError", fmt.Errorf("%s through libvirt: a reply of %d bytes is larger than %d", name, len(out), qmp.MaxMessageSize))
	}
	var reply map[string]any
	if err := json.Unmarshal([]byte(out), &reply); err != nil {
		return fail("GenericError", fmt.Errorf("%s through libvirt: bad reply: %w", name, err))
	}
	reply["id"] = id
	return reply
}

// describe builds the EventLibvirtDomain event for the domain's current
// state.
func (s *session) describe(ref *domainRef, now time.Time) event {
	data := map[string]any{"id": -1, "state": "unknown"}
	facts := map[string]any{}
	data["facts"] = facts
	dom, err := ref.get()
	if err != nil {
		facts["libvirt_error"] = err.Error()
		return newEvent(host.EventLibvirtDomain, data, now)
	}
	if st, _, err := dom.GetState(); err == nil {
		data["state"] = StateName(int(st))
	}
	if id, err := dom.GetID(); err == nil && id != ^uint(0) && data["state"] != "shutoff" {
		data["id"] = id
	}
	if doc, err := dom.GetXMLDesc(golibvirt.DOMAIN_XML_INACTIVE); err == nil {
		facts["domain_xml_sha3"] = XMLDigest(doc)
	}
	if doc, err := dom.GetXMLDesc(0); err == nil {
		if info, err := ParseDomainXML(doc); err == nil {
			data["agent_path"] = info.AgentPath
			data["agent_alias"] = info.AgentAlias
			data["agent_open"] = info.AgentOpen
			if info.LaunchSecurity != "" {
				facts["launch_security"] = info.LaunchSecurity
				for k, v := range LaunchFacts(info, openRegular) {
					facts[k] = v
				}
			}
		} else {
			s.log.Warn("cannot read the domain XML", "error", err)
		}
	}
	if data["state"] != "shutoff" {
		for k, v := range launchSecurityFacts(dom) {
			facts[k] = v
		}
	}
	return newEvent(host.EventLibvirtDomain, data, now)
}

// domainRef is a stream's handle on its domain, looked up by UUID on
// first use (and again after a failed lookup: the domain may be defined
// later). libvirt's handles are safe for concurrent calls.
type domainRef struct {
	conn *golibvirt.Connect
	uuid string

	mu  sync.Mutex
	dom *golibvirt.Domain
}

func (r *domainRef) get() (*golibvirt.Domain, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dom == nil {
		dom, err := r.conn.LookupDomainByUUIDString(r.uuid)
		if err != nil {
			return nil, err
		}
		r.dom = dom
	}
	return r.dom, nil
}

func (r *domainRef) free() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dom != nil {
		r.dom.Free()
		r.dom = nil
	}
}

// snapshots answers host.CommandLibvirtSnapshots: the domain's snapshots
// with their creation times.
func snapshots(dom *golibvirt.Domain) (any, error) {
	snaps, err := dom.ListAllSnapshots(0)
	if err != nil {
		return nil, err
	}
	out := []map[string]any{}
	for i := range snaps {
		name, err := snaps[i].GetName()
		doc, err2 := snaps[i].GetXMLDesc(0)
		snaps[i].Free()
		if err != nil || err2 != nil {
			continue
		}
		var def libvirtxml.DomainSnapshot
		if def.Unmarshal(doc) != nil {
			continue
		}
		created, _ := strconv.ParseInt(def.CreationTime, 10, 64)
		out = append(out, map[string]any{"name": name, "creation_time": created})
	}
	return out, nil
}

// launchSecurityFacts records what libvirt knows of the domain's launch
// (SEV and SEV-SNP: the launch measurement, API version and policy).
// Domains without launch security return nothing.
func launchSecurityFacts(dom *golibvirt.Domain) map[string]string {
	p, err := dom.GetLaunchSecurityInfo(0)
	if err != nil || p == nil {
		return nil
	}
	f := map[string]string{}
	if p.SEVMeasurementSet {
		f["sev_launch_measurement"] = p.SEVMeasurement
	}
	if p.SEVAPIMajorSet && p.SEVAPIMinorSet {
		f["sev_api_version"] = fmt.Sprintf("%d.%d", p.SEVAPIMajor, p.SEVAPIMinor)
	}
	if p.SEVBuildIDSet {
		f["sev_build_id"] = fmt.Sprint(p.SEVBuildID)
	}
	if p.SEVPolicySet {
		f["sev_policy"] = fmt.Sprintf("%#x", p.SEVPolicy)
	}
	if p.SEVSNPPolicySet {
		f["sev_snp_policy"] = fmt.Sprintf("%#x", p.SEVSNPPolicy)
	}
	return f
}

// maxEventDetails bounds the data of a QEMU event held in a stream's
// queue (QEMU's events carry a few hundred bytes): events wait there while
// no worker reads the stream, up to the queue's length.
const maxEventDetails = 16 << 10

// fitMessage keeps what a stream writes within qmp.MaxMessageSize, which
// the worker's QMP client would otherwise answer by dropping the stream
// (and an event put back in the queue would drop the next one too): a
// reply too large becomes a QMP error for its command, an event too
// large an EventDropped. b is v's encoding, newline not included.
func fitMessage(v any, b []byte) []byte {
	if len(b)+1 <= qmp.MaxMessageSize {
		return b
	}
	var out any
	switch m := v.(type) {
	case map[string]any:
		out = map[string]any{"id": m["id"], "error": map[string]any{"class": "GenericError",
			"desc": fmt.Sprintf("a reply of %d bytes through libvirt is larger than %d", len(b), qmp.MaxMessageSize)}}
	case event:
		out = newEvent(qmp.EventDropped, map[string]any{"count": 1, "reason": fmt.Sprintf("event %s of %d bytes is larger than %d", cut(m.Event, 64), len(b), qmp.MaxMessageSize)}, time.Now())
	default:
		out = newEvent(qmp.EventDropped, map[string]any{"count": 1}, time.Now())
	}
	fitted, _ := json.Marshal(out)
	return fitted
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// monitorEvent converts a QEMU monitor event libvirt forwarded. Details
// longer than maxEventDetails are not kept: the data says how long they
// were and their SHA3-256.
func monitorEvent(e *golibvirt.DomainQemuMonitorEvent) event {
	var data map[string]any
	if d := strings.TrimSpace(e.Details); len(d) > maxEventDetails {
		sum := sha3.Sum256([]byte(d))
		data = map[string]any{"hvmon_oversize": len(d), "hvmon_sha3": hex.EncodeToString(sum[:])}
	} else if d != "" {
		if err := json.Unmarshal([]byte(d), &data); err != nil {
			data = map[string]any{"hvmon_raw": d}
		}
	}
	ev := event{Event: e.Event, Data: data}
	ev.Timestamp.Seconds = e.Seconds
	ev.Timestamp.Microseconds = int64(e.Micros)
	return ev
}

// openRegular opens a launch input for LaunchFacts: regular files only,
// never blocking on a FIFO or a device.
func openRegular(path string) (io.ReadCloser, error) { return boundedfile.Open(path) }
