package evidence

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/tee"
)

// Options configure a Verifier. The zero value verifies real SEV-SNP and
// TDX evidence against the AMD and Intel roots built into hvmon, refuses
// debug guests and simulated evidence, and never uses the network.
// TrustOptions makes them from a configuration's tee.Trust.
type Options struct {
	// AMDRoots are the pinned AMD roots: for each product line the ARK and
	// the ASK (for VCEK-signed reports) and/or ASVK (for VLEK-signed ones)
	// it signed, as in AMD's certificate chain files. Nil means the roots
	// of every product line embedded in this build (Milan, Genoa, Turin).
	AMDRoots []*x509.Certificate
	// IntelRoots are the pinned roots of TDX PCK chains. Nil means Intel's
	// SGX Root CA, pinned in this build.
	IntelRoots []*x509.Certificate

	// AllowSimulated accepts evidence of the simulated types, verified
	// against SimulatedRoots and nothing else. Without it, simulated
	// evidence always fails with ErrSimulatedNotTrusted. Real types never
	// verify against SimulatedRoots.
	AllowSimulated bool
	// SimulatedRoots are the roots of simulated chains (package
	// evidence/sim): AMD-style ARK/ASK certificates for simulated-sev-snp,
	// an Intel-style root for simulated-tdx. Required with AllowSimulated.
	SimulatedRoots []*x509.Certificate

	// AllowDebugUnsafe accepts evidence from debug guests, whose memory
	// the host can read and write. For development only.
	AllowDebugUnsafe bool

	// TDXCollateral, when set, is checked with every TDX quote, real or
	// simulated (see TDXCollateral).
	TDXCollateral *TDXCollateral

	// Logger receives debug logs; nil discards them.
	Logger hclog.Logger
}

// Verifier checks hardware evidence offline. It implements
// attest.EvidenceVerifier. It is immutable and safe for concurrent use.
type Verifier struct {
	opts     Options
	amd      amdRoots
	intel    []*x509.Certificate // nil: the pinned Intel root
	simAMD   amdRoots
	simIntel []*x509.Certificate
	log      hclog.Logger
}

var _ attest.EvidenceVerifier = (*Verifier)(nil)

// NewVerifier checks opts and returns a Verifier. AMD roots must form
// chain tops (each ASK or ASVK signed by an ARK of its product line).
func NewVerifier(opts Options) (*Verifier, error) {
	v := &Verifier{opts: opts, log: opts.Logger}
	if v.log == nil {
		v.log = hclog.NewNullLogger()
	}
	amd := opts.AMDRoots
	if amd == nil {
		var err error
		if amd, err = embeddedAMDRoots(); err != nil {
			return nil, err
		}
	}
	var err error
	if v.amd, err = groupAMDRoots(amd, true); err != nil {
		return nil, err
	}
	if opts.IntelRoots != nil {
		v.intel = dedupe(opts.IntelRoots)
		if len(v.intel) == 0 {
			return nil, errors.New("IntelRoots: empty (leave it nil for the pinned Intel root)")
		}
	}
	if opts.TDXCollateral != nil {
		if err := opts.TDXCollateral.check(); err != nil {
			return nil, err
		}
	}
	if opts.AllowSimulated {
		if len(opts.SimulatedRoots) == 0 {
			return nil, errors.New("AllowSimulated needs SimulatedRoots")
		}
		v.simIntel = dedupe(opts.SimulatedRoots)
		if v.simAMD, err = groupAMDRoots(v.simIntel, false); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// TrustOptions returns the options of a verifier that trusts what t says:
// it checks t's rules (tee.Trust.Check), parses its certificate files
// (ParseCertificates), and derives the simulated roots from its seed
// (SimulatedRoots). It is the one way from configuration to a Verifier: the
// verify commands' flags, the daemon's evidence block and policies
// (PolicyHardware) all go through it.
func TrustOptions(t tee.Trust) (Options, error) {
	if err := t.Check(); err != nil {
		return Options{}, err
	}
	opts := Options{AllowSimulated: t.AllowSimulated, AllowDebugUnsafe: t.AllowDebugUnsafe}
	var err error
	if opts.AMDRoots, err = certFiles("AMD roots", t.AMDRoots); err != nil {
		return Options{}, err
	}
	if opts.IntelRoots, err = certFiles("Intel roots", t.IntelRoots); err != nil {
		return Options{}, err
	}
	if opts.SimulatedRoots, err = certFiles("simulated roots", t.SimulatedRoots); err != nil {
		return Options{}, err
	}
	if t.SimulatedSeed != nil {
		roots, err := SimulatedRoots(t.SimulatedSeed)
		if err != nil {
			return Options{}, fmt.Errorf("simulated seed: %w", err)
		}
		opts.SimulatedRoots = append(opts.SimulatedRoots, roots...)
	}
	return opts, nil
}

// certFiles parses certificate files; nil stays nil.
func certFiles(what string, files []tee.File) ([]*x509.Certificate, error) {
	if files == nil {
		return nil, nil
	}
	out := []*x509.Certificate{}
	for _, f := range files {
		certs, err := ParseCertificates(f.Data)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", what, f.Name, err)
		}
		out = append(out, certs...)
	}
	return out, nil
}

// Verify checks hw at now (zero means time.Now()): its signature and
// certificate chain to a pinned root, that it carries reportData, and the
// platform rules (no debug guest unless allowed; the platform's own
// consistency checks). Errors match ErrMalformed, ErrUntrusted,
// ErrReportData or ErrPolicy. It returns what the evidence says once the
// signature and chain verified: with a nil error when every check passed,
// and with an ErrReportData or ErrPolicy error when the genuine evidence
// broke a rule.
func (v *Verifier) Verify(hw *attest.HardwareEvidence, reportData [64]byte, now time.Time) (*Summary, error) {
	return v.verify(hw, &reportData, now)
}

// VerifyEvidence implements attest.EvidenceVerifier.
func (v *Verifier) VerifyEvidence(hw *attest.HardwareEvidence, reportData [64]byte, now time.Time) error {
	_, err := v.verify(hw, &reportData, now)
	return err
}

// VerifyWithoutReportDataUnsafe is Verify without the REPORT_DATA check,
// for looking at recorded evidence whose REPORT_DATA is not known. It
// proves the evidence genuine, not that it answers anything: never use it
// to bind evidence to a report.
func (v *Verifier) VerifyWithoutReportDataUnsafe(hw *attest.HardwareEvidence, now time.Time) (*Summary, error) {
	return v.verify(hw, nil, now)
}

func (v *Verifier) verify(hw *attest.HardwareEvidence, rd *[64]byte, now time.Time) (*Summary, error) {
	if hw == nil {
		return nil, fmt.Errorf("%w: no hardware evidence", ErrMalformed)
	}
	if now.IsZero() {
		now = time.Now()
	}
	simulated := hw.Type.Simulated()
	if simulated && !v.opts.AllowSimulated {
		return nil, fmt.Errorf("%w: %s evidence, and this verifier does not accept simulated evidence", ErrSimulatedNotTrusted, hw.Type)
	}
	e, err := parse(hw)
	if err != nil {
		return nil, err
	}
	root, err := e.verify(v, simulated, rd, now)
	if !genuine(err) {
		return nil, err
	}
	sum := e.summary()
	sum.Type, sum.Root = hw.Type, root
	if err != nil {
		v.log.Debug("genuine hardware evidence refused", "type", hw.Type, "root", root, "error", err)
		return sum, err
	}
	v.log.Debug("hardware evidence verified", "type", hw.Type, "root", root, "report_data_checked", rd != nil)
	return sum, nil
}

// genuine reports whether err leaves the evidence's origin verified: no
// error, or one of the rules checked after the chain and signature.
func genuine(err error) bool {
	return err == nil || errors.Is(err, ErrReportData) || errors.Is(err, ErrPolicy)
}

// Summary is what hardware evidence says, decoded. From Verify it is
// verified; from Inspect it is not.
type Summary struct {
	Type attest.Platform `json:"type"`
	// Signer is the key that signed: VCEK or VLEK for SEV-SNP, PCK (via
	// the quoting enclave's attestation key) for TDX.
	Signer string `json:"signer"`
	// Product is the AMD product line (SEV-SNP) or the platform's FMSPC
	// (TDX), when the evidence says.
	Product string `json:"product,omitempty"`
	// Root is the trust anchor the chain verified to; empty from Inspect.
	Root string `json:"root,omitempty"`
	// Measurement is SEV-SNP MEASUREMENT or TDX MR_TD.
	Measurement attest.HexBytes `json:"measurement"`
	ReportData  attest.HexBytes `json:"report_data"`
	Debug       bool            `json:"debug"`
	// TCB is SEV-SNP REPORTED_TCB (hex, with its components where the
	// layout is known) or TDX TEE_TCB_SVN (hex).
	TCB string `json:"tcb"`

	// SEV-SNP only.
	Policy   string          `json:"policy,omitempty"` // guest policy, hex
	HostData attest.HexBytes `json:"host_data,omitempty"`
	VMPL     *uint32         `json:"vmpl,omitempty"`

	// TDX only.
	Attributes string            `json:"td_attributes,omitempty"` // TD_ATTRIBUTES, hex
	MRConfigID attest.HexBytes   `json:"mr_config_id,omitempty"`
	RTMRs      []attest.HexBytes `json:"rtmrs,omitempty"`
}

// Inspect decodes hardware evidence with the same strict parsing as Verify
// but checks no signature, chain or rule. Use it to look at evidence,
// never to decide anything about it.
func Inspect(hw *attest.HardwareEvidence) (*Summary, error) {
	e, err := parse(hw)
	if err != nil {
		return nil, err
	}
	sum := e.summary()
	sum.Type = hw.Type
	return sum, nil
}
