package sim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	sevtest "github.com/google/go-sev-guest/testing"
)

// The simulated AMD platform: a Milan B1 part with a plausible TCB and
// firmware version. Verification code derives the product line from the
// report's CPUID fields (report version 3) and the VCEK certificate, so
// both must say the same.
const (
	snpProductName = "Milan-B1"
	snpProductLine = "Milan"
	snpFamily      = 0x19
	snpModel       = 0x01
	snpStepping    = 0x01
	snpFwMajor     = 1
	snpFwMinor     = 55
	snpFwBuild     = 21
)

// snpTCB is the simulated platform's TCB: the reported, current, committed
// and launch TCB in every report, and the TCB in the VCEK certificate.
var snpTCB = kds.TCBParts{BlSpl: 3, TeeSpl: 0, SnpSpl: 8, UcodeSpl: 115}

// SNP is a simulated AMD secure processor: it signs SEV-SNP attestation
// reports with a VCEK certified by a generated ASK and ARK. It is safe for
// concurrent use.
type SNP struct {
	vcekKey     *ecdsa.PrivateKey
	ark, ask    *x509.Certificate
	asvk        *x509.Certificate
	vcek        *x509.Certificate
	chipID      []byte
	measurement []byte
	debug       bool
	reportIDKey []byte
	hostData    []byte
}

// NewSNP generates (or, with Options.Seed, derives) a simulated AMD chain:
// ARK and ASK (RSA, RSA-PSS signatures, AMD's subject names with the
// simulated mark), an ASVK, and a VCEK (ECDSA P-384) carrying the simulated
// TCB and chip id.
func NewSNP(opts Options) (*SNP, error) {
	meas, err := opts.measurement()
	if err != nil {
		return nil, err
	}
	hostData, err := launchValue("host data", opts.HostData, HostDataSize)
	if err != nil {
		return nil, err
	}
	ks := keySource{seed: opts.Seed}
	ark, err := ks.rsa("snp ark")
	if err != nil {
		return nil, err
	}
	ask, err := ks.rsa("snp ask")
	if err != nil {
		return nil, err
	}
	vcek, err := ks.ecdsa("snp vcek", elliptic.P384())
	if err != nil {
		return nil, err
	}
	chipID := ks.bytes("snp chip id", abi.ChipIDSize)
	nb := opts.notBefore()

	tcb, err := kds.ComposeTCBParts(snpTCB)
	if err != nil {
		return nil, err
	}
	b := &sevtest.AmdSignerBuilder{
		// The ASVK certifies VLEKs, which this simulation does not issue;
		// the builder needs a key for it all the same.
		Keys:             &sevtest.AmdKeys{Ark: ark, Ask: ask, Asvk: ask, Vcek: vcek},
		ProductName:      snpProductName,
		ArkCreationTime:  nb,
		AskCreationTime:  nb,
		AsvkCreationTime: nb,
		VcekCreationTime: nb,
		ArkCustom:        sevOverride("ARK-" + snpProductLine),
		AskCustom:        sevOverride("SEV-" + snpProductLine),
		AsvkCustom:       sevOverride("SEV-VLEK-" + snpProductLine),
		VcekCustom: sevtest.CertOverride{
			SerialNumber: ks.serial("snp vcek"),
			Extensions:   sevtest.CustomExtensions(snpTCB, chipID, "", snpProductName),
		},
		TCB: tcb,
	}
	signer, err := b.TestOnlyCertChain()
	if err != nil {
		return nil, fmt.Errorf("sim: building the simulated AMD chain: %v", err)
	}
	return &SNP{
		vcekKey: vcek, ark: signer.Ark, ask: signer.Ask, asvk: signer.Asvk, vcek: signer.Vcek,
		chipID: chipID, measurement: meas, debug: opts.Debug,
		reportIDKey: ks.bytes("snp report id", 32), hostData: hostData,
	}, nil
}

// sevOverride gives an ARK, ASK or ASVK its AMD subject name with the
// simulated mark as the serialNumber attribute. The verifier checks the
// other attributes and the common name; the mark is for people. (Setting
// a serial number through the override would replace the mark.)
func sevOverride(cn string) sevtest.CertOverride {
	name := pkix.Name{
		Country:            []string{"US"},
		Province:           []string{"CA"},
		Locality:           []string{"Santa Clara"},
		Organization:       []string{"Advanced Micro Devices"},
		OrganizationalUnit: []string{"Engineering"},
		CommonName:         cn,
		SerialNumber:       simulatedMark,
	}
	return sevtest.CertOverride{Subject: &name}
}

// Report returns a signed 1184-byte ATTESTATION_REPORT (version 3, VMPL 0,
// signed by the VCEK) carrying reportData.
func (s *SNP) Report(reportData [64]byte) ([]byte, error) {
	tcb, err := kds.ComposeTCBParts(snpTCB)
	if err != nil {
		return nil, err
	}
	// REPORT_ID is a per-guest identifier; here it is stable per chain.
	r := &spb.Report{
		Version:          abi.ReportVersion3,
		GuestSvn:         1,
		Policy:           abi.SnpPolicyToBytes(abi.SnpPolicy{SMT: true, Debug: s.debug}),
		FamilyId:         make([]byte, abi.FamilyIDSize),
		ImageId:          make([]byte, abi.ImageIDSize),
		Vmpl:             0,
		SignatureAlgo:    abi.SignEcdsaP384Sha384,
		CurrentTcb:       uint64(tcb),
		PlatformInfo:     1, // SMT enabled
		SignerInfo:       abi.ComposeSignerInfo(abi.SignerInfo{SigningKey: abi.VcekReportSigner}),
		ReportData:       reportData[:],
		Measurement:      s.measurement,
		HostData:         s.hostData,
		IdKeyDigest:      make([]byte, abi.IDKeyDigestSize),
		AuthorKeyDigest:  make([]byte, abi.AuthorKeyDigestSize),
		ReportId:         s.reportIDKey,
		ReportIdMa:       make([]byte, abi.ReportIDMASize),
		ReportedTcb:      uint64(tcb),
		Cpuid1EaxFms:     abi.FmsToCpuid1Eax(snpFamily, snpModel, snpStepping),
		ChipId:           s.chipID,
		CommittedTcb:     uint64(tcb),
		CurrentBuild:     snpFwBuild,
		CurrentMinor:     snpFwMinor,
		CurrentMajor:     snpFwMajor,
		CommittedBuild:   snpFwBuild,
		CommittedMinor:   snpFwMinor,
		CommittedMajor:   snpFwMajor,
		LaunchTcb:        uint64(tcb),
		Signature:        make([]byte, abi.SignatureSize),
		LaunchMitVector:  0,
		CurrentMitVector: 0,
	}
	raw, err := abi.ReportToAbiBytes(r)
	if err != nil {
		return nil, fmt.Errorf("sim: encoding the report: %v", err)
	}
	digest := sha512.Sum384(abi.SignedComponent(raw))
	rr, ss, err := ecdsa.Sign(rand.Reader, s.vcekKey, digest[:])
	if err != nil {
		return nil, err
	}
	if err := abi.SetSignature(rr, ss, raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// VCEK returns the DER certificate of the key that signs the reports.
func (s *SNP) VCEK() []byte { return s.vcek.Raw }

// Chain returns the DER certificates a platform hands out with a report:
// VCEK, ASK, ARK.
func (s *SNP) Chain() [][]byte { return [][]byte{s.vcek.Raw, s.ask.Raw, s.ark.Raw} }

// Roots returns the simulated AMD roots to pin: the ASK, the ASVK and the
// ARK that signed them.
func (s *SNP) Roots() []*x509.Certificate { return []*x509.Certificate{s.ask, s.asvk, s.ark} }

// RootsPEM returns Roots as PEM, in the order of AMD's certificate chain
// files (intermediates first, then the ARK).
func (s *SNP) RootsPEM() []byte { return PEM(s.Roots()...) }

// NotAfter is the end of the VCEK certificate's validity, the first to end.
func (s *SNP) NotAfter() time.Time { return s.vcek.NotAfter }
