package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/evidence"
	"hvmon.dev/hvmon/evidence/sim"
	"hvmon.dev/hvmon/internal/keyfile"
	"hvmon.dev/hvmon/measure"
	"hvmon.dev/hvmon/policy"
)

// policySimSeed is the seed of the simulated hardware in the policy
// scripts; they trust it as $SIMSEED.
var policySimSeed = []byte("hvmon policy scripts simulated hw")

// policyScriptTime is when simreport's reports are issued; they live an
// hour, and scripts verify them with --at.
var policyScriptTime = time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)

// TestPolicyScripts runs the policy*.txtar scripts with $SIMSEED, the
// simreport command, and $POLICY_RUNNER, an executable marker that scripts
// test with [exec:$POLICY_RUNNER]; other runners of the directory skip them.
//
//	simreport [-tdx] [-debug] [-none] [-event EV] [-host-region ID=FILE] [-vm NAME]
//	          [-launched-as NAME] [-uuid UUID] [-guest-age D] [-nonce HEX] KEY OUT ID=FILE...
//
// signs (with the host KEY) a report of VM vm-1 (or -vm NAME) issued at
// 2026-01-15T12:00:00Z, whose guest evidence holds the regions ID=FILE and
// simulated SEV-SNP (or TDX) evidence from $SIMSEED (-none: no hardware
// evidence, platform none), and writes it to OUT. -launched-as NAME sets
// the simulated HOST_DATA (MRCONFIGID) to NAME's VM identity; -uuid adds
// host observations with that vm_uuid fact; -guest-age D issues the guest
// evidence D before the report; -nonce sets the nonce (hex).
func TestPolicyScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/script/policy*.txtar")
	if err != nil || len(files) == 0 {
		t.Fatalf("no policy scripts: %v", err)
	}
	self, err := filepath.Abs(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Files:               files,
		RequireExplicitExec: true,
		Setup: func(e *testscript.Env) error {
			// The host key of the shared vectors, as seeded.key.
			for src, dst := range map[string]string{"host.key": "seeded.key", "host.pub": "seeded.key.pub"} {
				b, err := os.ReadFile(filepath.Join(vectorDir, "keys", src))
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(e.WorkDir, dst), b, 0o600); err != nil {
					return err
				}
			}
			e.Setenv("SIMSEED", hex.EncodeToString(policySimSeed))
			e.Setenv("POLICY_RUNNER", self)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits":     cmdExits,
			"simreport": cmdSimReport,
		},
	})
}

var (
	simOnce sync.Once
	simSNP  *evidence.SimulatedSNP
	simTDX  *evidence.SimulatedTDX
	simDbg  *evidence.SimulatedSNP
	simErr  error
)

func simProviders() error {
	simOnce.Do(func() {
		if simSNP, simErr = evidence.NewSimulatedSNP(sim.Options{Seed: policySimSeed}); simErr != nil {
			return
		}
		if simDbg, simErr = evidence.NewSimulatedSNP(sim.Options{Seed: policySimSeed, Debug: true}); simErr != nil {
			return
		}
		simTDX, simErr = evidence.NewSimulatedTDX(sim.Options{Seed: policySimSeed})
	})
	return simErr
}

var (
	identityMu    sync.Mutex
	identityProvs = map[string]evidence.SimulatedProvider{}
)

// identityProvider is the simulated provider of type typ for a guest the
// host launched with the VM identity of name (HOST_DATA or MRCONFIGID).
func identityProvider(ts *testscript.TestScript, typ attest.Platform, name string) evidence.SimulatedProvider {
	identityMu.Lock()
	defer identityMu.Unlock()
	key := string(typ) + "/" + name
	if p, ok := identityProvs[key]; ok {
		return p
	}
	o := sim.Options{Seed: policySimSeed}
	var p evidence.SimulatedProvider
	var err error
	if typ == attest.PlatformSimulatedTDX {
		m := attest.VMIdentityMRConfigID(name)
		o.MRConfigID = m[:]
		p, err = evidence.NewSimulatedTDX(o)
	} else {
		h := attest.VMIdentityHostData(name)
		o.HostData = h[:]
		p, err = evidence.NewSimulatedSNP(o)
	}
	ts.Check(err)
	identityProvs[key] = p
	return p
}

func cmdSimReport(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! simreport")
	}
	ts.Check(simProviders())
	var p evidence.SimulatedProvider = simSNP
	event := attest.EventBoot
	var hostRegions []string
	vm, launchedAs, uuid := "vm-1", "", ""
	var guestAge time.Duration
	var none bool
	nonce := make([]byte, 32)
	_, err := rand.Read(nonce)
	ts.Check(err)
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "-tdx":
			p = simTDX
		case "-debug":
			p = simDbg
		case "-none":
			none = true
		case "-event":
			event, args = attest.Event(args[1]), args[1:]
		case "-host-region":
			hostRegions, args = append(hostRegions, args[1]), args[1:]
		case "-vm":
			vm, args = args[1], args[1:]
		case "-launched-as":
			launchedAs, args = args[1], args[1:]
		case "-uuid":
			uuid, args = args[1], args[1:]
		case "-guest-age":
			guestAge, err = time.ParseDuration(args[1])
			ts.Check(err)
			args = args[1:]
		case "-nonce":
			nonce, err = hex.DecodeString(args[1])
			ts.Check(err)
			args = args[1:]
		default:
			ts.Fatalf("simreport: unknown option %s", args[0])
		}
		args = args[1:]
	}
	if launchedAs != "" {
		p = identityProvider(ts, p.Type(), launchedAs)
	}
	if len(args) < 3 {
		ts.Fatalf("usage: simreport [-tdx] [-debug] [-event EV] [-host-region ID=FILE] KEY OUT ID=FILE...")
	}
	hk, err := keyfile.LoadPrivate(ts.MkAbs(args[0]), keyfile.LoadOptions{})
	ts.Check(err)
	claims := func(specs []string, platform attest.Platform) []attest.Claim {
		var out []attest.Claim
		for _, s := range specs {
			id, file, ok := strings.Cut(s, "=")
			if !ok {
				ts.Fatalf("simreport: region %q: want ID=FILE", s)
			}
			data := []byte(ts.ReadFile(file))
			out = append(out, attest.Claim{
				Region:   attest.Region{ID: id, Size: uint64(len(data)), Source: "file:" + file},
				Snapshot: attest.Snapshot{RegionID: id, Root: measure.Bytes(data), Size: uint64(len(data)), TakenAt: policyScriptTime, PageSize: 4096},
				Workload: vm, Platform: platform,
			})
		}
		return out
	}
	gk, err := attest.NewKeyFromSeed(bytes.Repeat([]byte{0x47}, attest.SeedSize))
	ts.Check(err)
	platform := p.Type()
	if none {
		platform = attest.PlatformNone
	}
	g := &attest.GuestEvidence{
		IssuedAt: policyScriptTime.Add(-guestAge), Nonce: nonce, Event: event, VM: vm,
		Platform: platform, GuestKey: gk.PublicKey().Bytes(), Claims: claims(args[2:], platform),
	}
	if !none {
		rd, err := attest.GuestReportData(g)
		ts.Check(err)
		if g.Hardware, err = p.Evidence(context.Background(), rd); err != nil {
			ts.Fatalf("simreport: %v", err)
		}
	}
	guest, err := attest.SignGuestEvidence(gk, g, &attest.SignOptions{Deterministic: true})
	ts.Check(err)
	r := &attest.Report{
		IssuedAt: policyScriptTime, ExpiresAt: policyScriptTime.Add(time.Hour), Nonce: nonce,
		Event: event, Workload: vm, Platform: attest.PlatformHost,
		Attester: attest.Identity{Name: "hv-1"}, Guest: guest,
		Claims: claims(hostRegions, attest.PlatformHost),
	}
	if uuid != "" {
		r.Host = &attest.Observations{Host: "hv-1", EventAt: policyScriptTime, Agent: "ok", Facts: map[string]string{attest.FactVMUUID: uuid}}
	}
	signed, err := attest.Sign(hk, r, &attest.SignOptions{Deterministic: true})
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), signed, 0o644))
}

// A bad --policy is a usage error (exit 1) whatever it wraps; a
// contraindicated verdict is an appraisal failure (exit 5).
func TestPolicyExitCodes(t *testing.T) {
	_, err := loadPolicyFlag(filepath.Join(t.TempDir(), "none.hcl"))
	if exitCode(err) != exitUsage || !errors.Is(err, policy.ErrInvalidPolicy) {
		t.Errorf("missing policy: %v exits %d", err, exitCode(err))
	}
	v := policy.Verdict{}
	v.Add(policy.Finding{Check: "x", Status: policy.Contraindicated, Reason: "r"})
	if exitCode(v.Err()) != exitAppraisal || countClasses(v.Err()) != 1 {
		t.Errorf("contraindicated verdict exits %d", exitCode(v.Err()))
	}
}
