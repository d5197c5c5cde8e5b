package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// manCmd is "hvmon man --dir DIR": one man page (section 1) per command,
// generated from the same help text --help prints. It is hidden: packagers
// run it (make deb), admins read the pages it wrote. The date in the pages
// is SOURCE_DATE_EPOCH's when that is set, so a package build is
// reproducible.
func (a *app) manCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:    "man --dir DIR",
		Short:  "Write a man page per command into DIR (for packagers)",
		Hidden: true,
		Args:   exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return configErr(errors.New("--dir is required"))
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return configErr(err)
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true
			header := &doc.GenManHeader{Section: "1", Source: "hvmon " + readBuildInfo().Version, Manual: "hvmon manual"}
			if err := doc.GenManTree(root, header, dir); err != nil {
				return fmt.Errorf("man pages: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "`DIR` to write the pages to (created if missing)")
	return cmd
}
