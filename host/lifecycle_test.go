package host

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/qmp"
)

// TestLifecycleRecorded runs the recorded event sequences of
// testdata/lifecycle through the lifecycle machines, without QEMU, libvirt,
// sockets or signing: qmp/*.jsonl through qmpLifecycle, libvirt/*.jsonl
// through libvirtLifecycle. Each file is one row of the table: a
// transcript of the VM's stream and of the queries the machine asks, with
// what the machine must make of each event.
//
// A file holds one JSON object a line (blank lines and lines starting with
// # are comments):
//
//	{"config": {"agent": PATH, "agent_port_id": ID}}
//	    the VM's configuration; first line only, optional
//	{"timestamp": {…}, "event": NAME, "data": {…}}
//	    an event of the VM's stream, as QEMU (or the libvirt transport, or
//	    hvmon's QMP client: HVMON_CONNECTED) sends it
//	{"execute": CMD, "return": …} or {"execute": CMD, "error": {"class": …, "desc": …}}
//	    after an event: a query the machine asks while it takes the event
//	    in, with QEMU's reply; the machine must ask exactly these, in order
//	{"report": EVENT, "facts": {…}, "no_agent": TEXT}
//	    a report the last event gives, in order; every report the event
//	    gives must be listed, with exactly its facts
//	{"close_agent": true}
//	    the last event closes the agent connection (it must be listed too)
//	{"expect": {"state": …, "periodic": …, "remembered": {…}, "agent": …}}
//	    the machine after the last event: the VM's run state as the worker
//	    shows it, whether a periodic report is due, the facts it remembers
//	    for every report (exactly), the agent socket it knows; each optional
func TestLifecycleRecorded(t *testing.T) {
	for _, source := range []string{"qmp", "libvirt"} {
		files, err := filepath.Glob(filepath.Join("testdata", "lifecycle", source, "*.jsonl"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no recorded %s sequences in testdata/lifecycle/%s (%v)", source, source, err)
		}
		for _, f := range files {
			t.Run(source+"/"+strings.TrimSuffix(filepath.Base(f), ".jsonl"), func(t *testing.T) {
				playRecording(t, source, f)
			})
		}
	}
}

// recordedLine is one line of a recording; which fields are set says what
// it is.
type recordedLine struct {
	n int // line number

	Config *struct {
		Agent       string `json:"agent"`
		AgentPortID string `json:"agent_port_id"`
	} `json:"config"`

	Event     string         `json:"event"`
	Data      map[string]any `json:"data"`
	Timestamp *struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`

	Execute string          `json:"execute"`
	Return  json.RawMessage `json:"return"`
	Error   *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`

	Report  attest.Event      `json:"report"`
	Facts   map[string]string `json:"facts"`
	NoAgent string            `json:"no_agent"`

	CloseAgent bool `json:"close_agent"`

	Expect *struct {
		State      string            `json:"state"`
		Periodic   *bool             `json:"periodic"`
		Remembered map[string]string `json:"remembered"`
		Agent      string            `json:"agent"`
	} `json:"expect"`
}

// recordingClock is the host's clock for events without a timestamp (the
// QMP client's own).
var recordingClock = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// readRecording returns the lines of a recording.
func readRecording(t *testing.T, path string) []recordedLine {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []recordedLine
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		l := recordedLine{n: n}
		dec := json.NewDecoder(strings.NewReader(text))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("%s:%d: %v", path, n, err)
		}
		if l.Execute != "" && (l.Return == nil) == (l.Error == nil) {
			t.Fatalf("%s:%d: a reply needs either return or error", path, n)
		}
		lines = append(lines, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

func playRecording(t *testing.T, source, path string) {
	lines := readRecording(t, path)
	// As Supervisor.Add gives it to the worker.
	cfg := VMConfig{Name: "vm-1", Agent: "/run/hvmon/vm-1/agent.sock", AgentPortID: "agentport0"}
	if source == "libvirt" {
		cfg.Source, cfg.Agent = SourceLibvirt, "" // the agent is learned from the domain's descriptions
	}
	if len(lines) > 0 && lines[0].Config != nil {
		cfg.Agent, cfg.AgentPortID = lines[0].Config.Agent, cmp.Or(lines[0].Config.AgentPortID, cfg.AgentPortID)
		lines = lines[1:]
	}
	lc := newLifecycle(cfg)
	var (
		last    string // the last event, for messages
		pending transition
		state   string
		events  int
	)
	// settle checks that the last event's transition was listed in full.
	settle := func() {
		for _, le := range pending.events {
			t.Errorf("%s: %s also gives report %s %v (no agent: %q), which the recording does not list", path, last, le.event, le.facts, le.noAgent)
		}
		if pending.closeAgent {
			t.Errorf("%s: %s closes the agent connection, which the recording does not list", path, last)
		}
		pending = transition{}
	}
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		switch {
		case l.Config != nil:
			t.Fatalf("%s:%d: a configuration after the first line", path, l.n)
		case l.Event != "":
			settle()
			e := qmp.Event{Event: l.Event, Data: l.Data}
			if l.Timestamp != nil {
				e.Timestamp.Seconds, e.Timestamp.Microseconds = l.Timestamp.Seconds, l.Timestamp.Microseconds
			}
			q := &recordedQueries{t: t, where: fmt.Sprintf("%s:%d", path, l.n)}
			for i+1 < len(lines) && lines[i+1].Execute != "" {
				i++
				q.script = append(q.script, lines[i])
			}
			at := eventTime(e, recordingClock)
			last = fmt.Sprintf("line %d (%s %v)", l.n, e.Event, e.Data)
			pending = lc.step(context.Background(), q, e, at)
			q.done()
			events++
			if pending.state != "" {
				state = pending.state
			}
			for _, le := range pending.events {
				if !le.at.Equal(at) {
					t.Errorf("%s: %s gives %s at %v, want the event's time %v", path, last, le.event, le.at, at)
				}
			}
		case l.Execute != "":
			t.Fatalf("%s:%d: a reply to %s that no event asks for", path, l.n, l.Execute)
		case l.Report != "":
			if len(pending.events) == 0 {
				t.Errorf("%s:%d: after %s: no report, want %s %v", path, l.n, last, l.Report, l.Facts)
				continue
			}
			got := pending.events[0]
			pending.events = pending.events[1:]
			if got.event != l.Report || !maps.Equal(got.facts, l.Facts) || got.noAgent != l.NoAgent {
				t.Errorf("%s:%d: after %s: report %s %v (no agent: %q), want %s %v (no agent: %q)",
					path, l.n, last, got.event, got.facts, got.noAgent, l.Report, l.Facts, l.NoAgent)
			}
		case l.CloseAgent:
			if !pending.closeAgent {
				t.Errorf("%s:%d: after %s: the agent connection stays open, want it closed", path, l.n, last)
			}
			pending.closeAgent = false
		case l.Expect != nil:
			x := l.Expect
			if x.State != "" && state != x.State {
				t.Errorf("%s:%d: after %s: run state %q, want %q", path, l.n, last, state, x.State)
			}
			if x.Periodic != nil && lc.periodicDue() != *x.Periodic {
				t.Errorf("%s:%d: after %s: periodic due %v, want %v", path, l.n, last, lc.periodicDue(), *x.Periodic)
			}
			if x.Remembered != nil && !maps.Equal(lc.facts(), x.Remembered) {
				t.Errorf("%s:%d: after %s: remembered facts %v, want %v", path, l.n, last, lc.facts(), x.Remembered)
			}
			if x.Agent != "" && lc.agentSocket() != x.Agent {
				t.Errorf("%s:%d: after %s: agent socket %q, want %q", path, l.n, last, lc.agentSocket(), x.Agent)
			}
		default:
			t.Fatalf("%s:%d: a line that is no event, reply or expectation", path, l.n)
		}
	}
	settle()
	if events == 0 {
		t.Fatalf("%s: no events", path)
	}
}

// recordedQueries answers a lifecycle machine's queries from the replies
// recorded after the event it takes in, decoded as qmp.Client decodes
// QEMU's. The machine must ask exactly those, in order.
type recordedQueries struct {
	t      *testing.T
	where  string // the event's place in the recording
	script []recordedLine
	next   int
}

func (q *recordedQueries) answer(cmd string, out any) error {
	if q.next >= len(q.script) || q.script[q.next].Execute != cmd {
		want := "nothing more"
		if q.next < len(q.script) {
			want = q.script[q.next].Execute
		}
		q.t.Errorf("%s: the machine asks %s; the recording has %s", q.where, cmd, want)
		return &qmp.Error{Class: "CommandNotFound", Desc: "not in the recording", Command: cmd}
	}
	r := q.script[q.next]
	q.next++
	if r.Error != nil {
		return &qmp.Error{Class: r.Error.Class, Desc: r.Error.Desc, Command: cmd}
	}
	if err := json.Unmarshal(r.Return, out); err != nil {
		q.t.Fatalf("%s: the recorded reply to %s: %v", q.where, cmd, err)
	}
	return nil
}

// done checks that the machine asked every recorded query.
func (q *recordedQueries) done() {
	for _, r := range q.script[q.next:] {
		q.t.Errorf("%s: the recording has %s (line %d) asked; the machine does not ask it", q.where, r.Execute, r.n)
	}
}

func (q *recordedQueries) QueryStatus(context.Context) (s qmp.Status, err error) {
	return s, q.answer("query-status", &s)
}

func (q *recordedQueries) QueryChardev(context.Context) (cds []qmp.ChardevInfo, err error) {
	return cds, q.answer("query-chardev", &cds)
}

func (q *recordedQueries) QuerySEV(context.Context) (s qmp.SEVInfo, err error) {
	return s, q.answer("query-sev", &s)
}

func (q *recordedQueries) QuerySEVLaunchMeasure(context.Context) (string, error) {
	var r struct {
		Data string `json:"data"`
	}
	err := q.answer("query-sev-launch-measure", &r)
	return r.Data, err
}

func (q *recordedQueries) QueryMigrate(context.Context) (m qmp.MigrationInfo, err error) {
	return m, q.answer("query-migrate", &m)
}

func (q *recordedQueries) QueryJobs(context.Context) (j []qmp.JobInfo, err error) {
	return j, q.answer("query-jobs", &j)
}

// LibvirtSnapshots answers as the worker's clientQueries does once libvirt
// lists the snapshot: the recorded list, from since on.
func (q *recordedQueries) LibvirtSnapshots(_ context.Context, since time.Time) ([]libvirtSnapshot, error) {
	var list []libvirtSnapshot
	if err := q.answer(CommandLibvirtSnapshots, &list); err != nil {
		return nil, err
	}
	return snapshotsSince(list, since), nil
}

// TestNewestSnapshot: the snapshot a libvirt snapshot report names is the
// newest libvirt lists from 2 s before the pause on; none is guessed.
func TestNewestSnapshot(t *testing.T) {
	paused := time.Unix(1767261000, 0)
	for _, tc := range []struct {
		list []libvirtSnapshot
		want string
	}{
		{nil, ""},
		{[]libvirtSnapshot{{"old", paused.Unix() - 3}}, ""},
		{[]libvirtSnapshot{{"old", paused.Unix() - 3}, {"s1", paused.Unix() - 2}}, "s1"},
		{[]libvirtSnapshot{{"b", paused.Unix() + 1}, {"a", paused.Unix()}}, "b"},
		{[]libvirtSnapshot{{"x", paused.Unix()}, {"y", paused.Unix()}}, "y"}, // the later one listed, as libvirt lists
	} {
		raw, _ := json.Marshal(tc.list)
		q := &recordedQueries{t: t, where: "TestNewestSnapshot", script: []recordedLine{{Execute: CommandLibvirtSnapshots, Return: raw}}}
		if got := newestSnapshot(context.Background(), q, paused); got != tc.want {
			t.Errorf("newestSnapshot(%v, paused at %d) = %q, want %q", tc.list, paused.Unix(), got, tc.want)
		}
		q.done()
	}
}
