package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/evidence"
	"hvmon.dev/hvmon/internal/boundedfile"
	"hvmon.dev/hvmon/tee"
)

func (a *app) evidenceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "evidence",
		Short: "Check raw TEE hardware evidence: SEV-SNP reports and TDX quotes",
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return configErr(fmt.Errorf("%s: unknown subcommand %q (see %s --help)", c.CommandPath(), args[0], c.CommandPath()))
			}
			return nil
		},
		RunE: func(c *cobra.Command, _ []string) error { return c.Help() },
	}
	cmd.AddCommand(a.evidenceVerifyCmd())
	return cmd
}

// evidenceExitHelp documents the exit codes of hvmon evidence verify. They
// are hvmon verify's, for the failures hardware evidence can have.
const evidenceExitHelp = `Exit codes:
  0  the evidence verified
  1  usage, configuration or I/O error, including an unreadable or malformed
     --roots or --vcek file; nothing was decided about the evidence
  2  malformed evidence: not a report or quote of --type (wrong size,
     reserved bytes set, bad structure, a certificate that does not parse)
  3  not trusted, or not bound: the certificate chain does not verify to a
     pinned root at --at, the report or quote is not signed by the key the
     chain certifies, or REPORT_DATA differs from --report-data (genuine
     evidence, but not the evidence you asked about)
  5  a platform rule is broken: a debug guest without --allow-debug, or the
     platform's own consistency checks (for SEV-SNP: the VCEK is for
     another TCB or chip than the report says)`

func (a *app) evidenceVerifyCmd() *cobra.Command {
	var (
		typ, vcekPath, rootsPath, at, rdHex string
		allowDebug, asJSON                  bool
	)
	cmd := &cobra.Command{
		Use:   "verify --type sev-snp|tdx [--vcek CERT] [--roots FILE] [--at TIME] [--report-data HEX] [--allow-debug] [--json] FILE",
		Short: "Verify a recorded SEV-SNP report or TDX quote offline",
		Long: `Verify hardware evidence read from FILE or, with "-", from stdin, offline.

For --type sev-snp, FILE is the 1184-byte ATTESTATION_REPORT, optionally
followed by the certificate table the platform returned with it (what
configfs-tsm's outblob and auxblob hold together). The report is checked
against the certificate of the key that signed it (VCEK or VLEK): --vcek
gives it (DER or PEM) and replaces any in FILE. For --type tdx, FILE is the
quote; it carries its own PCK certificate chain.

The chain must end in a pinned root: by default the AMD roots (Milan,
Genoa, Turin) and Intel's SGX Root CA built into hvmon; --roots replaces
them with the certificates in FILE (for sev-snp, AMD's chain files: an ARK
and the ASK or ASVK it signed). Nothing is fetched from the network.

Checks run in this order and stop at the first failure: format, chain
(certificates and signature, at --at), debug (refused unless
--allow-debug), report_data (equal to --report-data, 64 bytes as 128 hex
digits; without it REPORT_DATA is shown but not checked) and platform (the
platform's consistency rules).

The output is one line per check, the evidence's fields (type, signer,
measurement, REPORT_DATA, debug, TCB, ...), and a last line VALID or
"INVALID: <reason>". When the chain did not verify, the fields are only
what the evidence claims, under an UNVERIFIED banner. --json prints the
same as JSON; the exit code is the same either way.

` + evidenceExitHelp,
		Example: `  hvmon evidence verify --type sev-snp --vcek vcek.der report.bin
  hvmon evidence verify --type tdx --report-data "$RD" --json quote.dat`,
		Args: exactArgs(1, `one evidence FILE (or "-" for stdin)`),
		RunE: func(cmd *cobra.Command, args []string) error {
			t := attest.Platform(typ)
			if t != attest.PlatformSEVSNP && t != attest.PlatformTDX {
				return configErr(fmt.Errorf("--type %q: want %s or %s", typ, attest.PlatformSEVSNP, attest.PlatformTDX))
			}
			trust := tee.Trust{AllowDebugUnsafe: allowDebug}
			var rd *[64]byte
			if cmd.Flags().Changed("report-data") {
				b, err := parseReportData(rdHex)
				if err != nil {
					return err
				}
				rd = &b
			}
			now := time.Now()
			if cmd.Flags().Changed("at") {
				var err error
				if now, err = time.Parse(time.RFC3339, at); err != nil {
					return configErr(fmt.Errorf("--at %q: want an RFC 3339 time such as 2026-01-02T15:04:05Z", at))
				}
			}
			if rootsPath != "" {
				data, _, err := readCertificates("roots", rootsPath)
				if err != nil {
					return err
				}
				roots := []tee.File{{Name: rootsPath, Data: data}}
				if t == attest.PlatformSEVSNP {
					trust.AMDRoots = roots
				} else {
					trust.IntelRoots = roots
				}
			}
			var vcek *x509.Certificate
			if vcekPath != "" {
				if t != attest.PlatformSEVSNP {
					return configErr(errors.New("--vcek: only for --type sev-snp; a TDX quote carries its certificates"))
				}
				_, certs, err := readCertificates("vcek", vcekPath)
				if err != nil {
					return err
				}
				if len(certs) != 1 {
					return configErr(fmt.Errorf("--vcek %s: %d certificates, want one (the VCEK or VLEK)", vcekPath, len(certs)))
				}
				vcek = certs[0]
			}
			opts, err := evidence.TrustOptions(trust)
			if err != nil {
				return configErr(fmt.Errorf("--roots %s: %w", rootsPath, err))
			}
			opts.Logger = a.log
			v, err := evidence.NewVerifier(opts)
			if err != nil {
				return configErr(fmt.Errorf("--roots %s: %w", rootsPath, err))
			}
			data, err := a.readReport(args[0])
			if err != nil {
				return err
			}

			var hw *attest.HardwareEvidence
			if t == attest.PlatformSEVSNP {
				hw, err = evidence.ParseSNPExtendedReport(data)
				if err == nil && vcek != nil {
					hw.Certs = []attest.HexBytes{vcek.Raw}
				}
			} else {
				hw = &attest.HardwareEvidence{Type: t, Report: data}
			}
			var sum *evidence.Summary
			if err == nil {
				if rd != nil {
					sum, err = v.Verify(hw, *rd, now)
				} else {
					sum, err = v.VerifyWithoutReportDataUnsafe(hw, now)
				}
			}
			res := evidenceResult(t, hw, sum, err, rd != nil)
			if asJSON {
				err = writeJSON(a.stdout, res)
			} else {
				err = writeEvidenceText(a.stdout, res)
			}
			if err != nil {
				return configErr(err)
			}
			if res.err != nil {
				return classifyEvidence(fmt.Errorf("%s: %w", displayName(args[0]), res.err))
			}
			a.log.Info("hardware evidence valid", "file", displayName(args[0]), "type", t, "root", sum.Root, "report_data_checked", rd != nil)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&typ, "type", "", "evidence `TYPE`: sev-snp or tdx (required)")
	f.StringVar(&vcekPath, "vcek", "", "VCEK or VLEK certificate `CERT` (DER or PEM) of an SEV-SNP report")
	f.StringVar(&rootsPath, "roots", "", "pinned root certificates `FILE` (PEM or DER), instead of the built-in AMD or Intel roots")
	f.StringVar(&at, "at", "", "verify as of this RFC 3339 `TIME` instead of now")
	f.StringVar(&rdHex, "report-data", "", "expected REPORT_DATA, 64 bytes as 128 `HEX` digits")
	f.BoolVar(&allowDebug, "allow-debug", false, "accept evidence from a debug guest (the host can read its memory)")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.MarkFlagRequired("type")
	return cmd
}

// parseReportData parses --report-data: exactly 64 bytes as hex.
func parseReportData(s string) ([64]byte, error) {
	var rd [64]byte
	b, err := parseHex("report-data", s)
	if err != nil {
		return rd, err
	}
	if len(b) != len(rd) {
		return rd, configErr(fmt.Errorf("--report-data: want %d hex digits (%d bytes), got %d", 2*len(rd), len(rd), len(s)))
	}
	return [64]byte(b), nil
}

// readCertificates reads a --roots or --vcek file: its content, and the
// certificates it holds.
func readCertificates(flag, path string) ([]byte, []*x509.Certificate, error) {
	data, err := boundedfile.Read(path, evidence.MaxCertificatesSize)
	if err != nil {
		return nil, nil, configErr(fmt.Errorf("--%s: %w", flag, err))
	}
	certs, err := evidence.ParseCertificates(data)
	if err != nil {
		return nil, nil, configErr(fmt.Errorf("--%s %s: %w", flag, path, err))
	}
	return data, certs, nil
}

// evidenceFailure files an evidence error under the class of package
// attest whose exit code the command documents, keeping its message.
type evidenceFailure struct{ err, class error }

func (e *evidenceFailure) Error() string   { return e.err.Error() }
func (e *evidenceFailure) Unwrap() []error { return []error{e.err, e.class} }

// classifyEvidence maps the verifier's error classes onto exit codes:
// malformed 2; untrusted or another REPORT_DATA 3; a platform rule 5.
func classifyEvidence(err error) error {
	var class error
	switch {
	case errors.Is(err, evidence.ErrMalformed):
		class = attest.ErrMalformed
	case errors.Is(err, evidence.ErrUntrusted), errors.Is(err, evidence.ErrReportData):
		class = attest.ErrTrust
	case errors.Is(err, evidence.ErrPolicy):
		class = attest.ErrAppraisal
	default:
		return err
	}
	return &evidenceFailure{err, class}
}

// evidenceView is the result of hvmon evidence verify, for both outputs.
type evidenceView struct {
	Valid bool `json:"valid"`
	// Verified says whether Evidence is authenticated: the chain and
	// signature verified. Otherwise it is what the evidence claims.
	Verified bool              `json:"verified"`
	Type     attest.Platform   `json:"type"`
	Checks   []attest.Check    `json:"checks"`
	Evidence *evidence.Summary `json:"evidence,omitempty"`
	Error    string            `json:"error,omitempty"`
	err      error
}

// evidenceResult lays out the checks in the order the verifier runs them:
// the first that failed, those before it passed, those after it skipped.
func evidenceResult(t attest.Platform, hw *attest.HardwareEvidence, sum *evidence.Summary, err error, rdGiven bool) *evidenceView {
	v := &evidenceView{Valid: err == nil, Type: t, Evidence: sum, Verified: sum != nil, err: err}
	if err != nil {
		v.Error = err.Error()
	}
	if sum == nil && hw != nil {
		v.Evidence, _ = evidence.Inspect(hw)
	}
	failed := false
	step := func(name string, class error, pass string) {
		c := attest.Check{Name: name, Status: attest.StatusPass, Detail: pass}
		switch {
		case failed:
			c.Status, c.Detail = attest.StatusSkip, ""
		case err != nil && errors.Is(err, class):
			c.Status, c.Detail = attest.StatusFail, err.Error()
			failed = true
		}
		v.Checks = append(v.Checks, c)
	}
	format := string(t)
	if v.Evidence != nil {
		format += ", signed by the " + v.Evidence.Signer
	}
	step("format", evidence.ErrMalformed, format)
	root := ""
	if sum != nil {
		root = sum.Root
	}
	step("chain", evidence.ErrUntrusted, root)
	debug := "not a debug guest"
	if sum != nil && sum.Debug {
		debug = "debug guest, accepted by --allow-debug"
	}
	step("debug", evidence.ErrDebug, debug)
	if rdGiven || failed {
		step("report_data", evidence.ErrReportData, "equals --report-data")
	} else {
		v.Checks = append(v.Checks, attest.Check{Name: "report_data", Status: attest.StatusSkip, Detail: "no --report-data: REPORT_DATA not checked"})
	}
	step("platform", evidence.ErrPolicy, "")
	return v
}

func writeEvidenceText(w io.Writer, v *evidenceView) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range v.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, c.Status, printable(c.Detail))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	p := &printer{w: w}
	if s := v.Evidence; s != nil {
		if !v.Verified {
			p.line("UNVERIFIED: the evidence did not verify; the fields are what it claims")
		}
		p.field("", "type", string(s.Type))
		p.field("", "signer", s.Signer)
		if s.Product != "" {
			p.field("", "product", printable(s.Product))
		}
		if s.Root != "" {
			p.field("", "root", s.Root)
		}
		p.field("", "measurement", fmt.Sprintf("%x", []byte(s.Measurement)))
		p.field("", "report data", fmt.Sprintf("%x", []byte(s.ReportData)))
		p.field("", "debug", strconv.FormatBool(s.Debug))
		p.field("", "tcb", s.TCB)
		if s.Policy != "" {
			p.field("", "policy", s.Policy)
		}
		if s.HostData != nil {
			p.field("", "host data", fmt.Sprintf("%x", []byte(s.HostData)))
		}
		if s.VMPL != nil {
			p.field("", "vmpl", strconv.FormatUint(uint64(*s.VMPL), 10))
		}
		if s.Attributes != "" {
			p.field("", "td attributes", s.Attributes)
		}
		if s.MRConfigID != nil {
			p.field("", "mr config id", fmt.Sprintf("%x", []byte(s.MRConfigID)))
		}
		for i, r := range s.RTMRs {
			p.field("", "rtmr"+strconv.Itoa(i), fmt.Sprintf("%x", []byte(r)))
		}
	}
	if v.Valid {
		p.line("VALID")
	} else {
		p.line("INVALID: " + printable(v.Error))
	}
	return p.err
}
