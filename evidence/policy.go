package evidence

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"fmt"

	"github.com/google/go-sev-guest/kds"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/policy"
)

// PolicyHardware gives package policy what it needs of the TEE libraries,
// which policy itself must not import: an offline verifier for a policy's
// hardware_roots, and the decoded fields of hardware evidence. The zero
// value is ready to use.
type PolicyHardware struct{}

var _ policy.Hardware = PolicyHardware{}

// Verifier implements policy.Hardware. The verifier accepts debug guests:
// the policy decides about them (forbidden unless allow_debug), so a debug
// guest is an appraisal finding rather than a verification failure.
func (PolicyHardware) Verifier(t policy.HardwareTrust) (attest.EvidenceVerifier, error) {
	opts := Options{AllowSimulated: t.AllowSimulated, AllowDebugUnsafe: true}
	var err error
	if opts.AMDRoots, err = certFiles("amd", t.AMDRoots); err != nil {
		return nil, err
	}
	if opts.IntelRoots, err = certFiles("intel", t.IntelRoots); err != nil {
		return nil, err
	}
	sim, err := certFiles("simulated", t.SimulatedRoots)
	if err != nil {
		return nil, err
	}
	opts.SimulatedRoots = sim
	if t.SimulatedSeed != nil {
		roots, err := SimulatedRoots(t.SimulatedSeed)
		if err != nil {
			return nil, fmt.Errorf("simulated_seed: %w", err)
		}
		opts.SimulatedRoots = append(opts.SimulatedRoots, roots...)
	}
	return NewVerifier(opts)
}

func certFiles(what string, files []policy.PEMFile) ([]*x509.Certificate, error) {
	if files == nil {
		return nil, nil
	}
	var out []*x509.Certificate
	for _, f := range files {
		certs, err := ParseCertificates(f.Data)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", what, f.Name, err)
		}
		out = append(out, certs...)
	}
	return out, nil
}

// Facts implements policy.Hardware: the fields of SEV-SNP or TDX evidence
// the policy rules check. It parses with the same strict rules as Verify
// and verifies nothing.
func (PolicyHardware) Facts(hw *attest.HardwareEvidence) (*policy.HardwareFacts, error) {
	if hw == nil {
		return nil, fmt.Errorf("%w: no hardware evidence", ErrMalformed)
	}
	f := &policy.HardwareFacts{Type: hw.Type, Simulated: hw.Type == TypeSimulatedSEVSNP || hw.Type == TypeSimulatedTDX}
	switch hw.Type {
	case TypeSEVSNP, TypeSimulatedSEVSNP:
		e, err := parseSNP(hw)
		if err != nil {
			return nil, err
		}
		r := e.report
		f.Measurement = bytes.Clone(r.GetMeasurement())
		f.Debug = e.policy.Debug
		s := &policy.SNPFacts{
			Policy:         r.GetPolicy(),
			SMT:            e.policy.SMT,
			MigrateMA:      e.policy.MigrateMA,
			ABIMajor:       e.policy.ABIMajor,
			ABIMinor:       e.policy.ABIMinor,
			SingleSocket:   e.policy.SingleSocket,
			ReportedTCBRaw: r.GetReportedTcb(),
			GuestSVN:       r.GetGuestSvn(),
			VMPL:           r.GetVmpl(),
			HostData:       bytes.Clone(r.GetHostData()),
			IDKeyDigest:    bytes.Clone(r.GetIdKeyDigest()),
			Product:        e.productLine(),
			Signer:         e.signer.String(),
		}
		if s.Product == "Milan" || s.Product == "Genoa" {
			// The layout of the TCB version before Turin.
			p := kds.DecomposeTCBVersion(kds.TCBVersion(s.ReportedTCBRaw))
			s.ReportedTCB = policy.TCBParts{Bootloader: p.BlSpl, TEE: p.TeeSpl, SNP: p.SnpSpl, Microcode: p.UcodeSpl}
			s.TCBKnown = true
		}
		f.SNP = s
	case TypeTDX, TypeSimulatedTDX:
		q, err := parseTDX(hw)
		if err != nil {
			return nil, err
		}
		b := q.GetTdQuoteBody()
		attrs := binary.LittleEndian.Uint64(b.GetTdAttributes())
		t := &policy.TDXFacts{
			MRTD:          bytes.Clone(b.GetMrTd()),
			MRConfigID:    bytes.Clone(b.GetMrConfigId()),
			MROwner:       bytes.Clone(b.GetMrOwner()),
			MROwnerConfig: bytes.Clone(b.GetMrOwnerConfig()),
			MRSeam:        bytes.Clone(b.GetMrSeam()),
			TDAttributes:  attrs,
			XFAM:          binary.LittleEndian.Uint64(b.GetXfam()),
			TEETCBSVN:     bytes.Clone(b.GetTeeTcbSvn()),
		}
		for i, m := range b.GetRtmrs() {
			if i < len(t.RTMRs) {
				t.RTMRs[i] = bytes.Clone(m)
			}
		}
		f.Measurement = t.MRTD
		f.Debug = attrs&tdAttributeDebug != 0
		f.TDX = t
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnknownType, hw.Type)
	}
	return f, nil
}
