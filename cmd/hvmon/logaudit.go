package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/internal/atomicfile"
	"hvmon.dev/hvmon/internal/boundedfile"
	"hvmon.dev/hvmon/logmon"
	"hvmon.dev/hvmon/policy"
	"hvmon.dev/hvmon/tlog"
	"hvmon.dev/hvmon/tlog/tlogclient"
)

// maxStateFile bounds the monitor's state file (about 200 bytes per
// logged report).
const maxStateFile = 256 << 20

func (a *app) logAuditCmd() *cobra.Command {
	var (
		tlogDir, logKey, statePath, policyPath string
		cacheDir                               string
		witnessKeys, trust, stores             []string
		quorum                                 int
		grace                                  time.Duration
		asJSON                                 bool
		ev                                     evidenceSettings
	)
	cmd := &cobra.Command{
		Use:   "audit --tlog DIR|URL --log-key VKEY --state FILE --trust PUB... [--store DIR]... [--policy FILE] [--grace D] [--cache DIR] [--json]",
		Short: "Monitor a transparency log: consistency, new entries, chains, stores",
		Long: `Audit a transparency log of hvmon reports once, as a monitor run from cron:

1. open the log's checkpoint with the log policy (--log-key, --witness-key,
   --quorum); a bad signature or too few witnesses fails the run (exit 3);
2. check it against the last checkpoint in --state: a smaller log is a
   rollback, another root at the same size a fork, a proof that fails a
   rewritten history; each fails the run (exit 3);
3. read the new entries from the log's tiles, authenticate each against
   the checkpoint, verify each as a report as of its own issued-at, and
   audit the chains of every VM they touch across the whole log (as
   verify --chain): a report a host left out of the log is a gap;
4. with --store (a daemon's data directory; repeatable), a stored report
   missing from the log longer than --grace is not_logged, and a logged
   report missing from the store that holds its chain is
   deleted_from_store (both contraindicated); and every log proof stored
   next to a report (<base>.proof, <base>.<label>.proof) of this log must
   come from a checkpoint the log's current one extends, else the host
   was shown another history: split_view, which fails the run (exit 3);
5. with --policy, a VM whose last report is not a shutdown and is older
   than its max_age at the checkpoint's time is silent (contraindicated).

--state FILE is written only when the log itself passed: steps 1 and 2,
no split_view, and tiles that match the checkpoint; a missing file is a
monitor's first run. --tlog is a directory in the tlog-tiles layout
(checkpoint, tile/, tile/entries/) or the http(s) URL serving it;
--cache DIR keeps the full tiles and bundles read (they never change, and
are authenticated on every use) so a run reads only what is new.

The output is verify --chain's (timelines, findings, verdict) after a
checkpoint line; --json prints {"checkpoint", "status", "findings", "vms",
"error"}.
Exit codes: 3 when the log itself fails (steps 1–2, a split_view, or
tiles or bundles that contradict the checkpoint); else as verify --chain
(2, 3 or 4 when a logged report failed verification in that class, 5 when
contraindicated, else 0); 1 for usage and I/O errors.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tlogDir == "" || logKey == "" || statePath == "" {
				return configErr(errors.New(`--tlog, --log-key and --state are required`))
			}
			reader, err := tileReader(tlogDir)
			if err != nil {
				return err
			}
			if cacheDir != "" {
				reader = logmon.CacheReader{R: reader, Dir: cacheDir}
			}
			if grace <= 0 {
				return configErr(fmt.Errorf("--grace %s: must be positive", grace))
			}
			lp, err := logPolicy(logKey, witnessKeys, quorum, time.Time{})
			if err != nil {
				return err
			}
			var opts attest.VerifyOptions
			pol, err := appraisalOptions(cmd, trust, policyPath, &ev, &opts)
			if err != nil {
				return err
			}
			b, err := boundedfile.Read(statePath, maxStateFile)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return configErr(fmt.Errorf("--state: %w", err))
			}
			prev, err := logmon.ParseState(b)
			if err != nil {
				return configErr(fmt.Errorf("--state %s: %w", statePath, err))
			}
			o := logmon.Options{Reader: reader, Policy: *lp, Verify: opts, Grace: grace}
			for _, d := range stores {
				s, err := host.NewFileStore(d)
				if err != nil {
					return configErr(fmt.Errorf("--store: %w", err))
				}
				o.Stores = append(o.Stores, fileStore{d, s})
			}
			if pol != nil {
				o.MaxAge = func(vm string) time.Duration { return pol.RulesFor(vm).MaxAge }
			}
			res, aerr := logmon.Audit(a.context(), prev, o)
			if aerr != nil && !errors.Is(aerr, logmon.ErrLog) {
				return configErr(aerr)
			}
			if asJSON {
				v := struct {
					*logmon.Result
					Error string `json:"error,omitempty"`
				}{Result: res}
				switch {
				case aerr != nil:
					v.Error = aerr.Error()
				case res.Failed != nil:
					v.Error = res.Failed.Error()
				case res.Err() != nil:
					v.Error = res.Err().Error()
				}
				err = writeJSON(a.stdout, v)
			} else {
				err = writeAuditText(a, res)
			}
			if err != nil {
				return configErr(err)
			}
			if aerr != nil {
				return &logError{fmt.Errorf("log audit: %w", aerr)}
			}
			if err := atomicfile.Write(statePath, mustJSON(res.State), 0o600, atomicfile.Options{Replace: true}); err != nil {
				return configErr(fmt.Errorf("--state: %w", err))
			}
			if res.Failed != nil {
				return fmt.Errorf("log audit: %w", res.Failed)
			}
			if err := res.Err(); err != nil {
				return fmt.Errorf("log audit: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&tlogDir, "tlog", "", "the log: a tlog-tiles `DIR` or its http(s) URL (required)")
	f.StringVar(&logKey, "log-key", "", "the log's verifier key `VKEY` (text or file; required)")
	f.StringArrayVar(&witnessKeys, "witness-key", nil, "a witness verifier key `VKEY` (text or file); repeatable")
	f.IntVar(&quorum, "quorum", 0, "how many --witness-key witnesses must cosign (`N`; 0: all)")
	f.StringVar(&statePath, "state", "", "the monitor's state `FILE` (required; created on the first run)")
	f.StringArrayVar(&trust, "trust", nil, "trusted host public key `PUB`; repeat for several")
	f.StringArrayVar(&stores, "store", nil, "a daemon's data `DIR` whose reports are compared with the log; repeatable")
	f.StringVar(&policyPath, "policy", "", "policy `FILE` whose max_age bounds each VM's silence (its host keys are trusted too)")
	f.DurationVar(&grace, "grace", time.Hour, "how long a stored report may be missing from the log")
	f.StringVar(&cacheDir, "cache", "", "keep the log's full tiles and bundles in `DIR` between runs")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	ev.flags(f)
	return cmd
}

// tileReader reads the log at --tlog: an http(s) URL or a directory.
func tileReader(s string) (tlog.TileReader, error) {
	if !strings.Contains(s, "://") {
		return tlogclient.DirReader{Root: s}, nil
	}
	r, err := tlogclient.NewHTTPReader(s, &http.Client{Timeout: time.Minute})
	if err != nil {
		return nil, configErr(fmt.Errorf("--tlog: %w", err))
	}
	return r, nil
}

// fileStore is a daemon's report store as the monitor reads it.
type fileStore struct {
	dir string
	s   *host.FileStore
}

func (f fileStore) Name() string { return f.dir }

func (f fileStore) Reports(ctx context.Context) ([][]byte, error) {
	es, err := f.s.List(ctx, host.Query{})
	if err != nil {
		return nil, err
	}
	out := make([][]byte, 0, len(es))
	for _, e := range es {
		b, err := readReportFile(e.Path)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// Proofs returns the log proofs stored next to the reports
// (<base>.proof and <base>.<label>.proof).
func (f fileStore) Proofs(ctx context.Context) (map[string][]byte, error) {
	es, err := f.s.List(ctx, host.Query{})
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, e := range es {
		base := strings.TrimSuffix(e.Path, ".cose")
		more, err := filepath.Glob(globEscape(base) + ".*.proof")
		if err != nil {
			return nil, err
		}
		for _, p := range append([]string{base + ".proof"}, more...) {
			b, err := boundedfile.Read(p, tlog.MaxProofSize)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, err
			}
			out[filepath.Base(p)] = b
		}
	}
	return out, nil
}

func mustJSON(v any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(err) // the state is maps, strings, numbers and times
	}
	return b
}

// writeAuditText prints the checkpoint line, then the chain audit as
// verify --chain does.
func writeAuditText(a *app, res *logmon.Result) error {
	if cp := res.Checkpoint; cp != nil {
		line := fmt.Sprintf("CHECKPOINT %s size %d (was %d) root %s", printable(cp.Origin), cp.Size, cp.OldSize, cp.Root)
		if len(cp.Witnesses) > 0 {
			line += " witnesses " + printable(strings.Join(cp.Witnesses, ","))
		}
		if _, err := fmt.Fprintln(a.stdout, line); err != nil {
			return err
		}
	}
	return writeChainText(a.stdout, &policy.ChainAudit{Verdict: res.Verdict, VMs: res.VMs})
}
