package policy_test

import (
	"fmt"
	"strings"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/policy"
)

// A policy for reports without hardware evidence, appraising a verified
// report whose region drifted where the policy tolerates it.
func ExamplePolicy_Appraise() {
	p, err := policy.Parse([]byte(`
defaults {
  require_hardware = false
  allowed_events   = ["on-demand"]
  region "weights" {
    roots       = ["1ac628e39dcd96bc569066daed1353b60d7f44f290461524c93286f9a1ce7dbd"]
    on_mismatch = "warning"
  }
}
`), "example.hcl", policy.Options{})
	if err != nil {
		panic(err)
	}
	now := time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)
	// In real use, res comes from attest.Verify with p.VerifyOptions.
	res := &attest.Result{
		Valid: true,
		Report: &attest.Report{
			IssuedAt: now, Event: attest.EventOnDemand, Workload: "llm-1", Platform: "file",
			Claims: []attest.Claim{{
				Region:   attest.Region{ID: "weights", Size: 16},
				Snapshot: attest.Snapshot{RegionID: "weights", Root: attest.Digest{0x9f}, Size: 16, TakenAt: now, PageSize: 4096},
				Workload: "llm-1", Platform: "file",
			}},
		},
	}
	v := p.Appraise(policy.Input{Result: res, Now: now})
	for _, f := range v.Findings {
		fmt.Println(strings.TrimSpace(fmt.Sprintf("%s %s %s", f.Check, f.Status, f.Reason)))
	}
	fmt.Println("verdict:", v.Status, v.Err())
	// Output:
	// signer none
	// report.event affirming event_allowed
	// region.weights warning root_not_allowed
	// verdict: warning <nil>
}

// An unknown setting is an error that names it and its line.
func ExampleParse() {
	_, err := policy.Parse([]byte("defaults {\n  max_age = \"15m\"\n  alowed_events = []\n}\n"), "vm.hcl", policy.Options{})
	fmt.Println(err)
	// Output:
	// vm.hcl:3: Unsupported argument; An argument named "alowed_events" is not expected here. Did you mean "allowed_events"?
}

// A starting policy from a golden report without hardware evidence.
func ExampleGenerate() {
	now := time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)
	res := &attest.Result{
		Valid: true,
		Report: &attest.Report{
			IssuedAt: now, Event: attest.EventOnDemand, Workload: "llm-1", Platform: "file",
			Claims: []attest.Claim{{
				Region:   attest.Region{ID: "weights", Size: 16},
				Snapshot: attest.Snapshot{RegionID: "weights", Root: attest.Digest{0x9f}, Size: 16, TakenAt: now, PageSize: 4096},
				Workload: "llm-1", Platform: "file",
			}},
		},
	}
	text, err := policy.Generate(policy.Golden{Result: res, HostKeys: []string{"host.key.pub"}})
	if err != nil {
		panic(err)
	}
	fmt.Print(string(text))
	// Output:
	// # hvmon policy, generated from the golden report 0000000000000000000000000000000000000000000000000000000000000000
	// # (VM llm-1, event on-demand, issued 2026-01-15T12:00:00Z).
	// # Review every value before trusting it: it says what this one report held,
	// # not what the VM should hold. docs/POLICY.md describes every setting.
	//
	// # The host keys whose reports are accepted (PEM SPKI, relative to this file).
	// trust {
	//   host_keys = ["host.key.pub"]
	// }
	//
	// defaults {
	//   # Only the VMs a vm block names are appraised: any other VM (another
	//   # name, or this one spelled differently) is contraindicated (unknown_vm).
	//   # Add a vm block for each VM you accept.
	//   require_vm_block = true
	//   # The golden report carries NO hardware evidence: its regions are only as
	//   # trustworthy as its signer. Set require_hardware = true for confidential VMs.
	//   require_hardware = false
	//   # Reports older than this are contraindicated; uncomment to bound them.
	//   # max_age = "15m"
	//   # The lifecycle events accepted; remove those this VM should never report.
	//   allowed_events = ["boot", "migrate-out", "migrate-in", "snapshot", "restore", "periodic", "on-demand", "shutdown"]
	// }
	//
	// # The golden report's VM, by its exact name.
	// vm "llm-1" {
	//   # Reference roots, one region each; add roots to accept other versions.
	//   region "weights" {
	//     roots = ["9f00000000000000000000000000000000000000000000000000000000000000"]
	//   }
	// }
}
