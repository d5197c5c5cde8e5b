package sim

import (
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"
	"time"
)

// Collateral is Intel-PCS-style collateral for a simulated TDX platform:
// the TCB info for its FMSPC and the TD quoting enclave's identity, as the
// PCS API returns them (JSON bodies), each with the issuer chain the PCS
// returns in a response header (PEM: the TCB signing certificate, then the
// root).
type Collateral struct {
	TCBInfo, TCBInfoIssuerChain       []byte
	QEIdentity, QEIdentityIssuerChain []byte
}

// The JSON shapes of the PCS responses (TCB info v3, enclave identity v2),
// hex strings where the PCS uses them.
type (
	tcbComponent struct {
		Svn byte `json:"svn"`
	}
	tcb struct {
		SGX    []tcbComponent `json:"sgxtcbcomponents,omitempty"`
		PCESvn uint16         `json:"pcesvn,omitempty"`
		TDX    []tcbComponent `json:"tdxtcbcomponents,omitempty"`
		ISVSvn uint32         `json:"isvsvn,omitempty"`
	}
	tcbLevel struct {
		TCB    tcb    `json:"tcb"`
		Date   string `json:"tcbDate"`
		Status string `json:"tcbStatus"`
	}
	tdxModule struct {
		MrSigner       string `json:"mrsigner"`
		Attributes     string `json:"attributes"`
		AttributesMask string `json:"attributesMask"`
	}
	tcbInfo struct {
		ID                      string     `json:"id"`
		Version                 int        `json:"version"`
		IssueDate               string     `json:"issueDate"`
		NextUpdate              string     `json:"nextUpdate"`
		FMSPC                   string     `json:"fmspc"`
		PCEID                   string     `json:"pceId"`
		TCBType                 int        `json:"tcbType"`
		TCBEvaluationDataNumber int        `json:"tcbEvaluationDataNumber"`
		TDXModule               tdxModule  `json:"tdxModule"`
		TCBLevels               []tcbLevel `json:"tcbLevels"`
	}
	enclaveIdentity struct {
		ID                      string     `json:"id"`
		Version                 int        `json:"version"`
		IssueDate               string     `json:"issueDate"`
		NextUpdate              string     `json:"nextUpdate"`
		TCBEvaluationDataNumber int        `json:"tcbEvaluationDataNumber"`
		MiscSelect              string     `json:"miscselect"`
		MiscSelectMask          string     `json:"miscselectMask"`
		Attributes              string     `json:"attributes"`
		AttributesMask          string     `json:"attributesMask"`
		MrSigner                string     `json:"mrsigner"`
		ISVProdID               uint16     `json:"isvprodid"`
		TCBLevels               []tcbLevel `json:"tcbLevels"`
	}
)

// Collateral returns collateral for this simulated platform, issued at
// issued and valid until nextUpdate, signed by the simulation's TCB signing
// key. Its one TCB level matches the platform's TCB with status (empty:
// "UpToDate"; others are "OutOfDate", "SWHardeningNeeded", ...).
func (t *TDX) Collateral(issued, nextUpdate time.Time, status string) (*Collateral, error) {
	if status == "" {
		status = "UpToDate"
	}
	ts := func(x time.Time) string { return x.UTC().Format(time.RFC3339) }
	var sgx, tdx []tcbComponent
	for i := range 16 {
		sgx = append(sgx, tcbComponent{tdxCPUSvn[i]})
		tdx = append(tdx, tcbComponent{tdxTeeTcbSvn[i]})
	}
	info := tcbInfo{
		ID: "TDX", Version: 3, IssueDate: ts(issued), NextUpdate: ts(nextUpdate),
		FMSPC: hex.EncodeToString(tdxFMSPC), PCEID: hex.EncodeToString(tdxPCEID), TCBEvaluationDataNumber: 1,
		TDXModule: tdxModule{
			MrSigner:       strings.Repeat("00", 48), // the quote's MRSIGNERSEAM
			Attributes:     strings.Repeat("00", 8),
			AttributesMask: strings.Repeat("FF", 8),
		},
		TCBLevels: []tcbLevel{{TCB: tcb{SGX: sgx, PCESvn: tdxPCESvn, TDX: tdx}, Date: ts(issued), Status: status}},
	}
	qe := enclaveIdentity{
		ID: "TD_QE", Version: 2, IssueDate: ts(issued), NextUpdate: ts(nextUpdate), TCBEvaluationDataNumber: 1,
		MiscSelect: "00000000", MiscSelectMask: "FFFFFFFF",
		Attributes: hex.EncodeToString(tdxQEAttributes), AttributesMask: strings.Repeat("FF", 16),
		MrSigner: hex.EncodeToString(tdxQEMrSigner), ISVProdID: 2,
		TCBLevels: []tcbLevel{{TCB: tcb{ISVSvn: uint32(tdxQESvn)}, Date: ts(issued), Status: status}},
	}
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: t.tcbSigner.Raw}), t.RootPEM()...)
	tcbBody, err := t.signedBody("tcbInfo", info)
	if err != nil {
		return nil, err
	}
	qeBody, err := t.signedBody("enclaveIdentity", qe)
	if err != nil {
		return nil, err
	}
	return &Collateral{TCBInfo: tcbBody, TCBInfoIssuerChain: chain, QEIdentity: qeBody, QEIdentityIssuerChain: chain}, nil
}

// signedBody returns {"<name>": v, "signature": hex(r ‖ s)}, the signature
// over the exact bytes of v's JSON, as the PCS signs.
func (t *TDX) signedBody(name string, v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	sig, err := signRS(t.tcbKey, raw)
	if err != nil {
		return nil, err
	}
	return fmt.Appendf(nil, `{%q:%s,"signature":%q}`, name, raw, hex.EncodeToString(sig)), nil
}
