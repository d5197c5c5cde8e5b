package policy_test

import (
	"fmt"
	"os"
	"path/filepath"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/internal/keyfile"
	"hvmon.dev/hvmon/policy"
)

// ExampleAuditChain audits the demo's lifecycle: verify every report
// (here as of its own issue time), then audit them as one history.
func ExampleAuditChain() {
	var keys []*attest.PublicKey
	for _, k := range []string{"host.pub", "other.pub"} {
		pub, err := keyfile.LoadPublic(filepath.Join("..", "testdata", "keys", k))
		if err != nil {
			panic(err)
		}
		keys = append(keys, pub)
	}
	files, _ := filepath.Glob("testdata/chain/lifecycle/*.cose")
	var history []policy.ChainReport
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			panic(err)
		}
		in, _ := attest.Inspect(b)
		res, err := attest.Verify(b, attest.VerifyOptions{TrustedKeys: keys, Now: in.Report.IssuedAt})
		history = append(history, policy.ChainReport{Name: filepath.Base(f), Result: res, Err: err})
	}
	audit := policy.AuditChain(history)
	for _, vm := range audit.VMs {
		for _, e := range vm.Timeline {
			fmt.Println(e.Report, e.Host, e.Seq, orDash(e.GuestSeq), e.Status, e.Notes)
		}
	}
	for _, f := range audit.Findings {
		if f.Status != policy.Affirming || f.Reason == policy.ReasonHandover {
			fmt.Println(f.Check, f.Status, f.Reason, f.Subject)
		}
	}
	fmt.Println(audit.Status)
	// Output:
	// 01-hv-a-boot.cose hv-a 0 0 affirming []
	// 02-hv-a-periodic.cose hv-a 1 1 affirming []
	// 03-hv-a-migrate-out.cose hv-a 2 2 affirming []
	// 04-hv-b-migrate-in.cose hv-b 0 3 affirming [handover]
	// 05-hv-b-snapshot.cose hv-b 1 4 affirming []
	// 06-hv-b-on-demand.cose hv-b 2 5 affirming []
	// 07-hv-b-restore.cose hv-b 3 4 contraindicated [rollback]
	// 08-hv-b-shutdown.cose hv-b 4 - affirming []
	// chain.migration affirming handover 04-hv-b-migrate-in.cose
	// chain.guest contraindicated rollback 07-hv-b-restore.cose
	// contraindicated
}

func orDash(p *uint64) string {
	s := "-"
	if p != nil {
		s = fmt.Sprint(*p)
	}
	return s
}
