package main

import (
	"cmp"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"hvmon.dev/hvmon/attest"
)

func (a *app) vmCmd() *cobra.Command {
	var loc daemonLocation
	cmd := &cobra.Command{
		Use:   "vm list|attest",
		Short: "Ask a running daemon about its VMs, or for a report now",
	}
	loc.flags(cmd.PersistentFlags(), true, false)
	list := &cobra.Command{
		Use:   "list",
		Short: "List the VMs the daemon follows",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, explain, err := loc.client(cmd)
			if err != nil {
				return err
			}
			vms, err := c.VMs(cmd.Context())
			if err != nil {
				return explain(err)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "VM\tSTATE\tCONNECTED\tAGENT\tNEXT SEQ\tLAST EVENT\tLAST AT")
			for _, v := range vms {
				last := "-"
				if !v.LastAt.IsZero() {
					last = v.LastAt.Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%d\t%s\t%s\n", printable(v.Name), cmp.Or(printable(v.State), "-"), v.Connected,
					cmp.Or(printable(string(v.Agent)), "-"), v.Seq, cmp.Or(v.LastEvent, "-"), last)
			}
			return tw.Flush()
		},
	}
	var event, nonceHex, out string
	attestCmd := &cobra.Command{
		Use:   "attest NAME [--event EVENT] [--nonce HEX] [-o OUT]",
		Short: "Make a report for a VM now (default event: on-demand) and print its hash",
		Long: `Ask the daemon for a report of VM NAME now, and print its VM, event, host
seq and hash.

--nonce HEX (8 to 64 bytes) is the caller's nonce: the daemon passes it to
the agent, whose guest evidence answers it, and the report carries it, so
that "hvmon verify --nonce HEX" shows the report answers this request and
no other. Without it the daemon draws a fresh nonce.

-o OUT writes the signed report to OUT ("-" for stdout, and then nothing
else goes to stdout).`,
		Example: `  NONCE=$(openssl rand -hex 32)
  hvmon vm attest llm-1 --nonce "$NONCE" -o llm-1.cose
  hvmon verify --trust host.pub --vm llm-1 --nonce "$NONCE" --require-hardware llm-1.cose`,
		Args: exactArgs(1, "the VM NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := attest.CheckVMName(args[0]); err != nil {
				return configErr(err)
			}
			var nonce []byte
			if cmd.Flags().Changed("nonce") {
				n, err := parseHex("nonce", nonceHex)
				if err != nil {
					return err
				}
				if len(n) < attest.MinNonceSize || len(n) > attest.MaxNonceSize {
					return configErr(fmt.Errorf("--nonce: %d bytes, want %d to %d", len(n), attest.MinNonceSize, attest.MaxNonceSize))
				}
				nonce = n
			}
			c, explain, err := loc.client(cmd)
			if err != nil {
				return err
			}
			e, err := c.AttestNonce(cmd.Context(), args[0], attest.Event(event), nil, nonce)
			if err != nil {
				return explain(err)
			}
			if out != "" {
				b, err := c.Report(cmd.Context(), e.Hash)
				if err != nil {
					return configErr(err)
				}
				if attest.ReportHash(b) != e.Hash {
					return configErr(fmt.Errorf("the daemon returned a report whose hash is not %s", e.Hash))
				}
				if err := a.writeOutput(out, b); err != nil {
					return err
				}
				if out == "-" {
					return nil
				}
			}
			_, err = fmt.Fprintf(a.stdout, "%s %s seq %d %s\n", printable(e.VM), e.Event, e.Seq, e.Hash)
			return err
		},
	}
	attestCmd.Flags().StringVar(&event, "event", string(attest.EventOnDemand), "`EVENT` to record: on-demand or periodic (lifecycle steps are recorded only by the VM's lifecycle)")
	attestCmd.Flags().StringVar(&nonceHex, "nonce", "", "`HEX` nonce (8 to 64 bytes) the report and its guest evidence must answer (default: the daemon draws one)")
	attestCmd.Flags().StringVarP(&out, "out", "o", "", "write the signed report to `OUT` (\"-\" for stdout)")
	cmd.AddCommand(list, attestCmd, a.vmIdentityCmd())
	return cmd
}

// vmIdentity is the --json view of hvmon vm identity.
type vmIdentity struct {
	VM         string        `json:"vm"`
	Identity   attest.Digest `json:"identity"`
	HostData   encodedValue  `json:"snp_host_data"`
	MRConfigID encodedValue  `json:"tdx_mr_config_id"`
}

type encodedValue struct {
	Hex    string `json:"hex"`
	Base64 string `json:"base64"`
}

func encoded(b []byte) encodedValue {
	return encodedValue{Hex: hex.EncodeToString(b), Base64: base64.StdEncoding.EncodeToString(b)}
}

func (a *app) vmIdentityCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "identity NAME [--json]",
		Short: "Print the launch identity of a VM name (SEV-SNP HOST_DATA, TDX MRCONFIGID)",
		Long: `Print the value that binds VM NAME to its launch (docs/FORMAT.md, "VM
identity"): SHA3-256("hvmon vm identity v1" || 0x00 || NAME). Launch an
SEV-SNP guest with it as HOST_DATA (32 bytes), or a TD with it followed by
16 zero bytes as MRCONFIGID (48 bytes); a policy with bind_vm_identity =
true then contraindicates evidence that a host relabelled for another VM.
Values are printed in hex and in base64 (what libvirt's <hostData> and
<mrConfigId>, and QEMU's host-data= and mrconfigid=, take). This talks to
no daemon.`,
		Example: `  hvmon vm identity llm-1`,
		Args:    exactArgs(1, "the VM NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := attest.CheckVMName(name); err != nil {
				return configErr(err)
			}
			hd, mc := attest.VMIdentityHostData(name), attest.VMIdentityMRConfigID(name)
			v := vmIdentity{VM: name, Identity: attest.VMIdentity(name), HostData: encoded(hd[:]), MRConfigID: encoded(mc[:])}
			if asJSON {
				return configErr(writeJSON(a.stdout, v))
			}
			p := &printer{w: a.stdout}
			p.field("", "vm", name)
			p.field("", "identity", v.Identity.String())
			p.line("SEV-SNP HOST_DATA (32 bytes):")
			p.field("  ", "hex", v.HostData.Hex)
			p.field("  ", "base64", v.HostData.Base64)
			p.field("  ", "libvirt", "<launchSecurity type='sev-snp'>...<hostData>"+v.HostData.Base64+"</hostData></launchSecurity>")
			p.field("  ", "qemu", "-object sev-snp-guest,...,host-data="+v.HostData.Base64)
			p.line("TDX MRCONFIGID (48 bytes):")
			p.field("  ", "hex", v.MRConfigID.Hex)
			p.field("  ", "base64", v.MRConfigID.Base64)
			p.field("  ", "libvirt", "<launchSecurity type='tdx'>...<mrConfigId>"+v.MRConfigID.Base64+"</mrConfigId></launchSecurity>")
			p.field("  ", "qemu", "-object tdx-guest,...,mrconfigid="+v.MRConfigID.Base64)
			return configErr(p.err)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the values as JSON")
	return cmd
}
