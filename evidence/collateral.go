package evidence

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/google/go-tdx-guest/pcs"
)

// TDXCollateral is Intel PCS collateral for TDX quotes, saved from the PCS
// API (to files, say) so that a Verifier checks it offline: the TDX TCB
// info for the platform's FMSPC and the TD quoting enclave's identity, the
// JSON bodies as the PCS returned them, each with the issuer chain the PCS
// returns in a response header (PEM, or URL-encoded PEM as in the header:
// the TCB signing certificate, then the root).
//
// With collateral, a quote also passes only if the collateral verifies to
// the same roots as the quote, is current at the verification time, names
// the quote's FMSPC, and rates the platform's TCB and quoting enclave
// "UpToDate" (go-tdx-guest accepts no other status). Failures match
// ErrCollateral.
type TDXCollateral struct {
	TCBInfo, TCBInfoIssuerChain       []byte
	QEIdentity, QEIdentityIssuerChain []byte
}

// collateralGetter serves TDXCollateral to go-tdx-guest in place of the
// PCS: the two collateral URLs, and nothing else.
type collateralGetter struct{ c *TDXCollateral }

func (g collateralGetter) Get(u string) (map[string][]string, []byte, error) {
	switch {
	case strings.HasPrefix(u, pcs.TcbInfoURL("")):
		return map[string][]string{"Tcb-Info-Issuer-Chain": {issuerChainHeader(g.c.TCBInfoIssuerChain)}}, g.c.TCBInfo, nil
	case u == pcs.QeIdentityURL():
		return map[string][]string{"Sgx-Enclave-Identity-Issuer-Chain": {issuerChainHeader(g.c.QEIdentityIssuerChain)}}, g.c.QEIdentity, nil
	}
	return nil, nil, fmt.Errorf("no collateral for %s (the verifier never fetches)", u)
}

// issuerChainHeader returns an issuer chain as the PCS header carries it:
// URL-encoded PEM. A chain given already encoded is returned as is.
func issuerChainHeader(chain []byte) string {
	s := string(chain)
	if strings.HasPrefix(strings.TrimSpace(s), "-----BEGIN") {
		return url.QueryEscape(s)
	}
	return s
}

func (c *TDXCollateral) check() error {
	if len(c.TCBInfo) == 0 || len(c.TCBInfoIssuerChain) == 0 || len(c.QEIdentity) == 0 || len(c.QEIdentityIssuerChain) == 0 {
		return errors.New("TDXCollateral: TCB info, QE identity and both issuer chains are all required")
	}
	return nil
}
