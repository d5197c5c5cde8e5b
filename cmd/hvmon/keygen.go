package main

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/spf13/cobra"

	"hvmon.dev/hvmon/internal/keyfile"
)

func (a *app) keygenCmd() *cobra.Command {
	var (
		out   string
		force bool
	)
	cmd := &cobra.Command{
		Use:   "keygen -o PATH [--force]",
		Short: "Generate an ML-DSA-65 signing key",
		Long: `Generate an ML-DSA-65 signing key.

The private key is written to PATH (PEM PKCS#8, mode 0600) and its public key
to PATH.pub (PEM SPKI, mode 0644). Existing files are never replaced unless
--force is given. The key id, the SHA3-256 of the raw public key in hex, is
printed to stdout; reports name their signer by it.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := keyfile.Generate(out, keyfile.WriteOptions{Force: force})
			if errors.Is(err, fs.ErrExist) {
				return configErr(fmt.Errorf("keygen: %w (use --force to replace it)", err))
			}
			if err != nil {
				return configErr(fmt.Errorf("keygen: %w", err))
			}
			a.log.Info("key generated", "private", out, "public", out+keyfile.PublicSuffix, "key_id", k.KeyID().String())
			_, err = fmt.Fprintln(a.stdout, k.KeyID())
			return err
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "", "`PATH` of the private key; the public key goes to PATH.pub (required)")
	cmd.Flags().BoolVar(&force, "force", false, "replace existing key files")
	cmd.MarkFlagRequired("out")
	return cmd
}
