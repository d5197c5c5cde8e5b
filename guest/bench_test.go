package guest

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"hvmon.dev/hvmon/agentproto"
	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/evidence"
	"hvmon.dev/hvmon/evidence/sim"
)

// BenchmarkAttest is the agent's work for one attest request of a
// one-page region, as Serve does it (request line in, response line out),
// without and with simulated SEV-SNP evidence: the CPU time a report costs
// inside the guest, apart from measuring large regions.
func BenchmarkAttest(b *testing.B) {
	dir := b.TempDir()
	page := filepath.Join(dir, "page")
	if err := os.WriteFile(page, bytes.Repeat([]byte("p"), 4096), 0o644); err != nil {
		b.Fatal(err)
	}
	snp, err := evidence.NewSimulatedSNP(sim.Options{Seed: bytes.Repeat([]byte{9}, 32)})
	if err != nil {
		b.Fatal(err)
	}
	args, _ := json.Marshal(agentproto.AttestArgs{Nonce: bytes.Repeat([]byte{1}, 32), Event: attest.EventPeriodic, VM: "vm-1"})
	line, _ := json.Marshal(agentproto.Request{ID: 1, Op: agentproto.OpAttest, Args: args})
	for _, c := range []struct {
		name     string
		provider evidence.Provider
	}{{"none", nil}, {"simulated-sev-snp", snp}} {
		b.Run(c.name, func(b *testing.B) {
			a, err := New(&Config{Regions: []RegionConfig{{ID: "page", File: page}}}, Options{Provider: c.provider})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				resp := a.Handle(context.Background(), line)
				if resp.Error != nil {
					b.Fatal(resp.Error)
				}
				if _, err := agentproto.EncodeLine(resp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
