//go:build nologd

package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// logdCmd stands in for the log server in builds without it (the guest's
// agent is built with the nologd tag: it links none of the log's storage).
func (a *app) logdCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "logd",
		Short:              "Run the transparency log server (not built in)",
		DisableFlagParsing: true,
		RunE: func(*cobra.Command, []string) error {
			return configErr(errors.New("logd: this hvmon was built without the log server (tag nologd)"))
		},
	}
}
