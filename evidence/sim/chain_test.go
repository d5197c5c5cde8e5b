package sim

import (
	"bytes"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	sevtest "github.com/google/go-sev-guest/testing"
)

// The simulated AMD chain, built with crypto/x509 alone so that no
// production binary links package testing, is the chain go-sev-guest's test
// signer builds from the same keys, names, dates and extensions (the one
// hvmon used before): every certificate's signed part is the same, byte for
// byte. Only the signatures differ, as they did between any two runs (the
// signature schemes are randomized). go-sev-guest's verifier accepts the
// chain: TestSNPVerifiesAgainstItsRoots and package evidence's tests.
func TestSNPChainAsGoSEVGuestBuildsIt(t *testing.T) {
	ks := keySource{seed: seedA}
	ark, err := ks.rsa("snp ark")
	if err != nil {
		t.Fatal(err)
	}
	ask, err := ks.rsa("snp ask")
	if err != nil {
		t.Fatal(err)
	}
	vcek, err := ks.ecdsa("snp vcek", elliptic.P384())
	if err != nil {
		t.Fatal(err)
	}
	chipID := ks.bytes("snp chip id", abi.ChipIDSize)
	serial := ks.serial("snp vcek")
	nb := DefaultNotBefore

	got, err := newSNPChain(ark, ask, vcek, chipID, serial, nb)
	if err != nil {
		t.Fatal(err)
	}

	tcb, err := kds.ComposeTCBParts(snpTCB)
	if err != nil {
		t.Fatal(err)
	}
	named := func(cn string) sevtest.CertOverride {
		name := pkix.Name{
			Country: []string{"US"}, Province: []string{"CA"}, Locality: []string{"Santa Clara"},
			Organization: []string{"Advanced Micro Devices"}, OrganizationalUnit: []string{"Engineering"},
			CommonName: cn, SerialNumber: "hvmon simulated hardware",
		}
		return sevtest.CertOverride{Subject: &name}
	}
	b := &sevtest.AmdSignerBuilder{
		Keys:             &sevtest.AmdKeys{Ark: ark, Ask: ask, Asvk: ask, Vcek: vcek},
		ProductName:      "Milan-B1",
		ArkCreationTime:  nb,
		AskCreationTime:  nb,
		AsvkCreationTime: nb,
		VcekCreationTime: nb,
		ArkCustom:        named("ARK-Milan"),
		AskCustom:        named("SEV-Milan"),
		AsvkCustom:       named("SEV-VLEK-Milan"),
		VcekCustom: sevtest.CertOverride{
			SerialNumber: serial,
			Extensions:   sevtest.CustomExtensions(snpTCB, chipID, "", "Milan-B1"),
		},
		TCB: tcb,
	}
	want, err := b.TestOnlyCertChain()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want *x509.Certificate
	}{{"ARK", got.ark, want.Ark}, {"ASK", got.ask, want.Ask}, {"ASVK", got.asvk, want.Asvk}, {"VCEK", got.vcek, want.Vcek}} {
		if !bytes.Equal(c.got.RawTBSCertificate, c.want.RawTBSCertificate) {
			t.Errorf("%s: to-be-signed part differs:\n got  %x\n want %x", c.name, c.got.RawTBSCertificate, c.want.RawTBSCertificate)
		}
		if err := c.got.CheckSignatureFrom(map[string]*x509.Certificate{"ARK": got.ark, "ASK": got.ark, "ASVK": got.ark, "VCEK": got.ask}[c.name]); err != nil {
			t.Errorf("%s: signature: %v", c.name, err)
		}
	}
}
