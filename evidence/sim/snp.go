package sim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
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
	c, err := newSNPChain(ark, ask, vcek, chipID, ks.serial("snp vcek"), opts.notBefore())
	if err != nil {
		return nil, fmt.Errorf("sim: building the simulated AMD chain: %v", err)
	}
	return &SNP{
		vcekKey: vcek, ark: c.ark, ask: c.ask, asvk: c.asvk, vcek: c.vcek,
		chipID: chipID, measurement: meas, debug: opts.Debug,
		reportIDKey: ks.bytes("snp report id", 32), hostData: hostData,
	}, nil
}

// snpChain is a simulated AMD certificate chain.
type snpChain struct {
	ark, ask, asvk, vcek *x509.Certificate
}

// AMD's chains (and go-sev-guest's checks of them): CA certificates valid
// for 25 years, a VCEK for 7, RSA-PSS signatures with SHA-384 throughout.
const (
	snpCAYears    = 25
	snpVCEKYears  = 7
	snpSignatures = x509.SHA384WithRSAPSS
)

// snpCASerial is the serial number of the simulated ARK, ASK and ASVK.
var snpCASerial = big.NewInt(0xc0dec0de)

// newSNPChain certifies a simulated AMD chain valid from nb: the ARK
// (self-signed, arkKey), the ASK and the ASVK it signed (both with
// askKey's public key: the simulation issues no VLEK), and the VCEK
// (vcekKey) the ASK signed, carrying the simulated TCB and chipID. The
// names, extensions and validity periods are those of AMD's chains; the CA
// names carry the simulated mark.
func newSNPChain(arkKey, askKey *rsa.PrivateKey, vcekKey *ecdsa.PrivateKey, chipID []byte, vcekSerial *big.Int, nb time.Time) (*snpChain, error) {
	ca := func(cn string, signer abi.ReportSigner, usage x509.KeyUsage) *x509.Certificate {
		return &x509.Certificate{
			SerialNumber:          snpCASerial,
			Subject:               amdName(cn, simulatedMark),
			NotBefore:             nb,
			NotAfter:              nb.Add(snpCAYears * 365 * 24 * time.Hour),
			SignatureAlgorithm:    snpSignatures,
			CRLDistributionPoints: []string{kds.CrlLinkByKey(snpProductLine, signer)},
			KeyUsage:              usage,
			IsCA:                  true,
			BasicConstraintsValid: true,
		}
	}
	var c snpChain
	var err error
	arkTmpl := ca("ARK-"+snpProductLine, abi.VcekReportSigner, x509.KeyUsageCertSign|x509.KeyUsageCRLSign)
	if c.ark, err = signCert(arkTmpl, arkTmpl, &arkKey.PublicKey, arkKey); err != nil {
		return nil, err
	}
	if c.ask, err = signCert(ca("SEV-"+snpProductLine, abi.VcekReportSigner, x509.KeyUsageCertSign), c.ark, &askKey.PublicKey, arkKey); err != nil {
		return nil, err
	}
	if c.asvk, err = signCert(ca("SEV-VLEK-"+snpProductLine, abi.VlekReportSigner, x509.KeyUsageCertSign), c.ark, &askKey.PublicKey, arkKey); err != nil {
		return nil, err
	}
	exts, err := vcekExtensions(chipID)
	if err != nil {
		return nil, err
	}
	vcekTmpl := &x509.Certificate{
		SerialNumber: vcekSerial,
		// The serialNumber attribute of a VCEK's name is its serial
		// number in hex.
		Subject: amdName("SEV-VCEK", fmt.Sprintf("%x", vcekSerial)),
		// No start of validity (the zero time): the chain is valid
		// from the ASK's start.
		NotAfter:           nb.Add(snpVCEKYears * 365 * 24 * time.Hour),
		SignatureAlgorithm: snpSignatures,
		ExtraExtensions:    exts,
	}
	if c.vcek, err = signCert(vcekTmpl, c.ask, &vcekKey.PublicKey, askKey); err != nil {
		return nil, err
	}
	return &c, nil
}

// amdName is an AMD certificate name with the given common name and
// serialNumber attribute. The verifier checks the other attributes and the
// common name.
func amdName(cn, serial string) pkix.Name {
	return pkix.Name{
		Country:            []string{"US"},
		Province:           []string{"CA"},
		Locality:           []string{"Santa Clara"},
		Organization:       []string{"Advanced Micro Devices"},
		OrganizationalUnit: []string{"Engineering"},
		CommonName:         cn,
		SerialNumber:       serial,
	}
}

// vcekExtensions are the AMD extensions of a VCEK certificate (AMD's key
// distribution service specification): structure version 0, the product
// name, the TCB's security patch levels, and the chip id.
func vcekExtensions(chipID []byte) ([]pkix.Extension, error) {
	ext := func(id asn1.ObjectIdentifier, v any, params string) (pkix.Extension, error) {
		b, err := asn1.MarshalWithParams(v, params)
		return pkix.Extension{Id: id, Value: b}, err
	}
	t := snpTCB
	specs := []struct {
		id     asn1.ObjectIdentifier
		v      any
		params string
	}{
		{kds.OidStructVersion, 0, ""},
		{kds.OidProductName1, snpProductName, "ia5"},
		{kds.OidBlSpl, int(t.BlSpl), ""},
		{kds.OidTeeSpl, int(t.TeeSpl), ""},
		{kds.OidSnpSpl, int(t.SnpSpl), ""},
		{kds.OidSpl4, int(t.Spl4), ""},
		{kds.OidSpl5, int(t.Spl5), ""},
		{kds.OidSpl6, int(t.Spl6), ""},
		{kds.OidSpl7, int(t.Spl7), ""},
		{kds.OidUcodeSpl, int(t.UcodeSpl), ""},
		{kds.OidHwid, chipID, ""},
	}
	out := make([]pkix.Extension, len(specs))
	for i, s := range specs {
		var err error
		if out[i], err = ext(s.id, s.v, s.params); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// signCert signs tmpl for pub as a child of parent with the parent's key.
func signCert(tmpl, parent *x509.Certificate, pub any, parentKey any) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		return nil, fmt.Errorf("sim: creating %q: %v", tmpl.Subject.CommonName, err)
	}
	return x509.ParseCertificate(der)
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
