package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/backend"
	"hvmon.dev/hvmon/internal/keyfile"
)

// Bounds of attest --ttl. The verifier's default --max-lifetime is 24h, so
// a longer TTL would only make reports nobody accepts.
const (
	minTTL = time.Second
	maxTTL = 24 * time.Hour
)

func (a *app) attestCmd() *cobra.Command {
	var (
		keyPath, out, workload, event, nonceHex, prevHex, name string
		regions                                                []string
		ttl                                                    time.Duration
		seq                                                    uint64
		unsafeKeyPerms                                         bool
	)
	var events []string
	for _, e := range attest.Events() {
		events = append(events, string(e))
	}
	cmd := &cobra.Command{
		Use:   "attest --key KEY --region ID=FILE[:OFFSET:SIZE] ... -o OUT",
		Short: "Measure files and sign a report",
		Long: `Measure regions and sign one report over them.

Each --region names a region and the file that holds its bytes: ID=FILE
measures the whole file, ID=FILE:OFFSET:SIZE measures SIZE bytes from OFFSET
(decimal or 0x-prefixed hex; both or neither). A range past the end of the
file is an error. Region ids are 1 to 64 characters of [A-Za-z0-9._:/-],
starting with a letter or digit.

The report is written atomically to OUT, or to stdout with -o -. It is
valid from now until now + --ttl and answers --nonce (32 random bytes when
not given). --seq and --prev chain reports: give the sequence number and
the hash of the signer's previous report for this workload.

The private key file must not be readable by group or others; fix it with
chmod 600 rather than --unsafe-key-permissions.`,
		Example: `  hvmon attest --key attester.key --region weights=model.bin -o report.cose
  hvmon attest --key attester.key --region head=model.bin:0:0x1000 \
      --workload llm-1 --event boot --nonce "$NONCE" -o - > report.cose`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := attest.Request{Workload: workload, Event: attest.Event(event), TTL: ttl, Seq: seq}
			if !req.Event.Valid() {
				return configErr(fmt.Errorf("--event %q: want one of %s", event, strings.Join(events, ", ")))
			}
			if err := attest.CheckVMName(workload); err != nil {
				return configErr(fmt.Errorf("--workload: %w", err))
			}
			if err := checkDuration("ttl", ttl, minTTL, maxTTL); err != nil {
				return err
			}
			if cmd.Flags().Changed("nonce") {
				n, err := parseHex("nonce", nonceHex)
				if err != nil {
					return err
				}
				req.Nonce = n
			}
			if cmd.Flags().Changed("prev") {
				p, err := parseDigest("prev", prevHex)
				if err != nil {
					return err
				}
				req.Prev = &p
			}
			frs := make([]backend.FileRegion, 0, len(regions))
			for _, r := range regions {
				fr, err := parseRegion(r)
				if err != nil {
					return err
				}
				// The report records the file as the region's source;
				// a relative path would mean nothing to its reader.
				if fr.Path, err = filepath.Abs(fr.Path); err != nil {
					return configErr(err)
				}
				frs = append(frs, fr)
			}
			b, err := backend.NewFile(frs)
			if err != nil {
				return configErr(err)
			}
			key, err := keyfile.LoadPrivate(keyPath, keyfile.LoadOptions{AllowInsecurePermissionsUnsafe: unsafeKeyPerms})
			if err != nil {
				return configErr(fmt.Errorf("--key: %w", err))
			}
			if unsafeKeyPerms {
				a.log.Warn("private key permissions not checked (--unsafe-key-permissions)", "key", keyPath)
			}
			at := &attest.Attester{Signer: key, Name: name}
			signed, err := at.Attest(cmd.Context(), b, req)
			if err != nil {
				return configErr(fmt.Errorf("attest: %w", err))
			}
			if err := a.writeOutput(out, signed.Bytes); err != nil {
				return err
			}
			a.log.Info("report signed", "out", displayName(out), "hash", signed.Hash.String(),
				"key_id", key.KeyID().String(), "workload", workload, "event", event,
				"regions", len(signed.Report.Claims), "expires", signed.Report.ExpiresAt.Format(time.RFC3339))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&keyPath, "key", "", "private `KEY` file (PEM PKCS#8, mode 0600) (required)")
	f.StringArrayVar(&regions, "region", nil, "region to measure, `ID=FILE[:OFFSET:SIZE]`; repeat for more (required)")
	f.StringVar(&workload, "workload", "default", "`WORKLOAD` (VM) name recorded in the report: "+attest.VMNameRule)
	f.StringVar(&event, "event", string(attest.EventOnDemand), "lifecycle `EVENT` the report answers: "+strings.Join(events, ", "))
	f.DurationVar(&ttl, "ttl", attest.DefaultTTL, fmt.Sprintf("report lifetime, %s to %s", minTTL, maxTTL))
	f.StringVar(&nonceHex, "nonce", "", fmt.Sprintf("`HEX` nonce to answer, 8 to 64 bytes (default %d random bytes)", attest.NonceSize))
	f.Uint64Var(&seq, "seq", 0, "sequence number `N` of this report in the signer's chain")
	f.StringVar(&prevHex, "prev", "", "`HEX` hash (64 digits) of the signer's previous report for this workload")
	f.StringVar(&name, "name", "", "attester `NAME` recorded next to the key id (not authenticated beyond the signature)")
	f.BoolVar(&unsafeKeyPerms, "unsafe-key-permissions", false, "accept a private key file that group or others can access")
	f.StringVarP(&out, "out", "o", "", "output file `OUT`, or \"-\" for stdout (required)")
	for _, req := range []string{"key", "region", "out"} {
		cmd.MarkFlagRequired(req)
	}
	return cmd
}
