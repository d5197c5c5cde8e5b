package evidence

import (
	"bytes"
	"crypto/x509"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	tdxtesting "github.com/google/go-tdx-guest/testing"
	tdxtestdata "github.com/google/go-tdx-guest/testing/testdata"

	"hvmon.dev/hvmon/evidence/sim"
)

// Collateral signed by the simulation's TCB signing key vouches for its
// platform while current and "UpToDate", and for nothing else.
func TestTDXCollateralSimulated(t *testing.T) {
	p := simTDX(t, "seed one", false)
	rd := testReportData(9)
	hw, err := p.Evidence(t.Context(), rd)
	if err != nil {
		t.Fatal(err)
	}
	issued := testNow.Add(-24 * time.Hour)
	good, err := p.t.Collateral(issued, testNow.Add(30*24*time.Hour), "")
	if err != nil {
		t.Fatal(err)
	}
	verify := func(c *sim.Collateral, roots []*x509.Certificate, at time.Time) error {
		tc := &TDXCollateral{TCBInfo: c.TCBInfo, TCBInfoIssuerChain: c.TCBInfoIssuerChain, QEIdentity: c.QEIdentity, QEIdentityIssuerChain: c.QEIdentityIssuerChain}
		_, err := mustVerifier(t, Options{AllowSimulated: true, SimulatedRoots: roots, TDXCollateral: tc}).Verify(hw, rd, at)
		return err
	}
	if err := verify(good, p.Roots(), testNow); err != nil {
		t.Fatalf("Verify with current UpToDate collateral = %v", err)
	}
	wantErr(t, "after the collateral's next update", verify(good, p.Roots(), testNow.Add(31*24*time.Hour)), ErrCollateral)

	old, err := p.t.Collateral(issued, testNow.Add(30*24*time.Hour), "OutOfDate")
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, "OutOfDate collateral", verify(old, p.Roots(), testNow), ErrCollateral)

	// Another simulation's collateral names the same FMSPC and TCB; only
	// its signing chain, which ends in another root, tells it apart.
	other, err := simTDX(t, "seed two", false).t.Collateral(issued, testNow.Add(30*24*time.Hour), "")
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, "another simulation's collateral", verify(other, p.Roots(), testNow), ErrCollateral)

	tampered := *good
	tampered.TCBInfo = bytes.Replace(good.TCBInfo, []byte(`"tcbEvaluationDataNumber":1`), []byte(`"tcbEvaluationDataNumber":2`), 1)
	if bytes.Equal(tampered.TCBInfo, good.TCBInfo) {
		t.Fatal("tampering changed nothing")
	}
	wantErr(t, "tampered TCB info", verify(&tampered, p.Roots(), testNow), ErrCollateral)

	if !errors.Is(ErrCollateral, ErrPolicy) {
		t.Error("ErrCollateral is not an ErrPolicy")
	}
	if _, err := NewVerifier(Options{TDXCollateral: &TDXCollateral{TCBInfo: good.TCBInfo}}); err == nil {
		t.Error("NewVerifier accepted incomplete collateral")
	}
}

// The collateral go-tdx-guest records for the Sapphire Rapids quote is
// consulted: it expired in 2023, and even when current it has no TCB
// level matching the quote.
func TestTDXCollateralRecorded(t *testing.T) {
	chain := func(h map[string][]string, k string) []byte {
		s, err := url.QueryUnescape(h[k][0])
		if err != nil {
			t.Fatal(err)
		}
		return []byte(s)
	}
	c := &TDXCollateral{
		TCBInfo: tdxtestdata.TcbInfoBody, TCBInfoIssuerChain: chain(tdxtesting.TcbInfoHeader, "Tcb-Info-Issuer-Chain"),
		QEIdentity: tdxtestdata.QeIdentityBody, QEIdentityIssuerChain: chain(tdxtesting.QeIdentityHeader, "Sgx-Enclave-Identity-Issuer-Chain"),
	}
	hw := sprEvidence(t)
	rd := reportDataOf(t, hw)
	v := mustVerifier(t, Options{TDXCollateral: c})
	_, err := v.Verify(hw, rd, testNow)
	wantErr(t, "expired recorded collateral", err, ErrCollateral)
	if err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("error %v does not say the collateral expired", err)
	}
	_, err = v.Verify(hw, rd, time.Date(2023, 7, 1, 0, 0, 0, 0, time.UTC))
	wantErr(t, "recorded collateral in its validity", err, ErrCollateral)
	if err == nil || !strings.Contains(err.Error(), "no matching TCB level") {
		t.Errorf("error %v does not say no TCB level matched", err)
	}
	// Without collateral the quote verifies at that date.
	if _, err := mustVerifier(t, Options{}).Verify(hw, rd, time.Date(2023, 7, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Errorf("Verify without collateral in 2023 = %v", err)
	}
}
