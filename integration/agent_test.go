//go:build integration

package integration

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/agentproto"
	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/internal/tinyvm"
	"hvmon.dev/hvmon/measure"
)

var (
	image    *tinyvm.Image
	imageDir string
	keep     = flag.Bool("keep", false, "keep the image and VM directories")
	// vmLog carries tinyvm's one line when KVM opens but cannot run guests
	// here and the tier falls back to TCG.
	vmLog = hclog.New(&hclog.LoggerOptions{Name: "tinyvm", Output: os.Stderr, Level: hclog.Warn})
)

// Four 16 MiB regions (the size the agent benchmark is specified for) and a
// one-page region.
var regions = []tinyvm.Region{
	{ID: "w0", Size: 16 << 20, Pattern: "weights-0"},
	{ID: "w1", Size: 16 << 20, Pattern: "weights-1"},
	{ID: "w2", Size: 16 << 20, Pattern: "weights-2"},
	{ID: "kv", Size: 16 << 20, Pattern: "kv-cache"},
	{ID: "tiny", Size: 4096, Pattern: "one page"}, // for latencies that exclude measurement
}

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "hvmon-it")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	imageDir = dir
	root, _ := filepath.Abs("..")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	image, err = tinyvm.Build(ctx, tinyvm.BuildOptions{Dir: dir, ModuleRoot: root, Regions: regions, Evidence: evidenceType, SimulatedSeed: simulatedSeed})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "building the test guest:", err)
		os.Exit(1)
	}
	code := m.Run()
	if !*keep {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// bootVM boots the test guest and waits for its agent.
func bootVM(t testing.TB) *tinyvm.VM {
	t.Helper()
	dir, err := os.MkdirTemp("", "hvmon-vm")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	vm, err := tinyvm.Boot(ctx, image, tinyvm.BootOptions{Dir: dir, Log: vmLog})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		vm.Kill()
		if t.Failed() {
			t.Logf("guest console:\n%s", vm.Console())
		}
		if !*keep {
			os.RemoveAll(dir)
		}
	})
	if err := vm.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("guest ready after %s (accel %s)", time.Since(start).Round(time.Millisecond), vm.Accel)
	return vm
}

func dialAgent(t *testing.T, vm *tinyvm.VM) (*agentproto.Client, net.Conn) {
	t.Helper()
	c, err := net.Dial("unix", vm.AgentPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return agentproto.NewClient(c), c
}

func nonce(t *testing.T) []byte {
	n := make([]byte, 32)
	rand.Read(n)
	return n
}

// hostVerify wraps the guest evidence in a host report signed by a fresh
// host key and verifies it the way hvmon verify does, with the evidence
// verifier the test guest's evidence type needs.
func hostVerify(t *testing.T, ev []byte, n []byte, event attest.Event, expected []attest.Expectation, strict bool) (*attest.Result, error) {
	t.Helper()
	hk, err := attest.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	r := &attest.Report{IssuedAt: now, ExpiresAt: now.Add(5 * time.Minute), Nonce: n, Event: event, Workload: "vm-it", Platform: "host", Guest: ev}
	signed, err := attest.Sign(hk, r, nil)
	if err != nil {
		t.Fatal(err)
	}
	return attest.Verify(signed, attest.VerifyOptions{TrustedKeys: []*attest.PublicKey{hk.PublicKey()}, Nonce: n,
		Expected: expected, Strict: strict, Evidence: evidenceVerifier(t)})
}

func expectAll() []attest.Expectation {
	var out []attest.Expectation
	for _, r := range regions {
		out = append(out, attest.Expectation{RegionID: r.ID, Roots: []attest.Digest{measure.Bytes(r.Content())}})
	}
	return out
}

// TestAgentInGuest: boot → hello → attest → the host verifies the guest
// evidence, its binding and every region root; then a region in guest
// memory changes and the next attestation shows drift naming it.
func TestAgentInGuest(t *testing.T) {
	vm := bootVM(t)
	c, _ := dialAgent(t, vm)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.Sync(ctx); err != nil {
		t.Fatalf("sync: %v", err)
	}
	h, err := c.Hello(ctx)
	if err != nil {
		t.Fatalf("hello: %v", err)
	}
	if h.Platform != attest.Platform(evidenceType) {
		t.Errorf("hello platform = %q, want %q", h.Platform, evidenceType)
	}
	rs, err := c.Regions(ctx)
	if err != nil || len(rs) != len(regions) {
		t.Fatalf("regions = %v, %v", rs, err)
	}
	n := nonce(t)
	res, err := c.Attest(ctx, agentproto.AttestArgs{Nonce: n, Event: attest.EventBoot, VM: "vm-it"})
	if err != nil {
		t.Fatalf("attest: %v", err)
	}
	vr, err := hostVerify(t, res.Evidence, n, attest.EventBoot, expectAll(), true)
	if err != nil {
		t.Fatalf("host verification of the guest's evidence: %v", err)
	}
	if vr.Guest.Seq != 0 || attest.KeyIDOf(vr.Guest.GuestKey) != h.KeyID {
		t.Errorf("guest evidence seq %d key %s, want 0 and %s", vr.Guest.Seq, attest.KeyIDOf(vr.Guest.GuestKey), h.KeyID)
	}
	if vr.Guest.Hardware == nil || vr.Guest.Hardware.Type != attest.Platform(evidenceType) {
		t.Fatalf("guest evidence carries hardware evidence %+v, want %s", vr.Guest.Hardware, evidenceType)
	}
	// Replaying that evidence for another nonce fails the binding.
	if _, err := hostVerify(t, res.Evidence, nonce(t), attest.EventBoot, nil, false); err == nil {
		t.Error("guest evidence verified for a nonce it does not answer")
	}
	// Simulated evidence never passes a verifier that trusts real roots only.
	if _, err := attest.CheckGuestEvidence(res.Evidence, n, attest.EventBoot, "vm-it", attest.VerifyOptions{Evidence: realRootsVerifier(t)}); !errors.Is(err, attest.ErrBinding) {
		t.Errorf("simulated evidence against real roots: %v, want ErrBinding", err)
	}

	// Tamper: rewrite 8 bytes of w1 inside the guest, in its second page.
	status, err := vm.Run(ctx, "printf TAMPERED | dd of=/data/w1 bs=1 seek=5000 conv=notrunc 2>/dev/null")
	if err != nil || status != 0 {
		t.Fatalf("tampering in the guest: status %d, %v", status, err)
	}
	n2 := nonce(t)
	res2, err := c.Attest(ctx, agentproto.AttestArgs{Nonce: n2, Event: attest.EventOnDemand, VM: "vm-it"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = hostVerify(t, res2.Evidence, n2, attest.EventOnDemand, expectAll(), true)
	var de *attest.RegionDriftError
	if !errors.As(err, &de) || len(de.Regions) != 1 || de.Regions[0].RegionID != "w1" {
		t.Fatalf("after tampering: %v, want drift of w1 only", err)
	}
	tampered := regions[1].Content()
	copy(tampered[5000:], "TAMPERED")
	if de.Regions[0].Got != measure.Bytes(tampered) {
		t.Errorf("drifted root %s is not the root of the tampered content %s", de.Regions[0].Got, measure.Bytes(tampered))
	}
	vr2, err := hostVerify(t, res2.Evidence, n2, attest.EventOnDemand, nil, false)
	if err != nil {
		t.Fatalf("the second evidence without reference values: %v", err)
	}
	if vr2.Guest.Seq != 1 || vr2.Guest.Prev == nil || *vr2.Guest.Prev != res.Hash {
		t.Errorf("second evidence seq %d prev %v does not chain to the first (%s)", vr2.Guest.Seq, vr2.Guest.Prev, res.Hash)
	}
}

// TestHostReconnect: the host drops its connection in the middle of an
// exchange; stale bytes stay in the channel; a new connection syncs past
// them and the chain continues.
func TestHostReconnect(t *testing.T) {
	vm := bootVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c1, conn1 := dialAgent(t, vm)
	n := nonce(t)
	first, err := c1.Attest(ctx, agentproto.AttestArgs{Nonce: n, Event: attest.EventBoot, VM: "vm-it"})
	if err != nil {
		t.Fatal(err)
	}
	// Leave a request whose reply nobody reads, and half a line.
	conn1.Write([]byte(`{"id":900,"op":"hello"}` + "\n" + `{"id":901,"op":"att`))
	time.Sleep(300 * time.Millisecond)
	conn1.Close()

	c2, _ := dialAgent(t, vm)
	if err := c2.Sync(ctx); err != nil {
		t.Fatalf("sync after reconnect: %v", err)
	}
	second, err := c2.Attest(ctx, agentproto.AttestArgs{Nonce: n, Event: attest.EventPeriodic, VM: "vm-it"})
	if err != nil {
		t.Fatalf("attest after reconnect: %v", err)
	}
	vr, err := hostVerify(t, second.Evidence, n, attest.EventPeriodic, expectAll(), true)
	if err != nil {
		t.Fatal(err)
	}
	if vr.Guest.Seq != 1 || *vr.Guest.Prev != first.Hash {
		t.Errorf("after reconnect: seq %d prev %v, want 1 and %s", vr.Guest.Seq, vr.Guest.Prev, first.Hash)
	}
}

// TestAgentBenchmark measures the attest round trip (4 regions of 16 MiB,
// excluding boot) over 50 requests and the agent's idle RSS. It reports
// figures; it asserts only what cannot be noise: every request succeeds and
// idle RSS stays within 20 MiB.
func TestAgentBenchmark(t *testing.T) {
	vm := bootVM(t)
	c, _ := dialAgent(t, vm)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	rss := func() int { // KiB
		out, status, err := vm.Output(ctx, `awk '/VmRSS/{print $2}' /proc/$(pidof hvmon)/status`)
		kib, perr := strconv.Atoi(strings.TrimSpace(out))
		if err != nil || status != 0 || perr != nil {
			t.Fatalf("reading the agent's RSS: %q, status %d, %v %v", out, status, err, perr)
		}
		return kib
	}
	idle := rss()
	var lat []time.Duration
	for i := range 50 {
		start := time.Now()
		if _, err := c.Attest(ctx, agentproto.AttestArgs{Nonce: nonce(t), Event: attest.EventPeriodic, VM: "vm-it", Regions: []string{"w0", "w1", "w2", "kv"}}); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1)+0.5)] }
	after := rss()
	t.Logf("agent attest round trip, 4 x 16 MiB regions, %s: p50 %s, p99 %s, min %s, max %s (n=%d)",
		vm.Accel, p(0.50).Round(time.Millisecond), p(0.99).Round(time.Millisecond), lat[0].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), len(lat))
	t.Logf("agent RSS: idle %d KiB, after 50 attestations %d KiB", idle, after)
	if idle > 20<<10 {
		t.Errorf("agent RSS while idle = %d KiB, want <= 20 MiB", idle)
	}
}
