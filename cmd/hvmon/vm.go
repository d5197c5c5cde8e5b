package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/host"
)

func (a *app) vmCmd() *cobra.Command {
	var socket string
	cmd := &cobra.Command{
		Use:   "vm list|attest",
		Short: "Ask a running daemon about its VMs, or for a report now",
	}
	cmd.PersistentFlags().StringVar(&socket, "api-socket", host.DefaultAPISocket, "the daemon's API socket `PATH`")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the VMs the daemon follows",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			vms, err := host.NewAPIClient(socket).VMs(cmd.Context())
			if err != nil {
				return configErr(err)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "VM\tCONNECTED\tSTATE\tNEXT SEQ\tLAST EVENT\tLAST AT")
			for _, v := range vms {
				last := ""
				if !v.LastAt.IsZero() {
					last = v.LastAt.Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%v\t%s\t%d\t%s\t%s\n", printable(v.Name), v.Connected, v.State, v.Seq, v.LastEvent, last)
			}
			return tw.Flush()
		},
	}
	var event string
	attestCmd := &cobra.Command{
		Use:   "attest NAME [--event EVENT]",
		Short: "Make a report for a VM now (default event: on-demand) and print its hash",
		Args:  exactArgs(1, "the VM NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := host.NewAPIClient(socket).Attest(cmd.Context(), args[0], attest.Event(event), nil)
			if err != nil {
				return configErr(err)
			}
			_, err = fmt.Fprintf(a.stdout, "%s %s seq %d %s\n", printable(e.VM), e.Event, e.Seq, e.Hash)
			return err
		},
	}
	attestCmd.Flags().StringVar(&event, "event", string(attest.EventOnDemand), "lifecycle `EVENT` to record")
	cmd.AddCommand(list, attestCmd)
	return cmd
}
