// Command tlogcheck verifies an hvmon transparency log with torchwood, an
// implementation of the C2SP signed-note, tlog-checkpoint, tlog-cosignature,
// tlog-tiles and tlog-proof specifications that hvmon did not write. It
// uses only torchwood, golang.org/x/mod/sumdb (which torchwood builds on)
// and the standard library: no hvmon code.
//
// Usage:
//
//	tlogcheck -log DIR -log-key VKEY [-witness-key VKEY]... [-quorum N]
//	          [-old CHECKPOINT] [-url URL] REPORT...
//
// DIR is the log's tlog-tiles directory (DIR/checkpoint, DIR/tile/...), as
// hvmon logd's POSIX storage writes it. VKEY flags take a verifier key or a
// file holding one. Each REPORT (NAME.cose) has its tlog-proof at
// NAME.proof. tlogcheck checks, one line each:
//
//   - checkpoint: DIR/checkpoint satisfies the policy — the log's own
//     signature (origin = key name) and a quorum (-quorum, default all) of
//     the -witness-key cosignatures;
//   - proof NAME: NAME.proof verifies for the report's bytes under the same
//     policy (torchwood.VerifyProof), and its checkpoint is consistent with
//     DIR/checkpoint;
//   - entries: every entry of the log, read from the tiles and
//     authenticated against the checkpoint (torchwood.Client.Entries);
//     each report is the entry at its proof's index, and the log holds
//     exactly the given reports;
//   - http: with -url, the log's server at URL serves the same checkpoint,
//     and every entry read over HTTP (torchwood.TileFetcher) authenticates
//     against it and is the same;
//   - consistency: with -old, the old checkpoint satisfies the policy and
//     DIR/checkpoint's tree extends it (tlog.ProveTree over the tiles,
//     tlog.CheckTree);
//   - negative ...: tampered inputs are refused — a flipped bit in an
//     inclusion path, a flipped bit in the log's signature, a proof checked
//     against another report, a checkpoint stripped of its witness
//     cosignatures, a consistency proof checked against another old root.
//
// It exits 0 when every check passes, 1 when one fails and 2 on bad usage
// or unreadable inputs.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// maxFile bounds every file tlogcheck reads. Proofs and checkpoints are a
// few KiB, reports at most 64 KiB.
const maxFile = 1 << 20

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tlogcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		logDir, logKey, oldPath, url string
		witnessKeys                  multiFlag
		quorum                       = -1
	)
	fs.StringVar(&logDir, "log", "", "the log's tlog-tiles `DIR`")
	fs.StringVar(&logKey, "log-key", "", "the log's verifier key, or a `FILE` holding it")
	fs.Var(&witnessKeys, "witness-key", "a witness's verifier key or a `FILE` holding it (repeatable)")
	fs.IntVar(&quorum, "quorum", -1, "how many witnesses must cosign (default: all given)")
	fs.StringVar(&oldPath, "old", "", "an earlier signed checkpoint `FILE` of the same log")
	fs.StringVar(&url, "url", "", "the log server's `URL`, to read the log over HTTP too")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if logDir == "" || logKey == "" || fs.NArg() == 0 {
		fmt.Fprintln(stderr, "usage: tlogcheck -log DIR -log-key VKEY [-witness-key VKEY]... [-quorum N] [-old CHECKPOINT] [-url URL] REPORT...")
		return 2
	}
	if quorum < 0 {
		quorum = len(witnessKeys)
	}
	c, err := newChecker(logDir, logKey, witnessKeys, quorum, fs.Args())
	if err != nil {
		fmt.Fprintln(stderr, "tlogcheck:", err)
		return 2
	}
	c.out = stdout
	c.run(context.Background(), oldPath, url)
	if c.failed > 0 {
		fmt.Fprintf(stdout, "tlogcheck: FAILED: %d of %d checks failed\n", c.failed, c.passed+c.failed)
		return 1
	}
	fmt.Fprintf(stdout, "tlogcheck: all %d checks passed\n", c.passed)
	return 0
}

// report is one report file and its proof.
type report struct {
	name         string // file name without .cose
	entry, proof []byte
}

type checker struct {
	dir       string
	policy    torchwood.Policy
	policyTxt string
	quorum    int
	reports   []report
	tiles     *torchwood.TileFS

	out            io.Writer
	passed, failed int
}

func newChecker(dir, logKey string, witnessKeys []string, quorum int, reportPaths []string) (*checker, error) {
	if quorum > len(witnessKeys) {
		return nil, fmt.Errorf("-quorum %d is more than the %d witness keys given", quorum, len(witnessKeys))
	}
	lk, err := readKey(logKey)
	if err != nil {
		return nil, err
	}
	// The policy in torchwood's text format (the Sigsum-style policy that
	// Tessera's witness policies also use): the log's key, which must have
	// signed and whose name must be the origin, and a group of witnesses of
	// which quorum must have cosigned.
	var p strings.Builder
	fmt.Fprintf(&p, "log %s\n", lk)
	names := make([]string, len(witnessKeys))
	for i, w := range witnessKeys {
		wk, err := readKey(w)
		if err != nil {
			return nil, err
		}
		names[i] = "w" + strconv.Itoa(i+1)
		fmt.Fprintf(&p, "witness %s %s\n", names[i], wk)
	}
	if quorum > 0 {
		fmt.Fprintf(&p, "group witnesses %d %s\nquorum witnesses\n", quorum, strings.Join(names, " "))
	} else {
		fmt.Fprintf(&p, "quorum none\n")
	}
	policy, err := torchwood.ParsePolicy([]byte(p.String()))
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	tiles, err := torchwood.NewTileFS(os.DirFS(dir))
	if err != nil {
		return nil, err
	}
	c := &checker{dir: dir, policy: policy, quorum: quorum, tiles: tiles}
	for _, rp := range reportPaths {
		base, ok := strings.CutSuffix(rp, ".cose")
		if !ok {
			return nil, fmt.Errorf("%s: a report file's name ends in .cose", rp)
		}
		r := report{name: filepath.Base(base)}
		if r.entry, err = readFile(rp); err != nil {
			return nil, err
		}
		if r.proof, err = readFile(base + ".proof"); err != nil {
			return nil, err
		}
		c.reports = append(c.reports, r)
	}
	c.policyTxt = fmt.Sprintf("log key + %d of %d witnesses", quorum, len(witnessKeys))
	return c, nil
}

func (c *checker) ok(check, format string, a ...any) {
	c.passed++
	fmt.Fprintf(c.out, "ok    %s: %s\n", check, fmt.Sprintf(format, a...))
}

func (c *checker) fail(check string, err error) {
	c.failed++
	fmt.Fprintf(c.out, "FAIL  %s: %v\n", check, err)
}

func (c *checker) run(ctx context.Context, oldPath, url string) {
	signed, err := readFile(filepath.Join(c.dir, "checkpoint"))
	if err != nil {
		c.fail("checkpoint", err)
		return
	}
	cp, n, err := torchwood.VerifyCheckpoint(signed, c.policy)
	if err != nil {
		c.fail("checkpoint", err)
		return
	}
	c.ok("checkpoint", "origin %s, size %d, root %s: %d signature(s) verified under the policy (%s)",
		cp.Origin, cp.N, cp.Hash, len(n.Sigs), c.policyTxt)
	tree := tlog.Tree{N: cp.N, Hash: cp.Hash}

	indexes := make([]int64, len(c.reports))
	for i, r := range c.reports {
		indexes[i] = c.checkProof(ctx, tree, r)
	}
	entries := c.checkEntries(ctx, tree, indexes)
	if url != "" {
		c.checkHTTP(ctx, url, signed, entries)
	}
	if oldPath != "" {
		c.checkConsistency(ctx, tree, oldPath)
	}
	c.negatives()
}

// checkProof verifies r's proof and that the checkpoint it carries is
// consistent with tree. It returns the proof's index, or -1.
func (c *checker) checkProof(ctx context.Context, tree tlog.Tree, r report) int64 {
	check := "proof " + r.name
	if err := torchwood.VerifyProof(c.policy, tlog.RecordHash(r.entry), r.proof); err != nil {
		c.fail(check, err)
		return -1
	}
	pf, err := splitProof(r.proof)
	if err != nil {
		c.fail(check, err)
		return -1
	}
	pcp, _, err := torchwood.VerifyCheckpoint(pf.checkpoint, c.policy)
	if err != nil {
		c.fail(check, err)
		return -1
	}
	old := tlog.Tree{N: pcp.N, Hash: pcp.Hash}
	if err := c.consistent(ctx, old, tree); err != nil {
		c.fail(check, fmt.Errorf("its checkpoint (size %d) is not consistent with the log's (size %d): %w", old.N, tree.N, err))
		return -1
	}
	c.ok(check, "index %d, %d-hash path, in a witnessed checkpoint of size %d consistent with the log's", pf.index, len(pf.path), pcp.N)
	return pf.index
}

// readEntries reads every entry of tree through tr with a torchwood
// Client, which authenticates each against the tree.
func readEntries(ctx context.Context, tr torchwood.TileReader, tree tlog.Tree) ([][]byte, error) {
	client, err := torchwood.NewClient(tr)
	if err != nil {
		return nil, err
	}
	entries := make([][]byte, 0, tree.N)
	// Entries may stop before a trailing partial bundle; resuming with the
	// same tree reads the rest.
	for len(entries) < int(tree.N) {
		before := len(entries)
		for i, e := range client.Entries(ctx, tree, int64(len(entries))) {
			if i != int64(len(entries)) {
				return nil, fmt.Errorf("entry %d came when %d was expected", i, len(entries))
			}
			entries = append(entries, bytes.Clone(e))
		}
		if err := client.Err(); err != nil {
			return nil, err
		}
		if len(entries) == before {
			break
		}
	}
	if len(entries) != int(tree.N) {
		return nil, fmt.Errorf("read %d entries, the checkpoint says %d", len(entries), tree.N)
	}
	return entries, nil
}

// checkEntries reads every entry of tree from the tiles and matches them
// against the reports and their proofs' indexes. It returns the entries,
// or nil when the check failed.
func (c *checker) checkEntries(ctx context.Context, tree tlog.Tree, indexes []int64) [][]byte {
	const check = "entries"
	entries, err := readEntries(ctx, c.tiles, tree)
	if err != nil {
		c.fail(check, err)
		return nil
	}
	given := make(map[string]string)
	for i, r := range c.reports {
		given[string(r.entry)] = r.name
		if idx := indexes[i]; idx >= int64(len(entries)) || idx >= 0 && !bytes.Equal(entries[idx], r.entry) {
			c.fail(check, fmt.Errorf("entry %d, the index of %s.proof, is not that report", idx, r.name))
			return nil
		}
	}
	seen := make(map[string]int64)
	for i, e := range entries {
		if _, ok := given[string(e)]; !ok {
			c.fail(check, fmt.Errorf("entry %d (%d bytes) is none of the given reports", i, len(e)))
			return nil
		}
		if j, dup := seen[string(e)]; dup {
			c.fail(check, fmt.Errorf("entries %d and %d are the same report", j, i))
			return nil
		}
		seen[string(e)] = int64(i)
	}
	if len(seen) != len(given) {
		for _, r := range c.reports {
			if _, ok := seen[string(r.entry)]; !ok {
				c.fail(check, fmt.Errorf("report %s is not in the log", r.name))
				return nil
			}
		}
	}
	c.ok(check, "%d entries read from the tiles and authenticated against the checkpoint; they are exactly the %d distinct reports given, each at its proof's index",
		len(entries), len(given))
	return entries
}

// checkHTTP reads the log again from its server, with torchwood's
// TileFetcher: the same checkpoint, the same entries.
func (c *checker) checkHTTP(ctx context.Context, url string, signed []byte, entries [][]byte) {
	const check = "http"
	tf, err := torchwood.NewTileFetcher(url)
	if err != nil {
		c.fail(check, err)
		return
	}
	got, err := tf.ReadEndpoint(ctx, "checkpoint")
	if err != nil {
		c.fail(check, err)
		return
	}
	cp, _, err := torchwood.VerifyCheckpoint(got, c.policy)
	if err != nil {
		c.fail(check, fmt.Errorf("%s/checkpoint: %w", url, err))
		return
	}
	if !bytes.Equal(got, signed) {
		c.fail(check, fmt.Errorf("%s/checkpoint (size %d) differs from the directory's", url, cp.N))
		return
	}
	remote, err := readEntries(ctx, tf, tlog.Tree{N: cp.N, Hash: cp.Hash})
	if err != nil {
		c.fail(check, fmt.Errorf("%s: %w", url, err))
		return
	}
	for i := range remote {
		if entries != nil && !bytes.Equal(remote[i], entries[i]) {
			c.fail(check, fmt.Errorf("%s: entry %d differs from the directory's", url, i))
			return
		}
	}
	c.ok(check, "%s serves the same checkpoint; %d entries read over HTTP, authenticated, the same as the directory's", url, len(remote))
}

func (c *checker) checkConsistency(ctx context.Context, tree tlog.Tree, oldPath string) {
	const check = "consistency"
	signed, err := readFile(oldPath)
	if err != nil {
		c.fail(check, err)
		return
	}
	ocp, _, err := torchwood.VerifyCheckpoint(signed, c.policy)
	if err != nil {
		c.fail(check, fmt.Errorf("%s: %w", oldPath, err))
		return
	}
	old := tlog.Tree{N: ocp.N, Hash: ocp.Hash}
	if old.N > tree.N {
		c.fail(check, fmt.Errorf("old checkpoint size %d is larger than the log's %d (a rollback)", old.N, tree.N))
		return
	}
	if err := c.consistent(ctx, old, tree); err != nil {
		c.fail(check, err)
		return
	}
	c.ok(check, "old checkpoint (size %d, witnessed) is a prefix of the log's (size %d)", old.N, tree.N)

	if old.N > 0 && old.N < tree.N {
		bad := old
		bad.Hash[0] ^= 1
		if err := c.consistent(ctx, bad, tree); err == nil {
			c.fail("negative consistency", errors.New("a consistency proof was accepted for a wrong old root"))
		} else {
			c.ok("negative consistency", "another old root of size %d refused: %v", old.N, err)
		}
	}
}

// consistent checks that tree extends old, with a proof built from the
// log's tiles, each tile authenticated against tree.
func (c *checker) consistent(ctx context.Context, old, tree tlog.Tree) error {
	if old.N == tree.N {
		if old.Hash != tree.Hash {
			return fmt.Errorf("two roots for size %d (a fork)", old.N)
		}
		return nil
	}
	if old.N == 0 {
		return nil
	}
	hr := torchwood.TileHashReaderWithContext(ctx, tree, c.tiles)
	p, err := tlog.ProveTree(tree.N, old.N, hr)
	if err != nil {
		return fmt.Errorf("building the consistency proof: %w", err)
	}
	return tlog.CheckTree(p, tree.N, tree.Hash, old.N, old.Hash)
}

// negatives checks that torchwood refuses tampered proofs.
func (c *checker) negatives() {
	if len(c.reports) == 0 {
		return
	}
	r := c.reports[0]
	pf, err := splitProof(r.proof)
	if err != nil {
		c.fail("negative", err)
		return
	}
	var recErr *torchwood.VerifyRecordError

	// A flipped bit in the inclusion path, or in the index when the tree
	// has a single entry and the path is empty.
	bad := *pf
	what := "a flipped bit in the inclusion path"
	if len(pf.path) > 0 {
		bad.path = append([]tlog.Hash(nil), pf.path...)
		bad.path[0][7] ^= 0x10
	} else {
		bad.index++
		what = "a changed index"
	}
	err = torchwood.VerifyProof(c.policy, tlog.RecordHash(r.entry), bad.marshal())
	c.expect("negative path", what, err, errors.As(err, &recErr))

	// A flipped bit in the log's signature.
	bad = *pf
	bad.checkpoint = flipSignature(pf.checkpoint)
	err = torchwood.VerifyProof(c.policy, tlog.RecordHash(r.entry), bad.marshal())
	var sigErr *note.InvalidSignatureError
	c.expect("negative signature", "a flipped bit in the log's signature", err, errors.As(err, &sigErr))

	// The proof of one report checked against another.
	if len(c.reports) > 1 {
		other := c.reports[1]
		err = torchwood.VerifyProof(c.policy, tlog.RecordHash(other.entry), r.proof)
		c.expect("negative other-report", fmt.Sprintf("%s.proof checked against %s", r.name, other.name), err, errors.As(err, &recErr))
	}

	// The checkpoint without its witness cosignatures.
	if c.quorum > 0 {
		bad = *pf
		bad.checkpoint = onlyLogSignature(pf.checkpoint)
		err = torchwood.VerifyProof(c.policy, tlog.RecordHash(r.entry), bad.marshal())
		var unverified *note.UnverifiedNoteError
		c.expect("negative witnesses", "the checkpoint stripped of its witness cosignatures", err, errors.As(err, &unverified))
	}
}

// expect records a negative check: err must be non-nil and of the wanted
// kind.
func (c *checker) expect(check, what string, err error, wantKind bool) {
	switch {
	case err == nil:
		c.fail(check, fmt.Errorf("%s was accepted", what))
	case !wantKind:
		c.fail(check, fmt.Errorf("%s was refused for another reason than expected: %v", what, err))
	default:
		c.ok(check, "%s refused: %v", what, err)
	}
}

// proofFile is a tlog-proof@v1 file taken apart, only to make tampered
// copies: every verification goes through torchwood.VerifyProof.
type proofFile struct {
	index      int64
	path       []tlog.Hash
	checkpoint []byte
}

func splitProof(b []byte) (*proofFile, error) {
	head, cp, ok := bytes.Cut(b, []byte("\n\n"))
	if !ok {
		return nil, errors.New("proof: no empty line before the checkpoint")
	}
	lines := strings.Split(string(head), "\n")
	if len(lines) < 2 || lines[0] != "c2sp.org/tlog-proof@v1" || !strings.HasPrefix(lines[1], "index ") {
		return nil, errors.New("proof: not a tlog-proof@v1 file")
	}
	idx, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "index "), 10, 64)
	if err != nil || idx < 0 {
		return nil, fmt.Errorf("proof: bad index line %q", lines[1])
	}
	p := &proofFile{index: idx, checkpoint: cp}
	for _, l := range lines[2:] {
		h, err := base64.StdEncoding.DecodeString(l)
		if err != nil || len(h) != tlog.HashSize {
			return nil, fmt.Errorf("proof: bad hash line %q", l)
		}
		p.path = append(p.path, tlog.Hash(h))
	}
	return p, nil
}

func (p *proofFile) marshal() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "c2sp.org/tlog-proof@v1\nindex %d\n", p.index)
	for _, h := range p.path {
		fmt.Fprintf(&b, "%s\n", base64.StdEncoding.EncodeToString(h[:]))
	}
	b.WriteString("\n")
	b.Write(p.checkpoint)
	return b.Bytes()
}

// logSignature splits a signed note into its text (with the empty line),
// the signature lines by its origin's key (the log's own) and the others
// (witnesses').
func logSignature(signed []byte) (text []byte, log, others []string) {
	i := bytes.LastIndex(signed, []byte("\n\n"))
	if i < 0 {
		return signed, nil, nil
	}
	text = signed[:i+2]
	origin, _, _ := strings.Cut(string(text), "\n")
	for _, l := range strings.SplitAfter(string(signed[i+2:]), "\n") {
		if l == "" {
			continue
		}
		if strings.HasPrefix(l, "\u2014 "+origin+" ") {
			log = append(log, l)
		} else {
			others = append(others, l)
		}
	}
	return text, log, others
}

// flipSignature flips one bit in the last byte of the log's signature.
func flipSignature(signed []byte) []byte {
	text, log, others := logSignature(signed)
	if len(log) == 0 {
		return signed
	}
	line := strings.TrimSuffix(log[0], "\n")
	sp := strings.LastIndex(line, " ")
	raw, err := base64.StdEncoding.DecodeString(line[sp+1:])
	if err != nil || len(raw) < 5 {
		return signed
	}
	raw[len(raw)-1] ^= 1
	log[0] = line[:sp+1] + base64.StdEncoding.EncodeToString(raw) + "\n"
	return append(bytes.Clone(text), strings.Join(append(log, others...), "")...)
}

// onlyLogSignature drops the witnesses' cosignature lines.
func onlyLogSignature(signed []byte) []byte {
	text, log, _ := logSignature(signed)
	return append(bytes.Clone(text), strings.Join(log, "")...)
}

// readKey returns a verifier key given as text or as a file holding one.
func readKey(v string) (string, error) {
	if _, err := os.Stat(v); err != nil {
		return v, nil // not a file: the key itself
	}
	b, err := readFile(v)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxFile)
	}
	return b, nil
}
