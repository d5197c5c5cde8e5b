package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"hvmon.dev/hvmon/internal/boundedfile"
	"hvmon.dev/hvmon/tlog"
)

// logProofHelp documents verify's log flags in its help.
const logProofHelp = `--log-key VKEY adds a log step after the report's checks (for a report
that verified; an invalid one keeps its own exit code): the report must
be an entry of the transparency log whose ML-DSA-44 verifier key is VKEY
(the key text, or a file holding it), proven by a tlog-proof file
(docs/FORMAT.md §15). The proof is --proof FILE, else <REPORT without
.cose>.proof, else the single <REPORT without .cose>.*.proof whose
checkpoint names the key's origin. --witness-key VKEY (repeatable; Ed25519
0x04 or ML-DSA-44 0x06 cosigners) and --quorum N (default: all of them) say
which witnesses must have cosigned the proof's checkpoint. Without
--require-log a missing or failing proof is a warning and the exit code is
the report's; with --require-log it fails the verification (exit 3), a
malformed proof included. With --chain, each report's proof is checked the
same way. --proof, --require-log, --witness-key and --quorum need --log-key.`

// logFlags are the flags that check a report's inclusion in a log.
type logFlags struct {
	logKey      string
	proof       string
	requireLog  bool
	witnessKeys []string
	quorum      int
}

func (l *logFlags) register(f *pflag.FlagSet) {
	f.StringVar(&l.logKey, "log-key", "", "check the report's inclusion proof against the log with this verifier key `VKEY` (text or file)")
	f.StringVar(&l.proof, "proof", "", "the report's tlog-proof `FILE` (default: next to the report)")
	f.BoolVar(&l.requireLog, "require-log", false, "fail (exit 3) when the report's log proof is missing or does not verify")
	f.StringArrayVar(&l.witnessKeys, "witness-key", nil, "a witness verifier key `VKEY` (text or file) whose cosignature counts toward --quorum; repeatable")
	f.IntVar(&l.quorum, "quorum", 0, "how many --witness-key witnesses must cosign (`N`; 0: all of them)")
}

// policy builds the log policy from the flags, or returns nil when
// --log-key is not given. now, when not zero, is the verifier's clock.
//
// The policy checks cosignature times against the real clock, never
// against --at: a report verified as of its issue time was logged later,
// and its checkpoint is rightly dated after --at.
func (l *logFlags) policy(cmd *cobra.Command) (*tlog.Policy, error) {
	f := cmd.Flags()
	if l.logKey == "" {
		for _, name := range []string{"proof", "require-log", "witness-key", "quorum"} {
			if f.Changed(name) {
				return nil, configErr(fmt.Errorf("--%s needs --log-key", name))
			}
		}
		return nil, nil
	}
	return logPolicy(l.logKey, l.witnessKeys, l.quorum, time.Time{})
}

// logPolicy builds a log policy from verifier keys given as text or files.
func logPolicy(logKey string, witnessKeys []string, quorum int, now time.Time) (*tlog.Policy, error) {
	text, err := vkeyText(logKey)
	if err != nil {
		return nil, configErr(fmt.Errorf("--log-key: %w", err))
	}
	lv, err := tlog.LogVerifier(text)
	if err != nil {
		return nil, configErr(fmt.Errorf("--log-key: %w", err))
	}
	p := &tlog.Policy{Log: lv, Quorum: quorum}
	for _, w := range witnessKeys {
		text, err := vkeyText(w)
		if err != nil {
			return nil, configErr(fmt.Errorf("--witness-key: %w", err))
		}
		v, err := tlog.ParseVerifierKey(text)
		if err != nil {
			return nil, configErr(fmt.Errorf("--witness-key: %w", err))
		}
		for _, o := range append([]*tlog.Verifier{lv}, p.Witnesses...) {
			if o.Name() == v.Name() && o.KeyHash() == v.KeyHash() {
				return nil, configErr(fmt.Errorf("--witness-key %s+%08x: the key is given twice", v.Name(), v.KeyHash()))
			}
		}
		p.Witnesses = append(p.Witnesses, v)
	}
	if quorum < 0 || quorum > len(p.Witnesses) {
		return nil, configErr(fmt.Errorf("--quorum %d: want 0 to %d (the number of --witness-key)", quorum, len(p.Witnesses)))
	}
	if !now.IsZero() {
		p.Now = func() time.Time { return now }
	}
	return p, nil
}

// maxVKeyFile bounds a verifier key file: an ML-DSA-44 key is about 1,800
// bytes of text.
const maxVKeyFile = 8 << 10

// vkeyText returns a verifier key given as its text or as a file holding
// it. A path that exists is read as a file (a key's base64 may hold a
// slash, so the shape alone cannot tell); anything else must look like a
// key, NAME+HEX+BASE64.
func vkeyText(s string) (string, error) {
	if _, err := os.Stat(s); err == nil {
		b, err := boundedfile.Read(s, maxVKeyFile)
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(b)), nil
	}
	if strings.Count(s, "+") >= 2 {
		return strings.TrimSpace(s), nil
	}
	return "", fmt.Errorf("%q is neither a verifier key nor a readable file", s)
}

// errNotLogged: a report has no proof file for the log.
var errNotLogged = errors.New("no log proof found")

// logError marks a failed log step under --require-log: whatever tlog
// class it wraps (a malformed proof included), the report is not shown to
// be logged, a trust failure (exit 3).
type logError struct{ err error }

func (e *logError) Error() string { return e.err.Error() }
func (e *logError) Unwrap() error { return e.err }

// logJSON is the "log" object of verify's JSON output.
type logJSON struct {
	// Status is "logged", "missing" (no proof file) or "failed".
	Status    string   `json:"status"`
	Proof     string   `json:"proof,omitempty"`
	Origin    string   `json:"origin,omitempty"`
	Index     *uint64  `json:"index,omitempty"`
	TreeSize  *uint64  `json:"tree_size,omitempty"`
	Witnesses []string `json:"witnesses,omitempty"`
	Quorum    string   `json:"quorum,omitempty"`
	Error     string   `json:"error,omitempty"`
}

// proofPath finds a report's proof file: the explicit one, else
// <base>.proof, else the single <base>.*.proof whose checkpoint has the
// log key's origin. It returns errNotLogged when there is none.
func proofPath(report, explicit string, p *tlog.Policy) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	if report == "-" {
		return "", fmt.Errorf("%w: the report came from stdin; give --proof", errNotLogged)
	}
	base := strings.TrimSuffix(report, ".cose")
	if st, err := os.Stat(base + ".proof"); err == nil && st.Mode().IsRegular() {
		return base + ".proof", nil
	}
	cands, err := filepath.Glob(globEscape(base) + ".*.proof")
	if err != nil {
		return "", err
	}
	var match []string
	for _, c := range cands {
		b, err := boundedfile.Read(c, tlog.MaxProofSize)
		if err != nil {
			continue
		}
		pr, err := tlog.ParseProof(b)
		if err != nil {
			continue
		}
		if origin, _, ok := bytes.Cut(pr.Checkpoint, []byte("\n")); ok && string(origin) == p.Log.Name() {
			match = append(match, c)
		}
	}
	switch len(match) {
	case 0:
		return "", fmt.Errorf("%w: neither %s.proof nor a %s.*.proof of log %s", errNotLogged, base, base, p.Log.Name())
	case 1:
		return match[0], nil
	default:
		return "", fmt.Errorf("%w: %d proofs of log %s (%s); choose one with --proof", errNotLogged, len(match), p.Log.Name(), strings.Join(match, ", "))
	}
}

// globEscape escapes the glob metacharacters of a path.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// checkLogProof checks that data is an entry of p's log by its proof file.
// The error, if any, is the log step's failure (errNotLogged, a tlog
// sentinel, or an I/O error).
func checkLogProof(p *tlog.Policy, report, explicit string, data []byte) (*logJSON, error) {
	lj := &logJSON{Status: "failed", Origin: p.Log.Name()}
	path, err := proofPath(report, explicit, p)
	if errors.Is(err, errNotLogged) {
		lj.Status = "missing"
	}
	if err != nil {
		lj.Error = err.Error()
		return lj, err
	}
	lj.Proof = path
	b, err := boundedfile.Read(path, tlog.MaxProofSize)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			lj.Status = "missing"
			err = fmt.Errorf("%w: %v", errNotLogged, err)
		}
		lj.Error = err.Error()
		return lj, err
	}
	cp, index, err := tlog.VerifyProof(*p, data, b)
	if err != nil {
		err = fmt.Errorf("%s: %w", path, err)
		lj.Error = err.Error()
		return lj, err
	}
	size := cp.Size
	lj.Status, lj.Index, lj.TreeSize, lj.Witnesses = "logged", &index, &size, cp.Witnesses
	if n := len(p.Witnesses); n > 0 {
		lj.Quorum = fmt.Sprintf("%d/%d", len(cp.Witnesses), n)
	}
	return lj, nil
}

// logLine is the text line of the log step.
func logLine(lj *logJSON, required bool) string {
	switch {
	case lj.Status == "logged":
		line := fmt.Sprintf("log  %s  ok  index %d of tree size %d", printable(lj.Origin), *lj.Index, *lj.TreeSize)
		if lj.Quorum != "" {
			line += fmt.Sprintf(", witnesses %s (%s)", lj.Quorum, printable(strings.Join(lj.Witnesses, ", ")))
		}
		return line
	case required:
		return fmt.Sprintf("log  %s  fail  %s", printable(lj.Origin), printable(lj.Error))
	default:
		return fmt.Sprintf("log  %s  warn  %s", printable(lj.Origin), printable(lj.Error))
	}
}

func writeLogLine(w io.Writer, lj *logJSON, required bool) error {
	_, err := fmt.Fprintln(w, logLine(lj, required))
	return err
}
