package evidence

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/google/go-configfs-tsm/configfs/linuxtsm"
	"github.com/google/go-configfs-tsm/report"
	sevclient "github.com/google/go-sev-guest/client"
	tdxclient "github.com/google/go-tdx-guest/client"
	"github.com/hashicorp/go-hclog"

	"hvmon.dev/hvmon/attest"
)

// Guest interfaces of the Linux TEE drivers.
const (
	devSEVGuest = "/dev/sev-guest"
	devTDXGuest = "/dev/tdx_guest"
)

// platform is what providers need of the guest's operating system, so that
// tests can stand in for it.
type platform struct {
	// tsmProvider returns the configfs-tsm report provider ("sev_guest",
	// "tdx_guest"), or "" when configfs-tsm is absent.
	tsmProvider func() (string, error)
	// exists reports whether a device node exists.
	exists func(path string) bool
	// snpQuote returns an SEV-SNP report followed by its certificate
	// table, through configfs-tsm or /dev/sev-guest.
	snpQuote func(reportData [64]byte) ([]byte, error)
	// tdxQuote returns a TDX quote, through configfs-tsm or
	// /dev/tdx_guest.
	tdxQuote func(reportData [64]byte) ([]byte, error)
}

var hostPlatform = platform{
	tsmProvider: func() (string, error) {
		c, err := linuxtsm.MakeClient()
		if err != nil {
			return "", nil // no configfs-tsm
		}
		r, err := report.CreateOpenReport(c)
		if err != nil {
			return "", err
		}
		defer r.Destroy()
		p, err := r.ReadOption("provider")
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(p)), nil
	},
	exists: func(path string) bool {
		_, err := os.Stat(path)
		return err == nil
	},
	snpQuote: func(rd [64]byte) ([]byte, error) {
		qp, err := sevclient.GetQuoteProvider()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNoHardware, err)
		}
		return qp.GetRawQuote(rd)
	},
	tdxQuote: func(rd [64]byte) ([]byte, error) {
		qp, err := tdxclient.GetQuoteProvider()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNoHardware, err)
		}
		return tdxclient.GetRawQuote(qp, rd)
	},
}

// detect names the TEE of this guest and how it was found.
func (p platform) detect() (attest.Platform, string, error) {
	name, err := p.tsmProvider()
	if err != nil {
		return "", "", fmt.Errorf("%w: reading the configfs-tsm provider: %v", ErrNoHardware, err)
	}
	switch name {
	case "sev_guest":
		return TypeSEVSNP, "configfs-tsm", nil
	case "tdx_guest":
		return TypeTDX, "configfs-tsm", nil
	}
	switch {
	case p.exists(devSEVGuest):
		return TypeSEVSNP, devSEVGuest, nil
	case p.exists(devTDXGuest):
		return TypeTDX, devTDXGuest, nil
	}
	if name != "" {
		return "", "", fmt.Errorf("%w: configfs-tsm provider %q is neither SEV-SNP nor TDX", ErrNoHardware, name)
	}
	return "", "", fmt.Errorf("%w: no configfs-tsm, %s or %s", ErrNoHardware, devSEVGuest, devTDXGuest)
}

// snpProvider gets SEV-SNP extended reports from the guest driver.
type snpProvider struct {
	p    platform
	log  hclog.Logger
	cert *x509.Certificate // configured VCEK/VLEK, or nil
	mu   sync.Mutex        // one request at a time: the driver serializes anyway
}

func newSNPProvider(p platform, opts ProviderOptions) (*snpProvider, error) {
	if t, _, err := p.detect(); err != nil || t != TypeSEVSNP {
		return nil, fmt.Errorf("%w: no SEV-SNP guest interface (configfs-tsm provider sev_guest or %s)", ErrNoHardware, devSEVGuest)
	}
	s := &snpProvider{p: p, log: opts.logger()}
	if opts.SNPCertificate != nil {
		certs, err := ParseCertificates(opts.SNPCertificate)
		if err != nil {
			return nil, fmt.Errorf("SNP certificate: %w", err)
		}
		if len(certs) != 1 {
			return nil, fmt.Errorf("SNP certificate: %d certificates, want the VCEK or VLEK only", len(certs))
		}
		s.cert = certs[0]
	}
	return s, nil
}

// Type implements Provider.
func (s *snpProvider) Type() attest.Platform { return TypeSEVSNP }

// Evidence implements Provider. The request cannot be interrupted once it
// reached the driver; ctx is checked before.
func (s *snpProvider) Evidence(ctx context.Context, reportData [64]byte) (*attest.HardwareEvidence, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	raw, err := s.p.snpQuote(reportData)
	if err != nil {
		return nil, fmt.Errorf("SEV-SNP report: %w", err)
	}
	return s.assemble(raw, reportData)
}

// assemble turns what the driver returned (a report, then a certificate
// table) into hardware evidence, falling back on the configured
// certificate when the platform supplied none.
func (s *snpProvider) assemble(raw []byte, reportData [64]byte) (*attest.HardwareEvidence, error) {
	hw, err := ParseSNPExtendedReport(raw)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(hw.Report[snpReportDataAt:snpReportDataAt+64], reportData[:]) {
		return nil, fmt.Errorf("%w: the driver returned a report for another REPORT_DATA", ErrReportData)
	}
	if len(hw.Certs) == 0 && s.cert != nil {
		s.log.Debug("platform supplied no certificate; using the configured one")
		hw.Certs = []attest.HexBytes{s.cert.Raw}
	}
	if len(hw.Certs) == 0 {
		return nil, fmt.Errorf("%w: the host supplied none and none is configured", ErrNoCertificate)
	}
	return hw, nil
}

// tdxProvider gets TDX quotes from the guest driver.
type tdxProvider struct {
	p   platform
	log hclog.Logger
	mu  sync.Mutex
}

func newTDXProvider(p platform, opts ProviderOptions) (*tdxProvider, error) {
	if t, _, err := p.detect(); err != nil || t != TypeTDX {
		return nil, fmt.Errorf("%w: no TDX guest interface (configfs-tsm provider tdx_guest or %s)", ErrNoHardware, devTDXGuest)
	}
	return &tdxProvider{p: p, log: opts.logger()}, nil
}

// Type implements Provider.
func (t *tdxProvider) Type() attest.Platform { return TypeTDX }

// Evidence implements Provider. The request cannot be interrupted once it
// reached the driver; ctx is checked before.
func (t *tdxProvider) Evidence(ctx context.Context, reportData [64]byte) (*attest.HardwareEvidence, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	raw, err := t.p.tdxQuote(reportData)
	if err != nil {
		return nil, fmt.Errorf("TDX quote: %w", err)
	}
	hw := &attest.HardwareEvidence{Type: TypeTDX, Report: bytes.Clone(raw)}
	q, err := parseTDX(hw)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(q.GetTdQuoteBody().GetReportData(), reportData[:]) {
		return nil, fmt.Errorf("%w: the driver returned a quote for another REPORT_DATA", ErrReportData)
	}
	return hw, nil
}
