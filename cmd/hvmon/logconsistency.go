package main

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/internal/atomicfile"
	"hvmon.dev/hvmon/internal/boundedfile"
	"hvmon.dev/hvmon/tlog"
)

// proofHeader is the first line of a tlog-proof file.
const proofHeader = "c2sp.org/tlog-proof@v1\n"

func (a *app) logConsistencyCmd() *cobra.Command {
	var (
		logKey, proofFile, tlogDir, out string
		witnessKeys                     []string
		quorum                          int
	)
	cmd := &cobra.Command{
		Use:   "consistency --log-key VKEY [--witness-key VKEY]... [--quorum N] OLD NEW (--proof-file CFILE | --tlog DIR|URL) [--out CFILE]",
		Short: "Check offline that two checkpoints of a log are consistent",
		Long: `Check that two signed checkpoints of one transparency log are consistent:
the smaller tree is a prefix of the larger (docs/FORMAT.md §15). OLD and
NEW are checkpoint files or tlog-proof files (whose checkpoint is used);
each must satisfy the log policy (--log-key, --witness-key, --quorum, as
for hvmon verify). The order does not matter: the smaller is proven into
the larger. The proof is a consistency file (--proof-file) from the
smaller size to the larger checkpoint, or is built from the log's tiles
at --tlog, a directory or http(s) URL (authenticated against the larger
checkpoint);
--out writes it as a consistency file.

Exit codes: 0 consistent; 1 usage or I/O error (including tiles missing
from --tlog); 2 a malformed checkpoint, proof or consistency file; 3 not
consistent (a fork, a rewritten history, a consistency file for other
sizes) or a checkpoint that fails the log policy.`,
		Args: exactArgs(2, "the OLD and NEW checkpoint or proof files"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (proofFile == "") == (tlogDir == "") {
				return configErr(errors.New("give one of --proof-file and --tlog"))
			}
			if out != "" && tlogDir == "" {
				return configErr(errors.New("--out writes the proof built from --tlog"))
			}
			if logKey == "" {
				return configErr(errors.New(`required flag(s) "log-key" not set`))
			}
			pol, err := logPolicy(logKey, witnessKeys, quorum, time.Time{})
			if err != nil {
				return err
			}
			var cps [2]*tlog.Checkpoint
			for i, p := range args {
				if cps[i], err = openCheckpointFile(*pol, p); err != nil {
					return err
				}
			}
			old, new := cps[0], cps[1]
			if old.Size > new.Size {
				old, new = new, old
			}
			if proofFile != "" {
				b, err := boundedfile.Read(proofFile, tlog.MaxProofSize)
				if err != nil {
					return configErr(err)
				}
				got, err := tlog.VerifyConsistency(*pol, old, b)
				if err != nil {
					return fmt.Errorf("%s: %w", proofFile, err)
				}
				if err := tlog.CheckConsistency(got, new, nil); err != nil {
					return fmt.Errorf("%s proves a checkpoint other than the larger one: %w", proofFile, err)
				}
			} else {
				r, err := tileReader(tlogDir)
				if err != nil {
					return err
				}
				path, err := tlog.ProveConsistency(a.context(), r, old, new)
				if err != nil {
					if errors.Is(err, tlog.ErrMalformed) || errors.Is(err, attest.ErrTrust) {
						return fmt.Errorf("--tlog %s: %w", tlogDir, err)
					}
					return configErr(fmt.Errorf("--tlog %s: %w", tlogDir, err))
				}
				if err := tlog.CheckConsistency(old, new, path); err != nil {
					return err
				}
				if out != "" {
					file := (&tlog.ConsistencyProof{Old: old.Size, Path: path, Checkpoint: new.Signed}).Marshal()
					if err := atomicfile.Write(out, file, 0o644, atomicfile.Options{Replace: true}); err != nil {
						return configErr(err)
					}
				}
			}
			_, err = fmt.Fprintf(a.stdout, "consistent: %s size %d is a prefix of size %d\n", printable(new.Origin), old.Size, new.Size)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&logKey, "log-key", "", "the log's verifier key `VKEY` (text or file; required)")
	f.StringArrayVar(&witnessKeys, "witness-key", nil, "a witness verifier key `VKEY` (text or file); repeatable")
	f.IntVar(&quorum, "quorum", 0, "how many --witness-key witnesses must cosign (`N`; 0: all)")
	f.StringVar(&proofFile, "proof-file", "", "the consistency `CFILE` from the smaller size to the larger checkpoint")
	f.StringVar(&tlogDir, "tlog", "", "build the proof from the log's tiles in `DIR` or at its http(s) URL (tlog-tiles layout)")
	f.StringVar(&out, "out", "", "with --tlog, write the consistency proof to `CFILE`")
	return cmd
}

// openCheckpointFile reads a checkpoint file or a proof file and opens
// its checkpoint with the policy.
func openCheckpointFile(pol tlog.Policy, path string) (*tlog.Checkpoint, error) {
	b, err := boundedfile.Read(path, tlog.MaxProofSize)
	if err != nil {
		return nil, configErr(err)
	}
	signed := b
	if bytes.HasPrefix(b, []byte(proofHeader)) {
		pr, err := tlog.ParseProof(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		signed = pr.Checkpoint
	}
	cp, err := pol.Open(signed)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cp, nil
}
