package evidence

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/verify/trust"
)

// amdRoot is one pinned AMD chain top for a product line: an ARK and one
// intermediate it signed, the ASK (which certifies VCEKs) or the ASVK
// (which certifies VLEKs).
type amdRoot struct {
	ark, ask, asvk *x509.Certificate
}

// amdRoots maps an AMD product line ("Milan", "Genoa", "Turin") to its
// pinned chain tops.
type amdRoots map[string][]amdRoot

// trusted returns the roots that can certify signer's key (an ASK for a
// VCEK, an ASVK for a VLEK) in go-sev-guest's form; leaving out the others
// keeps the library's "last error" about the roots that mattered. It
// builds fresh values on every call: the library keeps state (a CRL, a
// mutex) in them.
func (r amdRoots) trusted(signer abi.ReportSigner) map[string][]*trust.AMDRootCerts {
	out := make(map[string][]*trust.AMDRootCerts, len(r))
	for line, rs := range r {
		for _, x := range rs {
			if (signer == abi.VcekReportSigner && x.ask == nil) || (signer == abi.VlekReportSigner && x.asvk == nil) {
				continue
			}
			a := trust.AMDRootCertsProduct(line)
			a.ProductCerts = &trust.ProductCerts{Ark: x.ark, Ask: x.ask, Asvk: x.asvk}
			out[line] = append(out[line], a)
		}
	}
	return out
}

// embeddedAMDRoots are the AMD certificate chains (VCEK and VLEK chains of
// every product line) that go-sev-guest embeds, as published by AMD's key
// distribution service.
func embeddedAMDRoots() ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for _, b := range [][]byte{
		trust.AskArkMilanVcekBytes, trust.AskArkMilanVlekBytes,
		trust.AskArkGenoaVcekBytes, trust.AskArkGenoaVlekBytes,
		trust.AskArkTurinVcekBytes, trust.AskArkTurinVlekBytes,
	} {
		certs, err := ParseCertificates(b)
		if err != nil {
			return nil, fmt.Errorf("embedded AMD roots: %v", err)
		}
		out = append(out, certs...)
	}
	return out, nil
}

// groupAMDRoots sorts AMD-style certificates into chain tops by product
// line: an ARK is self-signed with common name "ARK-<line>"; an ASK
// ("SEV-<line>") or ASVK ("SEV-VLEK-<line>") must be signed by an ARK of
// its line. Duplicates are dropped. With strict set, a certificate that
// fits nowhere is an error; otherwise it is skipped (simulated roots mix
// AMD- and Intel-style certificates).
func groupAMDRoots(certs []*x509.Certificate, strict bool) (amdRoots, error) {
	var arks, inter []*x509.Certificate
	for _, c := range dedupe(certs) {
		cn := c.Subject.CommonName
		switch {
		case strings.HasPrefix(cn, "ARK-") && c.CheckSignatureFrom(c) == nil:
			arks = append(arks, c)
		case strings.HasPrefix(cn, "SEV-"):
			inter = append(inter, c)
		case strict:
			return nil, fmt.Errorf("AMD roots: %q is neither an ARK, an ASK nor an ASVK", c.Subject)
		}
	}
	out := amdRoots{}
	used := map[*x509.Certificate]bool{}
	for _, ark := range arks {
		line := strings.TrimPrefix(ark.Subject.CommonName, "ARK-")
		n := 0
		for _, c := range inter {
			var r amdRoot
			switch c.Subject.CommonName {
			case "SEV-" + line:
				r = amdRoot{ark: ark, ask: c}
			case "SEV-VLEK-" + line:
				r = amdRoot{ark: ark, asvk: c}
			default:
				continue
			}
			if c.CheckSignatureFrom(ark) != nil {
				continue
			}
			out[line] = append(out[line], r)
			used[c] = true
			n++
		}
		if n == 0 && strict {
			return nil, fmt.Errorf("AMD roots: %s has no ASK or ASVK signed by it", ark.Subject.CommonName)
		}
	}
	for _, c := range inter {
		if !used[c] && strict {
			return nil, fmt.Errorf("AMD roots: %s is signed by none of the ARKs given", c.Subject.CommonName)
		}
	}
	return out, nil
}

func dedupe(certs []*x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range certs {
		if c == nil {
			continue
		}
		dup := false
		for _, o := range out {
			if bytes.Equal(o.Raw, c.Raw) {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, c)
		}
	}
	return out
}

// intelRootSHA256 pins Intel's SGX Root CA, the root of every TDX PCK
// chain: the SHA-256 of its DER certificate (subject "CN=Intel SGX Root CA,
// O=Intel Corporation, L=Santa Clara, ST=CA, C=US", valid 2018-05-21 to
// 2049-12-31). go-tdx-guest embeds the same certificate but does not
// export it, and using it implicitly makes the library log to standard
// output; a test checks that the two agree. A quote carries the root in
// its PCK chain, so pinning the hash pins the certificate.
var intelRootSHA256 = [32]byte{
	0x44, 0xa0, 0x19, 0x6b, 0x2b, 0x99, 0xf8, 0x89, 0xb8, 0xe1, 0x49, 0xe9, 0x5b, 0x80, 0x7a, 0x35,
	0x0e, 0x74, 0x24, 0x96, 0x43, 0x99, 0xe8, 0x85, 0xa7, 0xcb, 0xb8, 0xcc, 0xfa, 0xb6, 0x74, 0xd3,
}

func isPinnedIntelRoot(c *x509.Certificate) bool {
	return c != nil && sha256.Sum256(c.Raw) == intelRootSHA256
}

// certPool returns a pool of the given certificates.
func certPool(certs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}
