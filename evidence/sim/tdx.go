package sim

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"time"

	"github.com/google/go-tdx-guest/abi"
	"github.com/google/go-tdx-guest/pcs"
	tpb "github.com/google/go-tdx-guest/proto/tdx"
)

// The names verification code requires of a PCK chain (the common names),
// and the simulated organization that sets these apart from Intel's.
const (
	tdxRootCN         = "Intel SGX Root CA"
	tdxIntermediateCN = "Intel SGX PCK Platform CA"
	tdxPCKCN          = "Intel SGX PCK Certificate"
	tdxTCBSigningCN   = "Intel SGX TCB Signing"
	tdxOrganization   = simulatedMark + " (not Intel)"
)

// The simulated platform's fixed values, shaped like a Sapphire Rapids
// system's.
var (
	tdxQEVendorID = []byte{0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07}
	tdxFMSPC      = []byte{0x00, 0x80, 0x6f, 0x05, 0x00, 0x00}
	tdxPCEID      = []byte{0x00, 0x00}
	tdxTeeTcbSvn  = []byte{0x03, 0x00, 0x04, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	tdxCPUSvn     = []byte{0x04, 0x04, 0x0d, 0x0f, 0x03, 0xff, 0x00, 0x03, 0, 0, 0, 0, 0, 0, 0, 0}
	tdxXFAM       = []byte{0xe7, 0x1a, 0x06, 0x00, 0, 0, 0, 0}
	// TD_ATTRIBUTES: SEPT_VE_DISABLE (bit 28); bit 0 is DEBUG.
	tdxAttributes = uint64(1) << 28
	tdxPCESvn     = uint16(11)
	// The quoting enclave's identity.
	tdxQEAttributes = []byte{0x15, 0, 0, 0, 0, 0, 0, 0, 0xe7, 0, 0, 0, 0, 0, 0, 0}
	tdxQEMrSigner   = bytes.Repeat([]byte{0x52}, 32)
	tdxQESvn        = uint16(4)
)

// tdxAttributeDebug is TD_ATTRIBUTES.DEBUG.
const tdxAttributeDebug = 1

// TDX is a simulated TDX quoting enclave: it produces quote v4 structures
// signed by an attestation key, whose QE report is signed by a PCK
// certified through a generated intermediate and root. It is safe for
// concurrent use.
type TDX struct {
	root, intermediate, pck *x509.Certificate
	pckKey, attestKey       *ecdsa.PrivateKey
	tcbSigner               *x509.Certificate // signs collateral
	tcbKey                  *ecdsa.PrivateKey
	chainPEM                []byte
	measurement             []byte
	mrConfigID              []byte
	attributes              uint64
	seamSeed                []byte
}

// NewTDX generates (or, with Options.Seed, derives) a simulated Intel PCK
// chain (root CA, platform CA, PCK certificate with the SGX extensions;
// ECDSA P-256 throughout) and an attestation key.
func NewTDX(opts Options) (*TDX, error) {
	meas, err := opts.measurement()
	if err != nil {
		return nil, err
	}
	mrConfigID, err := launchValue("MRCONFIGID", opts.MRConfigID, MRConfigIDSize)
	if err != nil {
		return nil, err
	}
	ks := keySource{seed: opts.Seed}
	rootKey, err := ks.ecdsa("tdx root", elliptic.P256())
	if err != nil {
		return nil, err
	}
	intKey, err := ks.ecdsa("tdx platform ca", elliptic.P256())
	if err != nil {
		return nil, err
	}
	pckKey, err := ks.ecdsa("tdx pck", elliptic.P256())
	if err != nil {
		return nil, err
	}
	ak, err := ks.ecdsa("tdx attestation key", elliptic.P256())
	if err != nil {
		return nil, err
	}
	tcbKey, err := ks.ecdsa("tdx tcb signing", elliptic.P256())
	if err != nil {
		return nil, err
	}
	nb := opts.notBefore()
	name := func(cn string) pkix.Name {
		return pkix.Name{CommonName: cn, Organization: []string{tdxOrganization}, Locality: []string{"Simulated"}, Country: []string{"US"}}
	}
	rootTmpl := &x509.Certificate{
		SerialNumber: ks.serial("tdx root"), Subject: name(tdxRootCN),
		NotBefore: nb, NotAfter: nb.AddDate(caYears, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true, IsCA: true, MaxPathLen: 1,
	}
	root, err := createCert(rootTmpl, rootTmpl, rootKey)
	if err != nil {
		return nil, err
	}
	intTmpl := &x509.Certificate{
		SerialNumber: ks.serial("tdx platform ca"), Subject: name(tdxIntermediateCN),
		NotBefore: nb, NotAfter: nb.AddDate(caYears, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true,
	}
	intermediate, err := createCert(intTmpl, root, intKey, rootKey)
	if err != nil {
		return nil, err
	}
	sgx, err := sgxExtension(ks.bytes("tdx ppid", 16))
	if err != nil {
		return nil, err
	}
	ski, err := keyID(&pckKey.PublicKey)
	if err != nil {
		return nil, err
	}
	// Verification expects exactly the six extensions of Intel's PCK
	// certificates: authority and subject key ids, CRL distribution
	// points, key usage, basic constraints and the SGX extension.
	pckTmpl := &x509.Certificate{
		SerialNumber: ks.serial("tdx pck"), Subject: name(tdxPCKCN),
		NotBefore: nb, NotAfter: nb.AddDate(leafYears, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
		BasicConstraintsValid: true,
		SubjectKeyId:          ski,
		CRLDistributionPoints: []string{"https://hvmon.invalid/simulated/pckcrl"},
		ExtraExtensions:       []pkix.Extension{sgx},
	}
	pck, err := createCert(pckTmpl, intermediate, pckKey, intKey)
	if err != nil {
		return nil, err
	}
	tcbTmpl := &x509.Certificate{
		SerialNumber: ks.serial("tdx tcb signing"), Subject: name(tdxTCBSigningCN),
		NotBefore: nb, NotAfter: nb.AddDate(leafYears, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
		BasicConstraintsValid: true,
	}
	tcbSigner, err := createCert(tcbTmpl, root, tcbKey, rootKey)
	if err != nil {
		return nil, err
	}
	attrs := tdxAttributes
	if opts.Debug {
		attrs |= tdxAttributeDebug
	}
	return &TDX{
		root: root, intermediate: intermediate, pck: pck, pckKey: pckKey, attestKey: ak,
		tcbSigner: tcbSigner, tcbKey: tcbKey,
		chainPEM:    PEM(pck, intermediate, root),
		measurement: meas, attributes: attrs, mrConfigID: mrConfigID,
		seamSeed: ks.bytes("tdx seam", 48),
	}, nil
}

// createCert signs tmpl as a child of parent with signer (the parent's
// key), or self-signs when no signer is given.
func createCert(tmpl, parent *x509.Certificate, key *ecdsa.PrivateKey, signer ...*ecdsa.PrivateKey) (*x509.Certificate, error) {
	s := key
	if len(signer) > 0 {
		s = signer[0]
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, s)
	if err != nil {
		return nil, fmt.Errorf("sim: creating %q: %v", tmpl.Subject.CommonName, err)
	}
	return x509.ParseCertificate(der)
}

// oidValue is one SEQUENCE { OID, value } inside the SGX extension.
type oidValue struct {
	ID    asn1.ObjectIdentifier
	Value any
}

// sgxExtension builds the PCK certificate's SGX extension: PPID, TCB (16
// CPU SVN components, PCESVN, CPUSVN), PCE-ID and FMSPC.
func sgxExtension(ppid []byte) (pkix.Extension, error) {
	var tcb []oidValue
	for i := range 16 {
		oid := append(append(asn1.ObjectIdentifier{}, pcs.OidTCB...), i+1)
		tcb = append(tcb, oidValue{oid, int(tdxCPUSvn[i])})
	}
	tcb = append(tcb, oidValue{pcs.OidPCESvn, int(tdxPCESvn)}, oidValue{pcs.OidCPUSvn, tdxCPUSvn})
	tcbDER, err := asn1.Marshal(tcb)
	if err != nil {
		return pkix.Extension{}, err
	}
	items := []any{
		pkix.Extension{Id: pcs.OidPPID, Value: ppid},
		struct {
			ID  asn1.ObjectIdentifier
			TCB asn1.RawValue
		}{pcs.OidTCB, asn1.RawValue{FullBytes: tcbDER}},
		pkix.Extension{Id: pcs.OidPCEID, Value: tdxPCEID},
		pkix.Extension{Id: pcs.OidFMSPC, Value: tdxFMSPC},
	}
	var seq []asn1.RawValue
	for _, it := range items {
		b, err := asn1.Marshal(it)
		if err != nil {
			return pkix.Extension{}, err
		}
		seq = append(seq, asn1.RawValue{FullBytes: b})
	}
	v, err := asn1.Marshal(seq)
	if err != nil {
		return pkix.Extension{}, err
	}
	return pkix.Extension{Id: pcs.OidSgxExtension, Value: v}, nil
}

// Quote returns a TDX quote v4 carrying reportData, signed by the
// attestation key, whose QE report binds that key and is signed by the
// PCK.
func (t *TDX) Quote(reportData [64]byte) ([]byte, error) {
	var rtmrs [][]byte
	for i := range 4 {
		rtmrs = append(rtmrs, bytes.Repeat([]byte{byte(i + 1)}, abi.RtmrSize))
	}
	attrs := make([]byte, abi.TdAttributesSize)
	binary.LittleEndian.PutUint64(attrs, t.attributes)
	le16 := func(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
	header := &tpb.Header{
		Version: abi.QuoteVersion, AttestationKeyType: abi.AttestationKeyType, TeeType: abi.TeeTDX,
		PceSvn: le16(tdxPCESvn), QeSvn: le16(tdxQESvn), QeVendorId: tdxQEVendorID,
		UserData: make([]byte, 20),
	}
	body := &tpb.TDQuoteBody{
		TeeTcbSvn:      tdxTeeTcbSvn,
		MrSeam:         t.seamSeed,
		MrSignerSeam:   make([]byte, 48),
		SeamAttributes: make([]byte, 8),
		TdAttributes:   attrs,
		Xfam:           tdxXFAM,
		MrTd:           t.measurement,
		MrConfigId:     t.mrConfigID,
		MrOwner:        make([]byte, abi.MrOwnerSize),
		MrOwnerConfig:  make([]byte, abi.MrOwnerConfigSize),
		Rtmrs:          rtmrs,
		ReportData:     reportData[:],
	}
	hb, err := abi.HeaderToAbiBytes(header)
	if err != nil {
		return nil, err
	}
	bb, err := abi.TdQuoteBodyToAbiBytes(body)
	if err != nil {
		return nil, err
	}
	sig, err := signRS(t.attestKey, append(hb, bb...))
	if err != nil {
		return nil, err
	}
	// The attestation key as in the quote: X ‖ Y, without the SEC 1
	// uncompressed-point prefix.
	pub, err := t.attestKey.PublicKey.Bytes()
	if err != nil {
		return nil, err
	}
	ak := pub[1:]

	authData := make([]byte, 32)
	for i := range authData {
		authData[i] = byte(i)
	}
	// The QE report's REPORT_DATA binds the attestation key: SHA-256 over
	// the key and the QE authentication data, zero-padded to 64 bytes.
	qeRD := sha256.Sum256(append(append([]byte{}, ak...), authData...))
	qeReport := &tpb.EnclaveReport{
		CpuSvn:     tdxCPUSvn,
		MiscSelect: 0,
		Reserved1:  make([]byte, 28),
		Attributes: tdxQEAttributes,
		MrEnclave:  bytes.Repeat([]byte{0x51}, 32),
		Reserved2:  make([]byte, 32),
		MrSigner:   tdxQEMrSigner,
		Reserved3:  make([]byte, 96),
		IsvProdId:  2,
		IsvSvn:     uint32(tdxQESvn),
		Reserved4:  make([]byte, 60),
		ReportData: append(qeRD[:], make([]byte, 32)...),
	}
	qeRaw, err := abi.EnclaveReportToAbiBytes(qeReport)
	if err != nil {
		return nil, err
	}
	qeSig, err := signRS(t.pckKey, qeRaw)
	if err != nil {
		return nil, err
	}
	chain := &tpb.PCKCertificateChainData{CertificateDataType: 5, Size: uint32(len(t.chainPEM)), PckCertChain: t.chainPEM}
	qeCert := &tpb.QEReportCertificationData{
		QeReport: qeReport, QeReportSignature: qeSig,
		QeAuthData:              &tpb.QeAuthData{ParsedDataSize: uint32(len(authData)), Data: authData},
		PckCertificateChainData: chain,
	}
	// Sizes of the nested structures: QE report, its signature, the
	// length-prefixed auth data, the typed and sized PCK chain.
	qeCertSize := len(qeRaw) + len(qeSig) + 2 + len(authData) + 6 + len(t.chainPEM)
	signed := &tpb.Ecdsa256BitQuoteV4AuthData{
		Signature: sig, EcdsaAttestationKey: ak,
		CertificationData: &tpb.CertificationData{CertificateDataType: 6, Size: uint32(qeCertSize), QeReportCertificationData: qeCert},
	}
	q := &tpb.QuoteV4{
		Header: header, TdQuoteBody: body,
		SignedDataSize: uint32(len(sig) + len(ak) + 6 + qeCertSize),
		SignedData:     signed,
	}
	return abi.QuoteToAbiBytes(q)
}

// signRS signs SHA-256(msg) and returns r ‖ s, 32 bytes each, big-endian:
// the signature encoding of quotes and QE reports.
func signRS(key *ecdsa.PrivateKey, msg []byte) ([]byte, error) {
	h := sha256.Sum256(msg)
	r, s, err := ecdsa.Sign(rand.Reader, key, h[:])
	if err != nil {
		return nil, err
	}
	return append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...), nil
}

// Root returns the simulated root CA certificate to pin.
func (t *TDX) Root() *x509.Certificate { return t.root }

// RootPEM returns Root as PEM.
func (t *TDX) RootPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: t.root.Raw})
}

// NotAfter is the end of the PCK certificate's validity, the first to end.
func (t *TDX) NotAfter() time.Time { return t.pck.NotAfter }
