package host

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/evidence"
	"hvmon.dev/hvmon/evidence/sim"
	"hvmon.dev/hvmon/guest"
	"hvmon.dev/hvmon/internal/syncbuf"
	"hvmon.dev/hvmon/policy"
	"hvmon.dev/hvmon/qmp/qmptest"
)

// TestRelyingPartyNonce: a relying party's nonce goes through the API to
// the agent and comes back in the report and its guest evidence, so that
// verify --nonce proves the report answers that party's own question.
func TestRelyingPartyNonce(t *testing.T) {
	r := newRig(t)
	c, stop := apiClient(t, r)
	defer stop()
	ctx := context.Background()
	mine := bytes.Repeat([]byte{0x5a}, 16)
	e, err := c.AttestNonce(ctx, "vm-1", "", nil, mine)
	if err != nil {
		t.Fatalf("AttestNonce = %v", err)
	}
	b, err := c.Report(ctx, e.Hash)
	if err != nil {
		t.Fatal(err)
	}
	o := attest.VerifyOptions{TrustedKeys: []*attest.PublicKey{r.key.PublicKey()}, Now: e.Time, Nonce: mine, VM: "vm-1"}
	res, err := attest.Verify(b, o)
	if err != nil {
		t.Fatalf("the report does not answer the relying party's nonce: %v", err)
	}
	if res.Guest == nil || !bytes.Equal(res.Guest.Nonce, mine) {
		t.Fatalf("guest evidence answers %x, want %x (agent %s)", res.Guest.Nonce, mine, res.Report.Host.Agent)
	}
	// Another party's nonce is not answered.
	o.Nonce = bytes.Repeat([]byte{0x5b}, 16)
	if _, err := attest.Verify(b, o); !errors.Is(err, attest.ErrNonce) {
		t.Errorf("verified with another nonce: %v, want ErrNonce", err)
	}
	// Without a nonce the daemon draws a fresh one, each time.
	e1, _ := c.AttestNonce(ctx, "vm-1", "", nil, nil)
	e2, _ := c.AttestNonce(ctx, "vm-1", "", nil, nil)
	in1, _, _ := r.store.Get(ctx, e1.Hash)
	in2, _, _ := r.store.Get(ctx, e2.Hash)
	n1, n2 := nonceOf(t, in1), nonceOf(t, in2)
	if len(n1) != attest.NonceSize || bytes.Equal(n1, n2) || bytes.Equal(n1, mine) {
		t.Errorf("drawn nonces %x and %x", n1, n2)
	}
	// Out of bounds: 400, and no report.
	before, _ := r.store.List(ctx, Query{VM: "vm-1"})
	for _, n := range [][]byte{make([]byte, 7), make([]byte, 65)} {
		if _, err := c.AttestNonce(ctx, "vm-1", "", nil, n); err == nil || !strings.Contains(err.Error(), "HTTP 400") {
			t.Errorf("a %d-byte nonce: %v, want HTTP 400", len(n), err)
		}
	}
	if after, _ := r.store.List(ctx, Query{VM: "vm-1"}); len(after) != len(before) {
		t.Errorf("a refused request stored a report")
	}
	if _, err := r.sup.AttestNonce(ctx, "vm-1", attest.EventOnDemand, nil, make([]byte, 3)); !errors.Is(err, ErrBadNonce) {
		t.Errorf("Supervisor.AttestNonce(3 bytes) = %v, want ErrBadNonce", err)
	}
}

func nonceOf(t *testing.T, b []byte) []byte {
	t.Helper()
	in, err := attest.Inspect(b)
	if err != nil {
		t.Fatal(err)
	}
	return in.Report.Nonce
}

func apiClient(t *testing.T, r *rig) (*APIClient, func()) {
	t.Helper()
	sock := filepath.Join(r.dir, "api.sock")
	ln, err := ListenAPI(sock, "")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: APIHandler(r.sup, r.store, hclog.NewNullLogger())}
	go srv.Serve(ln)
	return NewAPIClient(sock), func() { srv.Close() }
}

// TestVMNamesWhereTheyEnter: a VM name outside the rule is refused by the
// API (400), the supervisor, the configuration and the watched directory.
func TestVMNamesWhereTheyEnter(t *testing.T) {
	var logs syncbuf.Buffer
	r := newRigOpts(t, nil, func(o *Options) {
		o.Logger = hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info})
	})
	c, stop := apiClient(t, r)
	defer stop()
	ctx := context.Background()
	for _, name := range []string{"vm-1 ", "v\u043c-1", "vm-1\u200b", strings.Repeat("v", 129)} {
		if _, err := c.Attest(ctx, name, "", nil); err == nil || !strings.Contains(err.Error(), "HTTP 400") || !strings.Contains(err.Error(), "invalid VM name") {
			t.Errorf("API attest for %q: %v, want HTTP 400", name, err)
		}
		if _, err := c.Event(ctx, AttestRequest{VM: name, Event: attest.EventBoot}); err == nil || !strings.Contains(err.Error(), "HTTP 400") {
			t.Errorf("API event for %q: %v, want HTTP 400", name, err)
		}
		err := r.sup.Add(ctx, VMConfig{Name: name, QMP: r.qemu.Path})
		if !errors.Is(err, attest.ErrInvalidVMName) {
			t.Errorf("Supervisor.Add(%q) = %v, want ErrInvalidVMName", name, err)
		}
	}
	if es, _ := r.store.List(ctx, Query{}); len(es) != 0 {
		t.Errorf("refused requests stored %d report(s)", len(es))
	}

	// The watched directory: "bad name.qmp" is not followed, and said so once.
	dir := filepath.Join(r.dir, "vms")
	os.Mkdir(dir, 0o755)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	q2, err := qmptest.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	bad := filepath.Join(dir, "bad name.qmp")
	os.Rename(q2.Path, bad)
	q3, err := qmptest.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer q3.Close()
	os.Rename(q3.Path, filepath.Join(dir, "vm-3.qmp"))
	go r.sup.WatchDir(wctx, dir, 10*time.Millisecond, VMConfig{})
	waitFor(t, func() bool { return len(r.sup.VMs()) == 2 })
	time.Sleep(100 * time.Millisecond) // several more polls
	for _, v := range r.sup.VMs() {
		if v.Name != "vm-1" && v.Name != "vm-3" {
			t.Errorf("following %q", v.Name)
		}
	}
	if n := strings.Count(logs.String(), "its name breaks the VM name rule"); n != 1 || !strings.Contains(logs.String(), "bad name.qmp") {
		t.Errorf("logged the refused name %d time(s), want once naming the socket:\n%s", n, logs.String())
	}
}

// TestVMIdentityEndToEnd: an agent launched for VM "vm-a" (its simulated
// SEV-SNP HOST_DATA is vm-a's identity) whose host follows it under
// another name has its evidence relabelled for that name; a policy with
// bind_vm_identity contraindicates every such report, and affirms the
// identity when the host names the VM as it was launched.
func TestVMIdentityEndToEnd(t *testing.T) {
	seed := []byte("hvmon host identity test seed")
	id := attest.VMIdentityHostData("vm-a")
	prov, err := evidence.NewSimulatedSNP(sim.Options{Seed: seed, HostData: id[:]})
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := evidence.NewVerifier(evidence.Options{AllowSimulated: true, SimulatedRoots: prov.Roots()})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse([]byte(`hardware_roots {
  allow_simulated = true
  simulated       = ["sim.pem"]
}
defaults {
  bind_vm_identity = true
}
`), "/p/policy.hcl", policy.Options{Hardware: evidence.PolicyHardware{}, ReadFile: func(string) ([]byte, error) { return prov.RootsPEM(), nil }})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string // the name the host follows the VM under
		reason string
		status policy.Status
	}{
		{"vm-a", policy.ReasonIdentityBound, policy.Affirming},
		{"vm-b", policy.ReasonIdentityMismatch, policy.Contraindicated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ag *fakeAgent
			r := newRigOpts(t, func(vc *VMConfig) {
				vc.Name = tc.name
				ag = agentWith(t, filepath.Join(os.TempDir()), prov)
				vc.Agent = ag.Path
			}, func(o *Options) { o.Evidence = verifier })
			e, err := r.sup.Attest(context.Background(), tc.name, attest.EventOnDemand, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _, err := r.store.Get(context.Background(), e.Hash)
			if err != nil {
				t.Fatal(err)
			}
			o, err := pol.VerifyOptions(attest.VerifyOptions{TrustedKeys: []*attest.PublicKey{r.key.PublicKey()}, Now: e.Time, VM: tc.name, RequireHardware: true})
			if err != nil {
				t.Fatal(err)
			}
			res, err := attest.Verify(b, o)
			if err != nil {
				t.Fatalf("stored report: %v", err)
			}
			v := pol.At(e.Time).AppraiseResult(res)
			var got *policy.Finding
			for i, f := range v.Findings {
				if f.Check == "vm.identity" {
					got = &v.Findings[i]
				}
			}
			if got == nil || got.Reason != tc.reason || got.Status != tc.status || v.Status != tc.status {
				t.Fatalf("verdict %s, vm.identity %+v, want %s/%s; findings %+v", v.Status, got, tc.status, tc.reason, v.Findings)
			}
		})
	}
}

// agentWith serves an agent with a hardware evidence provider.
func agentWith(t *testing.T, dir string, p evidence.Provider) *fakeAgent {
	t.Helper()
	d, err := os.MkdirTemp(dir, "hvmon-agent")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	weights := filepath.Join(d, "weights")
	os.WriteFile(weights, bytes.Repeat([]byte("w"), 5000), 0o644)
	a, err := guest.New(&guest.Config{Regions: []guest.RegionConfig{{ID: "weights", File: weights}}}, guest.Options{Provider: p})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeAgent{Path: filepath.Join(d, "agent.sock"), agent: a}
	f.start(t)
	t.Cleanup(f.stop)
	return f
}
