package evidence

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// Bounds of certificate inputs.
const (
	// MaxCertificatesSize bounds the input of ParseCertificates.
	MaxCertificatesSize = 256 << 10
	// MaxCertificates bounds the certificates in one input.
	MaxCertificates = 16
)

// ParseCertificates parses certificates from one DER certificate or from a
// sequence of PEM "CERTIFICATE" blocks, as AMD's and Intel's certificate
// files and `openssl x509` write them. Anything else is an error: other
// PEM block types, text outside the blocks (whitespace aside), bytes after
// a DER certificate, an empty input, more than MaxCertificates
// certificates.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	if len(data) > MaxCertificatesSize {
		return nil, fmt.Errorf("certificates: %d bytes, more than %d", len(data), MaxCertificatesSize)
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, errors.New("certificates: empty input")
	}
	if !bytes.HasPrefix(trimmed, []byte("-----BEGIN ")) {
		c, err := x509.ParseCertificate(data)
		if err != nil {
			return nil, fmt.Errorf("certificates: neither PEM nor one DER certificate: %v", err)
		}
		return []*x509.Certificate{c}, nil
	}
	var out []*x509.Certificate
	rest := trimmed
	for len(rest) > 0 {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, fmt.Errorf("certificates: text after PEM block %d is not a PEM block", len(out))
		}
		if b.Type != "CERTIFICATE" || len(b.Headers) > 0 {
			return nil, fmt.Errorf("certificates: PEM block %d is %q, want CERTIFICATE without headers", len(out), b.Type)
		}
		if len(out) == MaxCertificates {
			return nil, fmt.Errorf("certificates: more than %d", MaxCertificates)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificates: PEM block %d: %v", len(out), err)
		}
		out = append(out, c)
		rest = bytes.TrimLeft(rest, " \t\r\n")
	}
	return out, nil
}

// The GUIDs of AMD's certificate table (SEV-SNP firmware ABI, extended
// guest request). The table stores each GUID's 16 bytes in the order the
// string form lists them, as the hosts that fill the table write them.
var (
	guidVCEK = guid("63da758d-e664-4564-adc5-f4b93be8accd")
	guidVLEK = guid("a8074bc2-a25a-483e-aae6-39c045a0b8a1")
	guidASK  = guid("4ab7b379-bbac-4fe4-a02f-05aef327c782")
	guidARK  = guid("c0b406a4-a803-4952-9743-3fb6014cd0ae")
)

func guid(s string) [16]byte {
	raw, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(raw) != 16 {
		panic("evidence: bad GUID " + s)
	}
	return [16]byte(raw)
}

// Bounds of an AMD certificate table.
const (
	certTableEntrySize = 24 // GUID, offset, length
	maxCertTableSize   = 64 << 10
	maxCertTableRows   = 32
)

// snpCertTable holds the certificates of an AMD certificate table, by role.
// Entries of other GUIDs (platform information, vendor blobs) are skipped.
type snpCertTable struct {
	vcek, vlek, ask, ark []byte
}

// parseCertTable parses the certificate table that follows an SEV-SNP
// report in an extended report: entries of {GUID, offset, length} ended by
// an all-zero entry, then the blobs they point into. Offsets are relative
// to the table's start and must point past the entries; every range must
// lie inside the table. A role given twice is an error.
func parseCertTable(b []byte) (*snpCertTable, error) {
	bad := func(format string, args ...any) (*snpCertTable, error) {
		return nil, fmt.Errorf("%w: SEV-SNP certificate table: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	t := &snpCertTable{}
	if len(b) == 0 {
		return t, nil
	}
	if len(b) > maxCertTableSize {
		return bad("%d bytes, more than %d", len(b), maxCertTableSize)
	}
	type row struct {
		g           [16]byte
		off, length uint32
	}
	var rows []row
	for i := 0; ; i++ {
		if i == maxCertTableRows {
			return bad("more than %d entries", maxCertTableRows)
		}
		at := i * certTableEntrySize
		if at+certTableEntrySize > len(b) {
			return bad("entry %d runs past the end (no terminating zero entry)", i)
		}
		e := b[at : at+certTableEntrySize]
		var r row
		copy(r.g[:], e[:16])
		r.off = binary.LittleEndian.Uint32(e[16:20])
		r.length = binary.LittleEndian.Uint32(e[20:24])
		if r.g == ([16]byte{}) && r.off == 0 && r.length == 0 {
			break
		}
		rows = append(rows, r)
	}
	headerEnd := uint64(len(rows)+1) * certTableEntrySize
	for i, r := range rows {
		end := uint64(r.off) + uint64(r.length)
		if uint64(r.off) < headerEnd || end > uint64(len(b)) {
			return bad("entry %d: bytes %d..%d outside the data (%d..%d)", i, r.off, end, headerEnd, len(b))
		}
		blob := b[r.off:end]
		var slot *[]byte
		switch r.g {
		case guidVCEK:
			slot = &t.vcek
		case guidVLEK:
			slot = &t.vlek
		case guidASK:
			slot = &t.ask
		case guidARK:
			slot = &t.ark
		default:
			continue
		}
		if *slot != nil {
			return bad("entry %d repeats a certificate role", i)
		}
		if r.length == 0 {
			return bad("entry %d: empty certificate", i)
		}
		*slot = bytes.Clone(blob)
	}
	return t, nil
}
