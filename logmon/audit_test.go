package logmon

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/internal/keyfile"
	"hvmon.dev/hvmon/policy"
	"hvmon.dev/hvmon/tlog"
	"hvmon.dev/hvmon/tlog/tlogclient"
	"hvmon.dev/hvmon/tlog/tlogtest"
)

const vectors = "../policy/testdata/chain"

// signedAt is the time of every test checkpoint; the clean vector's
// reports were issued before it.
var signedAt = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// vector returns a chain vector's reports in file name order.
func vector(t *testing.T, name string) (names []string, reports [][]byte) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(vectors, name, "*.cose"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no reports in %s (%v)", name, err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		names, reports = append(names, filepath.Base(p)), append(reports, b)
	}
	return names, reports
}

func verifyOptions(t *testing.T) attest.VerifyOptions {
	t.Helper()
	var o attest.VerifyOptions
	for _, k := range []string{"host.pub", "other.pub"} {
		pub, err := keyfile.LoadPublic(filepath.Join("../testdata/keys", k))
		if err != nil {
			t.Fatal(err)
		}
		o.TrustedKeys = append(o.TrustedKeys, pub)
	}
	return o
}

// testLog is a log key and a directory the log is published to.
type testLog struct {
	key *tlog.PrivateKey
	dir string
}

func newLog(t *testing.T) *testLog {
	t.Helper()
	k, err := tlog.NewKeyFromSeed("log.example/mon", sha256.Sum256([]byte("monitor test log")))
	if err != nil {
		t.Fatal(err)
	}
	return &testLog{key: k, dir: t.TempDir()}
}

// publish writes a log of entries (a history of its own: the same key
// may sign several) to the directory, checkpoint of size n (all when n <
// 0).
func (l *testLog) publish(t *testing.T, entries [][]byte, n int) {
	t.Helper()
	lg := tlogtest.New(l.key, tlog.SignerOptions{Now: func() time.Time { return signedAt }, Deterministic: true})
	if _, err := lg.Append(entries...); err != nil {
		t.Fatal(err)
	}
	size := uint64(len(entries))
	if n >= 0 {
		size = uint64(n)
	}
	cp, err := lg.Checkpoint(size)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(l.dir); err != nil {
		t.Fatal(err)
	}
	if err := tlogclient.WriteDir(context.Background(), lg, cp, size, l.dir); err != nil {
		t.Fatal(err)
	}
}

func (l *testLog) options(t *testing.T) Options {
	return Options{Reader: tlogclient.DirReader{Root: l.dir}, Policy: tlog.Policy{Log: l.key.Verifier(), Now: func() time.Time { return signedAt }},
		Verify: verifyOptions(t)}
}

// memStore is a report store in memory.
type memStore [][]byte

func (memStore) Name() string                                { return "mem" }
func (s memStore) Reports(context.Context) ([][]byte, error) { return s, nil }

// has reports whether res has a finding of check and reason (about
// subject, when not empty).
func has(res *Result, check, reason, subject string) bool {
	return slices.ContainsFunc(res.Findings, func(f policy.Finding) bool {
		return f.Check == check && f.Reason == reason && (subject == "" || f.Subject == subject)
	})
}

func TestAuditClean(t *testing.T) {
	_, reports := vector(t, "clean")
	l := newLog(t)
	l.publish(t, reports[:2], -1)
	res, err := Audit(context.Background(), &State{}, l.options(t))
	if err != nil || res.Failed != nil {
		t.Fatalf("first run: %v %v %+v", err, res.Failed, res.Findings)
	}
	if res.Status != policy.Affirming || res.State == nil || res.Checkpoint.Size != 2 {
		t.Fatalf("first run: %s %+v", res.Status, res.Findings)
	}
	// The state survives a JSON round trip.
	b, err := json.Marshal(res.State)
	if err != nil {
		t.Fatal(err)
	}
	st, err := ParseState(b)
	if err != nil {
		t.Fatal(err)
	}
	l.publish(t, reports, -1)
	o := l.options(t)
	o.Stores = []Store{memStore(reports)}
	res, err = Audit(context.Background(), st, o)
	if err != nil || res.Failed != nil {
		t.Fatalf("second run: %v %v", err, res.Failed)
	}
	if res.Status != policy.Affirming || !has(res, CheckConsistency, ReasonConsistent, "") || len(res.VMs) != 1 || len(res.VMs[0].Timeline) != len(reports) {
		t.Errorf("second run: %s %+v %+v", res.Status, res.Findings, res.VMs)
	}
	if n := len(res.State.Logged); n != len(reports) {
		t.Errorf("state holds %d reports, want %d", n, len(reports))
	}
}

// run audits the log from a state that saw the first n entries of
// reports.
func stateAfter(t *testing.T, l *testLog, reports [][]byte, n int) *State {
	t.Helper()
	l.publish(t, reports[:n], -1)
	res, err := Audit(context.Background(), &State{}, l.options(t))
	if err != nil {
		t.Fatal(err)
	}
	return res.State
}

func TestAuditForgedCheckpoint(t *testing.T) {
	_, reports := vector(t, "clean")
	l := newLog(t)
	st := stateAfter(t, l, reports, 4)
	saved, _ := json.Marshal(st)
	for _, c := range []struct {
		name    string
		entries [][]byte
		size    int
		reason  string
	}{
		{"rewritten history", append(slices.Clone(reports[:2]), reports[3:]...), -1, ReasonInconsistent},
		{"fork at the same size", append(slices.Clone(reports[:3]), reports[5]), -1, ReasonFork},
		{"rollback", reports, 3, ReasonRollback},
	} {
		l.publish(t, c.entries, c.size)
		res, err := Audit(context.Background(), st, l.options(t))
		if !errors.Is(err, ErrLog) || !errors.Is(err, attest.ErrTrust) {
			t.Errorf("%s: err %v, want ErrLog", c.name, err)
			continue
		}
		if res.State != nil || !has(res, CheckConsistency, c.reason, "") {
			t.Errorf("%s: %+v", c.name, res.Findings)
		}
		if now, _ := json.Marshal(st); string(now) != string(saved) {
			t.Errorf("%s: the previous state changed", c.name)
		}
	}
}

func TestAuditBadCheckpoint(t *testing.T) {
	_, reports := vector(t, "clean")
	l := newLog(t)
	l.publish(t, reports, -1)
	o := l.options(t)
	w, err := tlog.NewKeyFromSeed("witness.example", sha256.Sum256([]byte("w")))
	if err != nil {
		t.Fatal(err)
	}
	o.Policy.Witnesses = []*tlog.Verifier{w.Verifier()}
	res, err := Audit(context.Background(), &State{}, o)
	if !errors.Is(err, ErrLog) || !has(res, CheckCheckpoint, ReasonNoQuorum, "") || res.State != nil {
		t.Errorf("no witness: %v %+v", err, res)
	}
	other := newLog(t)
	other.key, _ = tlog.NewKeyFromSeed("log.example/mon", sha256.Sum256([]byte("another key")))
	other.dir = l.dir
	other.publish(t, reports, -1)
	res, err = Audit(context.Background(), &State{}, l.options(t))
	if !errors.Is(err, ErrLog) || !has(res, CheckCheckpoint, ReasonBadSignature, "") {
		t.Errorf("other key: %v %+v", err, res)
	}
}

func TestAuditWithheldReport(t *testing.T) {
	names, reports := vector(t, "clean")
	l := newLog(t)
	i := slices.Index(names, "02-hv-a-periodic.cose")
	l.publish(t, slices.Delete(slices.Clone(reports), i, i+1), -1)
	o := l.options(t)
	res, err := Audit(context.Background(), &State{}, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != policy.Contraindicated || !has(res, policy.CheckChainHost, policy.ReasonGap, "") {
		t.Errorf("withheld report: %s %+v", res.Status, res.Findings)
	}
	// The store still holds it: it is not logged.
	o.Stores = []Store{memStore(reports)}
	res, err = Audit(context.Background(), &State{}, o)
	if err != nil {
		t.Fatal(err)
	}
	if !has(res, CheckStore, ReasonNotLogged, "") {
		t.Errorf("store: %+v", res.Findings)
	}
	// Within the grace period it is pending.
	o.Grace = 100 * 365 * 24 * time.Hour
	res, err = Audit(context.Background(), &State{}, o)
	if err != nil {
		t.Fatal(err)
	}
	if !has(res, CheckStore, ReasonPending, "") || has(res, CheckStore, ReasonNotLogged, "") {
		t.Errorf("store within grace: %+v", res.Findings)
	}
}

func TestAuditDeletedFromStore(t *testing.T) {
	names, reports := vector(t, "clean")
	l := newLog(t)
	l.publish(t, reports, -1)
	i := slices.Index(names, "06-hv-b-periodic.cose")
	o := l.options(t)
	o.Stores = []Store{memStore(slices.Delete(slices.Clone(reports), i, i+1))}
	res, err := Audit(context.Background(), &State{}, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != policy.Contraindicated || !has(res, CheckStore, ReasonDeletedFromStore, entryName(uint64(i))) {
		t.Errorf("deleted: %s %+v", res.Status, res.Findings)
	}
}

func TestAuditSilentAndOddEntries(t *testing.T) {
	_, reports := vector(t, "clean")
	l := newLog(t)
	// Drop the shutdown: the VM is still running.
	entries := append(slices.Clone(reports[:len(reports)-1]), []byte("not a report"), reports[0])
	l.publish(t, entries, -1)
	o := l.options(t)
	o.MaxAge = func(string) time.Duration { return time.Hour }
	res, err := Audit(context.Background(), &State{}, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range [][2]string{{CheckSilence, ReasonSilent}, {CheckEntry, ReasonNotAReport}, {CheckEntry, ReasonDuplicateEntry}} {
		if !has(res, want[0], want[1], "") {
			t.Errorf("no %s %s in %+v", want[0], want[1], res.Findings)
		}
	}
}

// TestAuditFullTileFallback: a log that collected its partial tiles and
// bundles (only full ones remain past the checkpoint) is read through
// the full ones.
func TestAuditFullTileFallback(t *testing.T) {
	_, reports := vector(t, "clean")
	l := newLog(t)
	lg := tlogtest.New(l.key, tlog.SignerOptions{Now: func() time.Time { return signedAt }, Deterministic: true})
	var entries [][]byte
	for i := range 256 + len(reports) {
		entries = append(entries, []byte(fmt.Sprintf("filler %d", i)))
	}
	copy(entries[256-3:], reports) // the reports straddle the first bundle's end
	if _, err := lg.Append(entries...); err != nil {
		t.Fatal(err)
	}
	// Tiles and bundles for 512 entries (all full), checkpoint of 300.
	for lg.Size() < 512 {
		if _, err := lg.Append([]byte(fmt.Sprintf("more %d", lg.Size()))); err != nil {
			t.Fatal(err)
		}
	}
	cp, err := lg.Checkpoint(300)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []uint64{300, 512} {
		if err := tlogclient.WriteDir(context.Background(), lg, cp, n, l.dir); err != nil {
			t.Fatal(err)
		}
	}
	// The log collected the level-0 partials of size 300.
	for _, p := range []string{"tile/0/001.p", "tile/entries/001.p"} {
		if err := os.RemoveAll(filepath.Join(l.dir, p)); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(l.dir, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
	res, err := Audit(context.Background(), &State{}, l.options(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.VMs) != 1 || len(res.VMs[0].Timeline) != len(reports) || res.Status != policy.Warning {
		t.Errorf("%s %+v", res.Status, res.VMs)
	}
	if !has(res, CheckEntry, ReasonNotAReport, "entry-0") {
		t.Errorf("filler is not a report: %+v", res.Findings[:3])
	}
}

// TestAuditUnknownSigner: a report by a key the monitor does not trust
// takes no part in the chains and is named.
func TestAuditUnknownSigner(t *testing.T) {
	_, reports := vector(t, "clean")
	l := newLog(t)
	l.publish(t, reports, -1)
	o := l.options(t)
	o.Verify.TrustedKeys = o.Verify.TrustedKeys[:1]
	res, err := Audit(context.Background(), &State{}, o)
	if err != nil {
		t.Fatal(err)
	}
	if !has(res, CheckEntry, ReasonUnknownSigner, "entry-3") {
		t.Errorf("%+v", res.Findings)
	}
}

func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"checkpoint":"x","logged":{"` + strings.Repeat("ab", 32) + `":{"index":1,"vm":"v"}},"vms":{"v":{"entries":[1]}}}`))
	f.Add([]byte(`{"logged":{"zz":{}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseState(b)
		if err != nil {
			if !errors.Is(err, attest.ErrMalformed) {
				t.Fatalf("error of no class: %v", err)
			}
			return
		}
		s.clone()
	})
}

// proofStore is a memStore holding proofs too.
type proofStore struct {
	memStore
	proofs map[string][]byte
}

func (s proofStore) Proofs(context.Context) (map[string][]byte, error) { return s.proofs, nil }

// TestAuditSplitView: a host that holds a proof from a history the log
// does not extend was shown a split view: the run fails.
func TestAuditSplitView(t *testing.T) {
	_, reports := vector(t, "clean")
	l := newLog(t)
	opts := tlog.SignerOptions{Now: func() time.Time { return signedAt }, Deterministic: true}
	prove := func(entries [][]byte, i uint64) []byte {
		lg := tlogtest.New(l.key, opts)
		if _, err := lg.Append(entries...); err != nil {
			t.Fatal(err)
		}
		cp, err := lg.Publish()
		if err != nil {
			t.Fatal(err)
		}
		p, err := lg.Proof(i, cp)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := prove(reports[:3], 1)
	forked := prove([][]byte{reports[0], reports[2]}, 1) // the host was shown a log without report 1
	l.publish(t, reports, -1)
	o := l.options(t)
	o.Stores = []Store{proofStore{memStore(reports), map[string][]byte{"good.proof": good}}}
	res, err := Audit(context.Background(), &State{}, o)
	if err != nil || has(res, CheckConsistency, ReasonSplitView, "") {
		t.Fatalf("consistent proof: %v %+v", err, res.Findings)
	}
	o.Stores = []Store{proofStore{memStore(reports), map[string][]byte{"good.proof": good, "forked.proof": forked}}}
	res, err = Audit(context.Background(), &State{}, o)
	if !errors.Is(err, ErrLog) || !has(res, CheckConsistency, ReasonSplitView, "mem:forked.proof") || res.State != nil {
		t.Errorf("forked proof: %v %+v", err, res)
	}
}

// TestAuditHTTP: the same audit over HTTP, with the partial→full
// fallback on 404.
func TestAuditHTTP(t *testing.T) {
	names, reports := vector(t, "clean")
	l := newLog(t)
	l.publish(t, reports, -1)
	srv := httptest.NewServer(http.StripPrefix("/log", http.FileServer(http.Dir(l.dir))))
	defer srv.Close()
	r, err := tlogclient.NewHTTPReader(srv.URL+"/log/", srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	o := l.options(t)
	o.Reader = r
	res, err := Audit(context.Background(), &State{}, o)
	if err != nil || res.Status != policy.Affirming || len(res.VMs[0].Timeline) != len(names) {
		t.Fatalf("%v %+v", err, res)
	}
	if _, err := r.ReadTile(context.Background(), 0, 9, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing tile: %v", err)
	}
}

// TestAuditUnpairedMigration: a migration whose other half is not in the
// log is named, as verify --chain names it.
func TestAuditUnpairedMigration(t *testing.T) {
	_, reports := vector(t, "unpaired-migration")
	l := newLog(t)
	l.publish(t, reports, -1)
	res, err := Audit(context.Background(), &State{}, l.options(t))
	if err != nil {
		t.Fatal(err)
	}
	if !has(res, policy.CheckChainMigration, policy.ReasonUnpairedMigration, "") {
		t.Errorf("%s %+v", res.Status, res.Findings)
	}
}

// TestAuditKeyReuseAcrossRuns: a guest key that signed another VM's
// evidence in an earlier run is a key_reuse when it shows up again.
func TestAuditKeyReuseAcrossRuns(t *testing.T) {
	_, reports := vector(t, "key-reuse")
	l := newLog(t)
	st := stateAfter(t, l, reports, 2) // both of vm-1's reports; vm-2 comes next
	l.publish(t, reports, -1)
	res, err := Audit(context.Background(), st, l.options(t))
	if err != nil {
		t.Fatal(err)
	}
	if !has(res, policy.CheckChainGuest, policy.ReasonKeyReuse, "") {
		t.Errorf("%s %+v", res.Status, res.Findings)
	}
}

// TestAuditTamperedBundle: entries that do not hash to the signed tree
// fail the run; the state does not advance.
func TestAuditTamperedBundle(t *testing.T) {
	_, reports := vector(t, "clean")
	l := newLog(t)
	l.publish(t, reports, -1)
	p := filepath.Join(l.dir, "tile", "entries", "000.p", "7")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := Audit(context.Background(), &State{}, l.options(t))
	if !errors.Is(err, ErrLog) || !errors.Is(err, tlog.ErrBadTile) || res.State != nil || !has(res, CheckConsistency, ReasonInconsistent, "") {
		t.Errorf("%v %+v", err, res)
	}
}

// countingReader counts the full tiles and bundles read through it.
type countingReader struct {
	tlog.TileReader
	full *int
}

func (c countingReader) ReadTile(ctx context.Context, l, i uint64, w uint8) ([]byte, error) {
	if w == 0 {
		*c.full++
	}
	return c.TileReader.ReadTile(ctx, l, i, w)
}

func (c countingReader) ReadEntryBundle(ctx context.Context, i uint64, w uint8) ([]byte, error) {
	if w == 0 {
		*c.full++
	}
	return c.TileReader.ReadEntryBundle(ctx, i, w)
}

// TestAuditCache: a second run reads the full tiles and bundles from the
// cache; a damaged cache fails the run instead of misleading it.
func TestAuditCache(t *testing.T) {
	_, reports := vector(t, "clean")
	l := newLog(t)
	entries := slices.Clone(reports)
	for len(entries) < 600 {
		entries = append(entries, []byte(fmt.Sprintf("filler %d", len(entries))))
	}
	l.publish(t, entries, -1)
	cache := t.TempDir()
	n := 0
	o := l.options(t)
	o.Reader = CacheReader{R: countingReader{tlogclient.DirReader{Root: l.dir}, &n}, Dir: cache}
	if _, err := Audit(context.Background(), &State{}, o); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no full tile read")
	}
	n = 0
	res, err := Audit(context.Background(), &State{}, o)
	if err != nil || n != 0 || len(res.VMs) != 1 {
		t.Fatalf("second run: %v, %d full reads", err, n)
	}
	p := filepath.Join(cache, "tile", "entries", "000")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Audit(context.Background(), &State{}, o); !errors.Is(err, tlog.ErrBadTile) {
		t.Errorf("damaged cache: %v", err)
	}
}

// Two hosts that sign with one key keep a host chain each: a store that
// holds one host's chain does not hold the other's, and their reports
// missing from it are not deleted from it. A report deleted from the
// chain a store does hold still is.
func TestAuditStoresSharingAKey(t *testing.T) {
	names, reports := vector(t, "clean")
	key, err := keyfile.LoadPrivate("../testdata/keys/host.key", keyfile.LoadOptions{AllowInsecurePermissionsUnsafe: true})
	if err != nil {
		t.Fatal(err)
	}
	// Sign the vector again with one key, each host's chain link moved
	// to the new bytes.
	prev := map[string]*attest.Digest{}
	byHost := map[string][][]byte{}
	var all [][]byte
	for i, b := range reports {
		in, err := attest.Inspect(b)
		if err != nil {
			t.Fatal(err)
		}
		h := chainHost(in.Report)
		in.Report.Prev = prev[h]
		if b, err = attest.Sign(key, in.Report, &attest.SignOptions{Deterministic: true}); err != nil {
			t.Fatal(err)
		}
		d := attest.ReportHash(b)
		prev[h] = &d
		byHost[h] = append(byHost[h], b)
		all = append(all, b)
		if !strings.Contains(names[i], h) {
			t.Fatalf("%s: host %q", names[i], h)
		}
	}
	l := newLog(t)
	l.publish(t, all, -1)
	o := l.options(t)
	o.Stores = []Store{memStore(byHost["hv-a"]), memStore(byHost["hv-b"])}
	res, err := Audit(context.Background(), &State{}, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range res.Findings {
		if f.Check == CheckStore {
			t.Errorf("two hosts, one key, each store whole: %+v", f)
		}
	}

	hb := byHost["hv-b"]
	o.Stores = []Store{memStore(byHost["hv-a"]), memStore(hb[:len(hb)-1])}
	res, err = Audit(context.Background(), &State{}, o)
	if err != nil {
		t.Fatal(err)
	}
	if !has(res, CheckStore, ReasonDeletedFromStore, entryName(uint64(len(all)-1))) {
		t.Errorf("hv-b's last report deleted from its store: %s %+v", res.Status, res.Findings)
	}
}
