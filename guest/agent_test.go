package guest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"hvmon.dev/hvmon/agentproto"
	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/internal/boundedfile"
	"hvmon.dev/hvmon/measure"
	"hvmon.dev/hvmon/measure/fileregion"
)

var testNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func testAgent(t testing.TB) (*Agent, string) {
	t.Helper()
	dir := t.TempDir()
	weights := filepath.Join(dir, "weights.bin")
	if err := os.WriteFile(weights, bytes.Repeat([]byte{7}, 3*measure.PageSize+5), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{Regions: []RegionConfig{
		{ID: "weights", File: weights, Protection: "RO"},
		{ID: "kv", Memory: &MemoryConfig{Size: 10000, Fill: 1}},
	}}
	key, err := attest.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, Options{Key: key, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	return a, weights
}

// socketPair returns two connected unix stream sockets: buffered, like a
// virtio-serial channel (net.Pipe is not).
func socketPair(t testing.TB) (net.Conn, net.Conn) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	return conn(fds[0]), conn(fds[1])
}

// pipe connects a client to a serving agent over a socket pair.
func pipe(t testing.TB, a *Agent) (*agentproto.Client, net.Conn, chan error) {
	host, guestEnd := socketPair(t)
	done := make(chan error, 1)
	go func() { done <- a.Serve(context.Background(), guestEnd) }()
	t.Cleanup(func() { host.Close(); guestEnd.Close() })
	return agentproto.NewClient(host), host, done
}

// hostReport wraps guest evidence in a host report and verifies it, as the
// host side will.
func hostReport(t testing.TB, ev []byte, nonce []byte, event attest.Event) (*attest.Result, error) {
	hk, _ := attest.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	r := &attest.Report{IssuedAt: testNow, ExpiresAt: testNow.Add(time.Minute), Nonce: nonce, Event: event,
		Workload: "vm-1", Platform: "host", Guest: ev}
	signed, err := attest.Sign(hk, r, nil)
	if err != nil {
		t.Fatal(err)
	}
	return attest.Verify(signed, attest.VerifyOptions{TrustedKeys: []*attest.PublicKey{hk.PublicKey()}, Now: testNow})
}

func TestAgentRoundTrip(t *testing.T) {
	a, weights := testAgent(t)
	c, _, _ := pipe(t, a)
	ctx := context.Background()
	if err := c.Sync(ctx); err != nil {
		t.Fatalf("Sync = %v", err)
	}
	h, err := c.Hello(ctx)
	if err != nil || h.KeyID != a.KeyID() || h.Platform != "none" || h.Protocol != agentproto.Version || h.Seq != 0 {
		t.Fatalf("Hello = %+v, %v", h, err)
	}
	rs, err := c.Regions(ctx)
	if err != nil || len(rs) != 2 || rs[0].ID != "weights" || rs[1].Size != 10000 {
		t.Fatalf("Regions = %+v, %v", rs, err)
	}
	nonce := bytes.Repeat([]byte{9}, 32)
	first, err := c.Attest(ctx, agentproto.AttestArgs{Nonce: nonce, Event: attest.EventBoot, VM: "vm-1"})
	if err != nil {
		t.Fatalf("Attest = %v", err)
	}
	res, err := hostReport(t, first.Evidence, nonce, attest.EventBoot)
	if err != nil {
		t.Fatalf("host verification of guest evidence = %v", err)
	}
	g := res.Guest
	want := measure.Bytes(bytes.Repeat([]byte{7}, 3*measure.PageSize+5))
	if g.Seq != 0 || g.Prev != nil || len(g.Claims) != 2 || g.Claims[0].Snapshot.Root != want || g.Claims[0].Region.Source != "file:"+weights {
		t.Fatalf("guest evidence = %+v", g)
	}
	// The chain: seq counts up and prev links to the last evidence.
	os.WriteFile(weights, []byte("changed"), 0o644)
	second, err := c.Attest(ctx, agentproto.AttestArgs{Nonce: nonce, Event: attest.EventPeriodic, VM: "vm-1", Regions: []string{"weights"}})
	if err != nil {
		t.Fatal(err)
	}
	res2, err := hostReport(t, second.Evidence, nonce, attest.EventPeriodic)
	if err != nil {
		t.Fatal(err)
	}
	g2 := res2.Guest
	if g2.Seq != 1 || g2.Prev == nil || *g2.Prev != first.Hash || len(g2.Claims) != 1 || g2.Claims[0].Snapshot.Root != measure.Bytes([]byte("changed")) {
		t.Fatalf("second guest evidence = seq %d prev %v claims %+v", g2.Seq, g2.Prev, g2.Claims)
	}
}

func TestAgentErrors(t *testing.T) {
	a, _ := testAgent(t)
	ctx := context.Background()
	nonce := `"` + strings.Repeat("A", 43) + `="`
	for _, tc := range []struct {
		line string
		id   uint64
		code string
	}{
		{`not json`, 0, agentproto.CodeMalformed},
		{`{"id":0,"op":"hello"}`, 0, agentproto.CodeMalformed},
		{`{"id":1,"op":"hello","extra":1}`, 0, agentproto.CodeMalformed},
		{`{"id":1,"op":"hello"} {}`, 0, agentproto.CodeMalformed},
		{`{"id":2,"op":"reboot"}`, 2, agentproto.CodeUnknownOp},
		{`{"id":3,"op":"hello","args":{"x":1}}`, 3, agentproto.CodeMalformed},
		{`{"id":4,"op":"attest","args":{"nonce":"AAAA","event":"boot","vm":"v"}}`, 4, agentproto.CodeBadArgs},
		{`{"id":5,"op":"attest","args":{"nonce":` + nonce + `,"event":"reboot","vm":"v"}}`, 5, agentproto.CodeBadArgs},
		{`{"id":6,"op":"attest","args":{"nonce":` + nonce + `,"event":"boot","vm":""}}`, 6, agentproto.CodeBadArgs},
		{`{"id":7,"op":"attest","args":{"nonce":` + nonce + `,"event":"boot","vm":"v","regions":["nope"]}}`, 7, agentproto.CodeBadArgs},
		{`{"id":8,"op":"attest","args":{"nonce":1,"event":"boot","vm":"v"}}`, 8, agentproto.CodeMalformed},
		// VM names outside the rule (FORMAT.md §6.1) are protocol errors.
		{`{"id":9,"op":"attest","args":{"nonce":` + nonce + `,"event":"boot","vm":"vm-1 "}}`, 9, agentproto.CodeBadArgs},
		{`{"id":10,"op":"attest","args":{"nonce":` + nonce + `,"event":"boot","vm":"v\u043c-1"}}`, 10, agentproto.CodeBadArgs},
		{`{"id":11,"op":"attest","args":{"nonce":` + nonce + `,"event":"boot","vm":"a/b"}}`, 11, agentproto.CodeBadArgs},
		{`{"id":12,"op":"attest","args":{"nonce":` + nonce + `,"event":"boot","vm":"` + strings.Repeat("v", 129) + `"}}`, 12, agentproto.CodeBadArgs},
	} {
		resp := a.Handle(ctx, []byte(tc.line))
		if resp.Error == nil || resp.ID != tc.id || resp.Error.Code != tc.code {
			t.Errorf("Handle(%s) = %+v, want id %d code %s", tc.line, resp, tc.id, tc.code)
		}
	}
	if a.Hello().Seq != 0 {
		t.Error("a failed attestation advanced seq")
	}
}

// TestStaleBytesAndReconnect: a host that went away mid-request leaves a
// partial line and an unread reply behind; the next session's sync drops
// them, and the chain continues.
func TestStaleBytesAndReconnect(t *testing.T) {
	a, _ := testAgent(t)
	c, host, _ := pipe(t, a)
	ctx := context.Background()
	// An old session: a complete request whose reply nobody reads, then half a request.
	go func() {
		host.Write([]byte(`{"id":77,"op":"hello"}` + "\n" + `{"id":78,"op":"att`))
	}()
	time.Sleep(50 * time.Millisecond)
	if err := c.Sync(ctx); err != nil {
		t.Fatalf("Sync after stale bytes = %v", err)
	}
	nonce := bytes.Repeat([]byte{5}, 16)
	r1, err := c.Attest(ctx, agentproto.AttestArgs{Nonce: nonce, Event: attest.EventBoot, VM: "vm-1"})
	if err != nil {
		t.Fatal(err)
	}
	// The host side closes; the agent sees end of file, and serves the
	// next connection with its memory intact.
	host.Close()
	c2, _, _ := pipe(t, a)
	r2, err := c2.Attest(ctx, agentproto.AttestArgs{Nonce: nonce, Event: attest.EventMigrateIn, VM: "vm-1"})
	if err != nil {
		t.Fatalf("Attest after reconnect = %v", err)
	}
	res, err := hostReport(t, r2.Evidence, nonce, attest.EventMigrateIn)
	if err != nil || res.Guest.Seq != 1 || *res.Guest.Prev != r1.Hash {
		t.Fatalf("chain after reconnect: %v %+v", err, res)
	}
}

func TestServeTooLarge(t *testing.T) {
	a, _ := testAgent(t)
	in := bytes.Repeat([]byte("x"), agentproto.MaxLine+10)
	in = append(in, '\n')
	in = append(in, []byte(`{"id":9,"op":"hello"}`+"\n")...)
	var out bytes.Buffer
	err := a.Serve(context.Background(), struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(in), &out})
	if !errors.Is(err, errEOF()) {
		t.Fatalf("Serve = %v, want EOF", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("Serve wrote %d lines, want 2", len(lines))
	}
	r0, _ := agentproto.DecodeResponse([]byte(lines[0]))
	r1, _ := agentproto.DecodeResponse([]byte(lines[1]))
	if r0 == nil || r0.Error == nil || r0.Error.Code != agentproto.CodeTooLarge || r1 == nil || r1.ID != 9 || r1.Error != nil {
		t.Fatalf("responses: %s", out.String())
	}
}

func TestClientTimeout(t *testing.T) {
	host, silent := socketPair(t)
	defer host.Close()
	defer silent.Close()
	go func() {
		buf := make([]byte, 1024)
		for {
			if _, err := silent.Read(buf); err != nil {
				return
			}
		}
	}()
	c := agentproto.NewClient(host)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := c.Sync(ctx)
	if !errors.Is(err, agentproto.ErrNotSynced) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sync with a silent agent = %v, want ErrNotSynced and DeadlineExceeded", err)
	}
}

func TestConfig(t *testing.T) {
	good := `{"port":"p","evidence":"none","regions":[{"id":"w","file":"/x","offset":4096,"size":8192},{"id":"m","memory":{"size":10,"fill":1}},{"id":"p","process":{"name":"server","mapping":"weights"}}]}`
	c, err := ParseConfig([]byte(good))
	if err != nil || len(c.Regions) != 3 || c.Regions[0].Offset != 4096 {
		t.Fatalf("ParseConfig(good) = %+v, %v", c, err)
	}
	launch := `{"simulated_host_data":"` + strings.Repeat("4a", 32) + `","simulated_mr_config_id":"` + strings.Repeat("4b", 48) + `","regions":[{"id":"w","file":"/x"}]}`
	c, err = ParseConfig([]byte(launch))
	if err != nil {
		t.Fatalf("ParseConfig(launch values) = %v", err)
	}
	if o, err := c.SimulatedOptions(); err != nil || !bytes.Equal(o.HostData, bytes.Repeat([]byte{0x4a}, 32)) || !bytes.Equal(o.MRConfigID, bytes.Repeat([]byte{0x4b}, 48)) {
		t.Errorf("SimulatedOptions = %+v, %v", o, err)
	}
	for name, bad := range map[string]string{
		"unknown field":      `{"regions":[{"id":"w","file":"/x"}],"extra":1}`,
		"no regions":         `{"regions":[]}`,
		"two kinds":          `{"regions":[{"id":"w","file":"/x","memory":{"size":1}}]}`,
		"no kind":            `{"regions":[{"id":"w"}]}`,
		"dup":                `{"regions":[{"id":"w","file":"/x"},{"id":"w","file":"/y"}]}`,
		"bad id":             `{"regions":[{"id":"a=b","file":"/x"}]}`,
		"evidence":           `{"evidence":"tpm","regions":[{"id":"w","file":"/x"}]}`,
		"huge memory":        `{"regions":[{"id":"w","memory":{"size":9999999999999}}]}`,
		"pid and name":       `{"regions":[{"id":"w","process":{"pid":1,"name":"x","mapping":"m"}}]}`,
		"offset alone":       `{"regions":[{"id":"w","memory":{"size":1},"offset":4}]}`,
		"trailing":           `{"regions":[{"id":"w","file":"/x"}]} {}`,
		"short host data":    `{"simulated_host_data":"00","regions":[{"id":"w","file":"/x"}]}`,
		"host data not hex":  `{"simulated_host_data":"` + strings.Repeat("zz", 32) + `","regions":[{"id":"w","file":"/x"}]}`,
		"32-byte mrconfigid": `{"simulated_mr_config_id":"` + strings.Repeat("00", 32) + `","regions":[{"id":"w","file":"/x"}]}`,
	} {
		if _, err := ParseConfig([]byte(bad)); err == nil {
			t.Errorf("ParseConfig(%s) accepted", name)
		}
	}
}

func TestFindPort(t *testing.T) {
	root := t.TempDir()
	sys, dev := filepath.Join(root, "sys"), filepath.Join(root, "dev")
	for port, name := range map[string]string{"vport0p1": "org.qemu.guest_agent.0", "vport0p2": "org.hvmon.agent.0"} {
		os.MkdirAll(filepath.Join(sys, port), 0o755)
		os.WriteFile(filepath.Join(sys, port, "name"), []byte(name+"\n"), 0o644)
	}
	defer func(s, d string) { sysVirtioPorts, devDir = s, d }(sysVirtioPorts, devDir)
	sysVirtioPorts, devDir = sys, dev
	got, err := FindPort(DefaultPort)
	if err != nil || got != filepath.Join(dev, "vport0p2") {
		t.Fatalf("FindPort = %q, %v", got, err)
	}
	if _, err := FindPort("org.example.none"); err == nil || !strings.Contains(err.Error(), "org.qemu.guest_agent.0") {
		t.Errorf("FindPort(missing) = %v, want an error listing the ports found", err)
	}
	os.MkdirAll(filepath.Join(dev, "virtio-ports"), 0o755)
	os.WriteFile(filepath.Join(dev, "virtio-ports", "named"), nil, 0o644)
	if got, _ := FindPort("named"); got != filepath.Join(dev, "virtio-ports", "named") {
		t.Errorf("FindPort(udev name) = %q", got)
	}
}

func FuzzHandle(f *testing.F) {
	for _, s := range []string{`{"id":1,"op":"sync","args":{"value":5}}`, `{"id":2,"op":"hello"}`, `{"id":3,"op":"regions"}`,
		`{"id":4,"op":"attest","args":{"nonce":"CQkJCQkJCQkJCQkJCQkJCQ==","event":"boot","vm":"v"}}`, `{}`, `[]`, `{"id":1,"op":"attest","args":{"regions":["kv","kv"],"nonce":"CQkJCQkJCQk=","event":"snapshot","vm":"x"}}`} {
		f.Add([]byte(s))
	}
	a, _ := testAgent(f)
	f.Fuzz(func(t *testing.T, line []byte) {
		resp := a.Handle(context.Background(), line)
		if (resp.Error == nil) == (resp.Result == nil) {
			t.Fatalf("response %+v carries both or neither of result and error", resp)
		}
		out, err := agentproto.EncodeLine(resp)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := agentproto.DecodeResponse(bytes.TrimSuffix(out, []byte("\n"))); err != nil {
			t.Fatalf("agent wrote a response its own decoder refuses: %v", err)
		}
		if resp.Error == nil && json.Valid(resp.Result) == false {
			t.Fatal("invalid JSON result")
		}
	})
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"regions":[{"id":"w","file":"/x","offset":4096,"size":8192}]}`))
	f.Add([]byte(`{"evidence":"simulated-sev-snp","regions":[{"id":"m","memory":{"size":10,"fill":1}}]}`))
	f.Add([]byte(`{"regions":[{"id":"p","process":{"pid":10,"mapping":"w"}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseConfig accepted an invalid config: %v", err)
		}
	})
}

func errEOF() error { return io.EOF }

// TestChangedPages: the agent says which pages changed since it last
// measured a region, and the verifier's drift names them.
func TestChangedPages(t *testing.T) {
	a, weights := testAgent(t)
	ctx := context.Background()
	nonce := bytes.Repeat([]byte{5}, 16)
	if _, err := a.Attest(ctx, agentproto.AttestArgs{Nonce: nonce, Event: attest.EventBoot, VM: "vm-1"}); err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(weights, os.O_WRONLY, 0)
	f.WriteAt([]byte("X"), 2*measure.PageSize+10)
	f.Close()
	res, err := a.Attest(ctx, agentproto.AttestArgs{Nonce: nonce, Event: attest.EventOnDemand, VM: "vm-1", Regions: []string{"weights"}})
	if err != nil {
		t.Fatal(err)
	}
	hk, _ := attest.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	r := &attest.Report{IssuedAt: testNow, ExpiresAt: testNow.Add(time.Minute), Nonce: nonce, Event: attest.EventOnDemand,
		Workload: "vm-1", Platform: "host", Guest: res.Evidence}
	signed, _ := attest.Sign(hk, r, nil)
	// This agent has no hardware evidence: its regions count for expected
	// roots only where the verifier allows regions no hardware backs.
	vr, err := attest.Verify(signed, attest.VerifyOptions{TrustedKeys: []*attest.PublicKey{hk.PublicKey()}, Now: testNow, AllowHostMeasured: true,
		Expected: []attest.Expectation{{RegionID: "weights", Roots: []attest.Digest{measure.Bytes(bytes.Repeat([]byte{7}, 3*measure.PageSize+5))}}}})
	if err != nil {
		t.Fatal(err)
	}
	c := vr.Guest.Claims[0].Snapshot
	if c.Mode != "full" || len(c.Changed) != 1 || c.Changed[0] != (measure.PageRange{First: 2, Last: 2}) {
		t.Fatalf("snapshot mode %q changed %v, want full and page 2", c.Mode, c.Changed)
	}
	if len(vr.Drift) != 1 || len(vr.Drift[0].Changed) != 1 || !strings.Contains(vr.Checks[len(vr.Checks)-1].Detail, "page 2") {
		t.Errorf("drift = %+v, checks %+v", vr.Drift, vr.Checks)
	}
}

// TestFileRegionRefusals: a file region whose path became a FIFO no one
// writes, or a directory, fails the attestation at once with a measure
// error naming what the path is; a range past the end of the file is an
// error, not a shorter measurement.
func TestFileRegionRefusals(t *testing.T) {
	dir := t.TempDir()
	weights := filepath.Join(dir, "weights.bin")
	os.WriteFile(weights, make([]byte, 5000), 0o644)
	a, err := New(&Config{Regions: []RegionConfig{
		{ID: "weights", File: weights},
		{ID: "tail", File: weights, Offset: 4096, Size: 4096},
	}}, Options{Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	attestRegion := func(id string) error {
		done := make(chan error, 1)
		go func() {
			_, err := a.Attest(ctx, agentproto.AttestArgs{Nonce: bytes.Repeat([]byte{5}, 16), Event: attest.EventOnDemand, VM: "vm-1", Regions: []string{id}})
			done <- err
		}()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatalf("Attest(%s) still blocks after 10 s", id)
			return nil
		}
	}
	var re *requestError
	var rangeErr *fileregion.RangeError
	if err := attestRegion("tail"); !errors.As(err, &re) || re.code != agentproto.CodeMeasure || !errors.As(err, &rangeErr) {
		t.Errorf("Attest(range past the end) = %v, want %s with a RangeError", err, agentproto.CodeMeasure)
	}
	os.Remove(weights)
	if err := syscall.Mkfifo(weights, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := attestRegion("weights"); !errors.As(err, &re) || re.code != agentproto.CodeMeasure || !errors.Is(err, boundedfile.ErrNotRegular) ||
		!strings.Contains(err.Error(), "is a FIFO, not a regular file") {
		t.Errorf("Attest(FIFO region) = %v, want %s naming a FIFO", err, agentproto.CodeMeasure)
	}
	os.Remove(weights)
	os.Mkdir(weights, 0o755)
	if err := attestRegion("weights"); !errors.Is(err, boundedfile.ErrNotRegular) || !strings.Contains(err.Error(), "is a directory, not a regular file") {
		t.Errorf("Attest(directory region) = %v, want one naming a directory", err)
	}
}

// TestProcessRegion measures a file mapped into this test process, by pid
// and by name, as the agent measures weights an inference server mapped.
func TestProcessRegion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "model-weights.bin")
	content := bytes.Repeat([]byte("weights!"), 3*measure.PageSize/8)
	os.WriteFile(path, content, 0o644)
	f, _ := os.Open(path)
	defer f.Close()
	m, err := syscall.Mmap(int(f.Fd()), 0, len(content), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(m)
	cfg := &Config{Regions: []RegionConfig{{ID: "mapped", Process: &ProcessConfig{PID: os.Getpid(), Mapping: "model-weights.bin"}}}}
	a, err := New(cfg, Options{Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.Attest(context.Background(), agentproto.AttestArgs{Nonce: bytes.Repeat([]byte{1}, 8), Event: attest.EventBoot, VM: "v"})
	if err != nil {
		t.Fatalf("attest over a process mapping: %v", err)
	}
	g, err := attest.CheckGuestEvidence(res.Evidence, bytes.Repeat([]byte{1}, 8), attest.EventBoot, "v", attest.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := g.Claims[0]; c.Snapshot.Root != measure.Bytes(content) || !strings.HasPrefix(c.Region.Source, "process:pid:") {
		t.Fatalf("process region claim = %+v, want the root of the mapped file", c)
	}
	// By name, through a fake /proc.
	defer func(d string) { procDir = d }(procDir)
	procDir = t.TempDir()
	for pid, comm := range map[string]string{"10": "inference", "11": "shell", "12": "inference"} {
		os.MkdirAll(filepath.Join(procDir, pid), 0o755)
		os.WriteFile(filepath.Join(procDir, pid, "comm"), []byte(comm+"\n"), 0o644)
	}
	if _, err := findProcess("shell"); err != nil {
		t.Errorf("findProcess(shell) = %v", err)
	}
	if _, err := findProcess("inference"); err == nil {
		t.Error("findProcess found one of two processes of the same name")
	}
	if _, err := findProcess("none"); err == nil {
		t.Error("findProcess found a process that does not exist")
	}
}
