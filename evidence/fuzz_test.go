package evidence

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-sev-guest/verify/trust"

	"hvmon.dev/hvmon/attest"
)

// evidenceSeeds are the fuzz seeds: the recorded Milan report and Sapphire
// Rapids quote, and simulated evidence of both kinds. The loader fails
// rather than fuzz without them.
func evidenceSeeds(f *testing.F) []*attest.HardwareEvidence {
	f.Helper()
	rd := testReportData(0x5e)
	seeds := []*attest.HardwareEvidence{milanEvidence(f), sprEvidence(f)}
	for _, p := range []SimulatedProvider{simSNP(f, "seed one", false), simTDX(f, "seed one", false)} {
		hw, err := p.Evidence(f.Context(), rd)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, hw)
	}
	for _, s := range seeds {
		if len(s.Report) == 0 {
			f.Fatal("empty fuzz seed")
		}
	}
	return seeds
}

var fuzzTypes = []attest.Platform{attest.PlatformSEVSNP, attest.PlatformTDX, attest.PlatformSimulatedSEVSNP, attest.PlatformSimulatedTDX, "none"}

func typeIndex(t attest.Platform) uint8 {
	for i, x := range fuzzTypes {
		if x == t {
			return uint8(i)
		}
	}
	return 0
}

// FuzzVerify holds Inspect and Verify to their contracts on any evidence:
// no panic; every error in exactly one of the four classes; evidence that
// verifies also inspects, to the same values. The seeds are kilobytes
// long, and minimizing an interesting input then dominates: run it with
// -fuzzminimizetime=1x.
func FuzzVerify(f *testing.F) {
	for _, hw := range evidenceSeeds(f) {
		var cert []byte
		if len(hw.Certs) > 0 {
			cert = hw.Certs[0]
		}
		f.Add(typeIndex(hw.Type), []byte(hw.Report), cert)
	}
	roots := append(simSNP(f, "seed one", false).Roots(), simTDX(f, "seed one", false).Roots()...)
	v := mustVerifier(f, Options{AllowSimulated: true, SimulatedRoots: roots, AllowDebugUnsafe: true})
	f.Fuzz(func(t *testing.T, typ uint8, report, cert []byte) {
		hw := &attest.HardwareEvidence{Type: fuzzTypes[int(typ)%len(fuzzTypes)], Report: report}
		if cert != nil {
			hw.Certs = []attest.HexBytes{cert}
		}
		in, ierr := Inspect(hw)
		s, err := v.VerifyWithoutReportDataUnsafe(hw, testNow)
		if err != nil {
			n := 0
			for _, c := range []error{ErrMalformed, ErrUntrusted, ErrReportData, ErrPolicy} {
				if errors.Is(err, c) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("Verify error %q matches %d classes, want 1", err, n)
			}
			return
		}
		if ierr != nil {
			t.Fatalf("Verify passed, Inspect failed: %v", ierr)
		}
		if !bytes.Equal(s.ReportData, in.ReportData) || !bytes.Equal(s.Measurement, in.Measurement) || s.Debug != in.Debug {
			t.Fatalf("Verify %+v and Inspect %+v disagree", s, in)
		}
	})
}

// FuzzParseCertificates: any accepted input gives 1 to MaxCertificates
// certificates, each of which re-parses from its own DER.
func FuzzParseCertificates(f *testing.F) {
	for _, s := range [][]byte{
		trust.AskArkMilanVcekBytes, trust.AskArkTurinVlekBytes, milanEvidence(f).Certs[0],
		simTDX(f, "seed one", false).RootsPEM(), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), []byte("x"),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseCertificates(data)
		if err != nil {
			return
		}
		if len(certs) == 0 || len(certs) > MaxCertificates {
			t.Fatalf("ParseCertificates accepted %d certificates", len(certs))
		}
		for _, c := range certs {
			if _, err := ParseCertificates(c.Raw); err != nil {
				t.Fatalf("certificate does not re-parse from its DER: %v", err)
			}
		}
	})
}

// FuzzParseCertTable: any accepted table yields blobs that lie inside it.
func FuzzParseCertTable(f *testing.F) {
	chain := simSNP(f, "seed one", false).s.Chain()
	f.Add(certTable(map[[16]byte][]byte{guidVCEK: chain[0], guidASK: chain[1], guidARK: chain[2]}, guidVCEK, guidASK, guidARK))
	f.Add(certTable(map[[16]byte][]byte{guidVLEK: []byte("vlek")}, guidVLEK))
	f.Add(make([]byte, certTableEntrySize))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, data []byte) {
		tbl, err := parseCertTable(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("parseCertTable error %v is not ErrMalformed", err)
			}
			return
		}
		for _, b := range [][]byte{tbl.vcek, tbl.vlek, tbl.ask, tbl.ark} {
			if b != nil && !bytes.Contains(data, b) {
				t.Fatalf("blob %x is not in the table", b)
			}
		}
	})
}
