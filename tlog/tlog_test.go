package tlog

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"golang.org/x/mod/sumdb/note"

	"hvmon.dev/hvmon/attest"
)

// TestKAT pins the key ID of the fixed log key and the deterministic
// ML-DSA-44 signature of one checkpoint, and checks both against the C2SP
// definitions written out independently of the package's code.
func TestKAT(t *testing.T) {
	k := testLogKey(t)
	pk := k.Verifier().raw
	h := sha256.Sum256(slices.Concat([]byte(testOrigin+"\n"), []byte{0x06}, pk))
	if got, want := k.Verifier().KeyHash(), binary.BigEndian.Uint32(h[:4]); got != want {
		t.Fatalf("key ID %08x, want %08x", got, want)
	}
	if !strings.HasPrefix(k.VerifierKey(), testOrigin+"+57ef839d+Bi") {
		t.Errorf("verifier key %.40s…, want the pinned key ID 57ef839d", k.VerifierKey())
	}
	root := sha256.Sum256([]byte("root"))
	signed, err := k.SignCheckpoint(42, root, fixed)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := b64.DecodeString(sigB64(t, signed, testOrigin))
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != 4+8+2420 || binary.BigEndian.Uint64(raw[4:]) != uint64(testTime.Unix()) {
		t.Fatalf("signature of %d bytes, timestamp %d", len(raw), binary.BigEndian.Uint64(raw[4:]))
	}
	// cosigned_message, byte by byte.
	msg := []byte("subtree/v1\n\x00")
	msg = append(msg, byte(len(testOrigin)))
	msg = append(msg, testOrigin...)
	msg = binary.BigEndian.AppendUint64(msg, uint64(testTime.Unix()))
	msg = append(msg, byte(len(testOrigin)))
	msg = append(msg, testOrigin...)
	msg = binary.BigEndian.AppendUint64(msg, 0)
	msg = binary.BigEndian.AppendUint64(msg, 42)
	msg = append(msg, root[:]...)
	if !mldsa44.Verify(k.Verifier().ml, msg, nil, raw[12:]) {
		t.Fatal("the signature does not verify over the subtree/v1 message")
	}
	sum := sha256.Sum256(raw[12:])
	if got, want := hex.EncodeToString(sum[:]), "7a8260fac37416733ec2cac472b2768d6f3664668e23e3e4cf16b8ad9ad81813"; got != want {
		t.Errorf("deterministic ML-DSA-44 signature changed: SHA-256 %s, want %s", got, want)
	}
	// Hedged signing differs each time and verifies.
	a, _ := k.SignCheckpoint(42, root, SignerOptions{Now: fixed.Now})
	b, _ := k.SignCheckpoint(42, root, SignerOptions{Now: fixed.Now})
	if bytes.Equal(a, b) {
		t.Error("hedged signatures are equal")
	}
	if _, err := testPolicy(t, 0).Open(a); err != nil {
		t.Error(err)
	}
}

// TestEd25519Cosignature checks a 0x04 witness line against the
// cosignature/v1 message written out by hand.
func TestEd25519Cosignature(t *testing.T) {
	m := newMemLog(t, 5)
	cp := m.checkpoint(t, 5)
	s, err := NewEd25519Cosigner(testEdName, testEdKey(), fixed)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := Cosign(cp.Signed, s)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := b64.DecodeString(sigB64(t, signed, testEdName))
	pub := testEdKey().Public().(ed25519.PublicKey)
	id := sha256.Sum256(slices.Concat([]byte(testEdName+"\n\x04"), pub))
	if !bytes.Equal(raw[:4], id[:4]) || len(raw) != 4+8+64 {
		t.Fatalf("line %x…: want key ID %x and 76 bytes", raw[:4], id[:4])
	}
	msg := "cosignature/v1\ntime 1780000000\n" + string(cp.Body)
	if !ed25519.Verify(pub, []byte(msg), raw[12:]) {
		t.Fatal("the witness line does not verify over the cosignature/v1 message")
	}
	got, err := testPolicy(t, 0, testEdVerifier(t)).Open(signed)
	if err != nil || !slices.Equal(got.Witnesses, []string{testEdName}) {
		t.Fatalf("Open = %v, %v", got, err)
	}
	// An ML-DSA-44 witness verifies under its own name.
	wk := testWitnessKey(t)
	signed2, err := Cosign(signed, wk.NoteSigner(fixed))
	if err != nil {
		t.Fatal(err)
	}
	got, err = testPolicy(t, 2, testEdVerifier(t), wk.Verifier()).Open(signed2)
	if err != nil || len(got.Witnesses) != 2 {
		t.Fatalf("Open = %v, %v", got, err)
	}
}

func TestPrivateKeyPEM(t *testing.T) {
	k := testLogKey(t)
	pem, err := k.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	k2, err := ParsePrivateKeyPEM(testOrigin, pem)
	if err != nil {
		t.Fatal(err)
	}
	if k2.VerifierKey() != k.VerifierKey() || k2.seed != k.seed {
		t.Fatal("the key changed in a PEM round trip")
	}
	hostKey, err := attest.NewKeyFromSeed(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	mldsa65, err := attest.MarshalPrivateKeyPEM(hostKey)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		name string
		data []byte
		want error
	}{
		"ML-DSA-65":    {testOrigin, mldsa65, ErrKeyType},
		"trailing":     {testOrigin, append(bytes.Clone(pem), "x"...), ErrMalformed},
		"public label": {testOrigin, bytes.Replace(pem, []byte("PRIVATE"), []byte("PUBLIC"), 2), ErrMalformed},
		"headers":      {testOrigin, bytes.Replace(pem, []byte("KEY-----\n"), []byte("KEY-----\nProc-Type: 4,ENCRYPTED\n\n"), 1), ErrMalformed},
		"empty":        {testOrigin, nil, ErrMalformed},
		"bad name":     {"a b", pem, ErrMalformed},
		"plus in name": {"a+b", pem, ErrMalformed},
	} {
		if _, err := ParsePrivateKeyPEM(tc.name, tc.data); !errors.Is(err, tc.want) || !errors.Is(err, attest.ErrMalformed) {
			t.Errorf("%s: ParsePrivateKeyPEM = %v, want %v", name, err, tc.want)
		}
	}
	if _, err := GenerateKey(testOrigin, strings.NewReader("short")); err == nil {
		t.Error("GenerateKey from 5 random bytes succeeded")
	}
	if g, err := GenerateKey(testOrigin, nil); err != nil || g.VerifierKey() == k.VerifierKey() {
		t.Errorf("GenerateKey(crypto/rand) = %v", err)
	}
}

// TestPrivateKeyPEMForms: the seed-and-expanded form (as OpenSSL writes
// it) is read when its halves agree; a mismatched pair and the
// expanded-only form are refused.
func TestPrivateKeyPEMForms(t *testing.T) {
	k := testLogKey(t)
	other := testWitnessKey(t)
	encode := func(inner []byte) []byte {
		der, err := asn1.Marshal(struct {
			Version    int
			Algorithm  pkix.AlgorithmIdentifier
			PrivateKey []byte
		}{0, pkix.AlgorithmIdentifier{Algorithm: oidMLDSA44}, inner})
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	both := func(seed []byte, sk *mldsa44.PrivateKey) []byte {
		inner, err := asn1.Marshal(struct{ Seed, Expanded []byte }{seed, sk.Bytes()})
		if err != nil {
			t.Fatal(err)
		}
		return encode(inner)
	}
	got, err := ParsePrivateKeyPEM(testOrigin, both(k.seed[:], k.sk))
	if err != nil || got.VerifierKey() != k.VerifierKey() {
		t.Fatalf("both form: %v", err)
	}
	if _, err := ParsePrivateKeyPEM(testOrigin, both(k.seed[:], other.sk)); !errors.Is(err, ErrMalformed) {
		t.Errorf("mismatched both form = %v, want ErrMalformed", err)
	}
	expanded, err := asn1.Marshal(k.sk.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParsePrivateKeyPEM(testOrigin, encode(expanded)); !errors.Is(err, ErrMalformed) {
		t.Errorf("expanded-only form = %v, want ErrMalformed", err)
	}
}

func TestVerifierKey(t *testing.T) {
	for _, v := range []*Verifier{testLogKey(t).Verifier(), testEdVerifier(t)} {
		got, err := ParseVerifierKey(v.String() + "\n")
		if err != nil || !got.Equal(v) || got.String() != v.String() {
			t.Fatalf("ParseVerifierKey(%.30s…) = %v, %v", v, got, err)
		}
	}
	if _, err := LogVerifier(testEdVerifier(t).String()); !errors.Is(err, ErrKeyType) {
		t.Errorf("LogVerifier(Ed25519 key) = %v, want ErrKeyType", err)
	}
	// A signed-note Ed25519 key (type 0x01) is not a cosignature key.
	_, vk, err := note.GenerateKey(strings.NewReader(strings.Repeat("x", 64)), "old.hvmon.dev")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseVerifierKey(vk); !errors.Is(err, ErrKeyType) {
		t.Errorf("ParseVerifierKey(0x01 key) = %v, want ErrKeyType", err)
	}
	good := testLogKey(t).VerifierKey()
	name, rest, _ := strings.Cut(good, "+")
	id, key, _ := strings.Cut(rest, "+")
	for desc, s := range map[string]string{
		"key ID off by one": name + "+57ef839e+" + key,
		"upper-case key ID": name + "+" + strings.ToUpper(id) + "+" + key,
		"other name":        "other.hvmon.dev+" + id + "+" + key,
		"short key":         name + "+" + id + "+" + key[:len(key)-8],
		"not base64":        name + "+" + id + "+" + key[:len(key)-1] + "!",
		"two parts":         name + "+" + key,
		"space in name":     "a b+" + id + "+" + key,
		"empty":             "",
	} {
		if _, err := ParseVerifierKey(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: ParseVerifierKey = %v, want ErrMalformed", desc, err)
		}
	}
}

func TestSignerRefuses(t *testing.T) {
	s := testLogKey(t).NoteSigner(fixed)
	for _, text := range []string{
		testOrigin + "\n1\n" + b64.EncodeToString(make([]byte, 32)) + "\next\n",
		testOrigin + "\n01\n" + b64.EncodeToString(make([]byte, 32)) + "\n",
		testOrigin + "\n1\n",
		"",
	} {
		if _, err := s.Sign([]byte(text)); !errors.Is(err, ErrMalformed) {
			t.Errorf("Sign(%q) = %v, want ErrMalformed", text, err)
		}
	}
	if _, err := NewKeyFromSeed(strings.Repeat("a", 256), fill(1)); !errors.Is(err, ErrMalformed) {
		t.Errorf("a 256-byte name: %v", err)
	}
}

func TestPolicyErrors(t *testing.T) {
	w := testWitnessKey(t).Verifier()
	for name, p := range map[string]Policy{
		"no log key":        {},
		"Ed25519 log key":   {Log: testEdVerifier(t)},
		"quorum too high":   {Log: testLogKey(t).Verifier(), Witnesses: []*Verifier{w}, Quorum: 2},
		"negative quorum":   {Log: testLogKey(t).Verifier(), Quorum: -1},
		"witness twice":     {Log: testLogKey(t).Verifier(), Witnesses: []*Verifier{w, w}},
		"witness = log key": {Log: testLogKey(t).Verifier(), Witnesses: []*Verifier{testLogKey(t).Verifier()}},
		"nil witness":       {Log: testLogKey(t).Verifier(), Witnesses: []*Verifier{nil}},
	} {
		_, err := p.Open(newMemLog(t, 1).checkpoint(t, 1).Signed)
		if !errors.Is(err, ErrPolicy) || errors.Is(err, attest.ErrMalformed) || errors.Is(err, attest.ErrTrust) {
			t.Errorf("%s: Open = %v, want ErrPolicy only", name, err)
		}
	}
}

func TestEmptyTree(t *testing.T) {
	k := testLogKey(t)
	signed, err := k.SignCheckpoint(0, sha256.Sum256(nil), fixed)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := testPolicy(t, 0).Open(signed)
	if err != nil || cp.Size != 0 {
		t.Fatalf("Open(empty tree) = %v, %v", cp, err)
	}
	bad, _ := k.SignCheckpoint(0, [32]byte{1}, fixed)
	if _, err := testPolicy(t, 0).Open(bad); !errors.Is(err, ErrMalformed) {
		t.Errorf("Open(empty tree, other root) = %v, want ErrMalformed", err)
	}
	m := newMemLog(t, 3)
	if err := CheckConsistency(cp, m.checkpoint(t, 3), nil); err != nil {
		t.Errorf("CheckConsistency(empty, 3) = %v", err)
	}
}

// TestFileRoundTrips: every vector file that parses re-encodes to its
// bytes, and a proof with an extra line does too.
func TestFileRoundTrips(t *testing.T) {
	files, _ := generateVectors(t)
	parsed := 0
	for name, b := range files {
		switch {
		case strings.HasSuffix(name, ".proof"):
			if p, err := ParseProof(b); err == nil {
				parsed++
				if !bytes.Equal(p.Marshal(), b) {
					t.Errorf("%s does not re-encode to its bytes", name)
				}
			}
		case strings.HasSuffix(name, ".consistency"):
			if c, err := ParseConsistency(b); err == nil {
				parsed++
				if !bytes.Equal(c.Marshal(), b) {
					t.Errorf("%s does not re-encode to its bytes", name)
				}
			}
		}
	}
	if parsed < 5 {
		t.Errorf("only %d files parsed", parsed)
	}
	p, _ := ParseProof(files["entry-257.proof"])
	p.Extra = []byte("context")
	b := p.Marshal()
	if !bytes.Contains(b, []byte("\nextra Y29udGV4dA==\nindex 257\n")) {
		t.Fatalf("extra line missing:\n%.80s", b)
	}
	p2, err := ParseProof(b)
	if err != nil || !bytes.Equal(p2.Marshal(), b) {
		t.Fatalf("ParseProof(with extra) = %v", err)
	}
	if _, _, err := VerifyProof(testPolicy(t, 0), testEntry(257), b); err != nil {
		t.Errorf("VerifyProof ignores the extra data: %v", err)
	}
	for _, bad := range []string{
		"c2sp.org/tlog-proof@v1\nindex 1\n\n",
		"c2sp.org/tlog-proof@v2\nindex 1\n\nx\n",
		"c2sp.org/tlog-proof@v1\nextra !!\nindex 1\n\nx\n",
		"c2sp.org/tlog-proof@v1\nindex -1\n\nx\n",
		"c2sp.org/tlog-proof@v1\nindex 9223372036854775808\n\nx\n",
		"c2sp.org/tlog-proof@v1\n\nx\n",
		"c2sp.org/tlog-proof@v1\nindex 1\nAAAA\n\nx\n",
		"c2sp.org/tlog-proof@v1\r\nindex 1\n\nx\n",
	} {
		if _, err := ParseProof([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseProof(%q) = %v, want ErrMalformed", bad, err)
		}
	}
	if _, err := ParseProof(append([]byte("c2sp.org/tlog-proof@v1\nindex 1\n\n"), make([]byte, MaxProofSize)...)); !errors.Is(err, ErrMalformed) {
		t.Error("an oversized proof parsed")
	}
}

func TestVerifyProofEntryBound(t *testing.T) {
	m := newMemLog(t, 1)
	big := make([]byte, MaxEntrySize+1)
	m.entries[0] = big
	m.hashes[0] = LeafHash(big)
	cp := m.checkpoint(t, 1)
	proof := (&Proof{Index: 0, Checkpoint: cp.Signed}).Marshal()
	if _, _, err := VerifyProof(testPolicy(t, 0), big, proof); !errors.Is(err, ErrNotIncluded) {
		t.Errorf("VerifyProof(oversized entry) = %v, want ErrNotIncluded", err)
	}
}

func TestTilePaths(t *testing.T) {
	for _, tc := range []struct {
		level, index uint64
		width        uint8
		entries      bool
		path         string
	}{
		{0, 0, 0, false, "tile/0/000"},
		{1, 1234067, 0, false, "tile/1/x001/x234/067"},
		{3, 7, 44, false, "tile/3/007.p/44"},
		{0, 1000, 255, true, "tile/entries/x001/000.p/255"},
		{0, 1<<63 - 1, 0, true, "tile/entries/x009/x223/x372/x036/x854/x775/807"},
	} {
		got := TilePath(tc.level, tc.index, tc.width)
		if tc.entries {
			got = EntriesPath(tc.index, tc.width)
		}
		if got != tc.path {
			t.Errorf("path %+v = %q, want %q", tc, got, tc.path)
		}
		l, i, w, e, err := ParseTilePath(tc.path)
		if err != nil || l != tc.level || i != tc.index || w != tc.width || e != tc.entries {
			t.Errorf("ParseTilePath(%q) = %d %d %d %v %v", tc.path, l, i, w, e, err)
		}
	}
	for _, bad := range []string{
		"tile/0/0", "tile/0/0000", "tile/00/000", "tile/0/001.p/0", "tile/0/001.p/256", "tile/0/001.p/01",
		"tile/0/x000/001", "tile/0/001/002", "tile/64/000", "tile/data/000", "/tile/0/000", "tile/entries/000.p/",
		"tile/0/x001", "tile/-1/000", "tile/0/+01", "tile/entries/x100/x000/x000/x000/x000/x000/x000/000",
	} {
		if _, _, _, _, err := ParseTilePath(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseTilePath(%q) = %v, want ErrMalformed", bad, err)
		}
	}
}

func TestEntryBundle(t *testing.T) {
	entries := [][]byte{[]byte("a"), {}, bytes.Repeat([]byte{7}, MaxEntrySize)}
	b, err := MarshalEntryBundle(entries)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseEntryBundle(b)
	if err != nil || len(got) != 3 || !bytes.Equal(got[2], entries[2]) || len(got[1]) != 0 {
		t.Fatalf("ParseEntryBundle = %d entries, %v", len(got), err)
	}
	for name, bad := range map[string][]byte{
		"empty":            nil,
		"truncated length": b[:1],
		"truncated entry":  b[:len(b)-1],
		"trailing byte":    append(bytes.Clone(b), 0),
		"257 entries":      bytes.Repeat([]byte{0, 0}, 257),
	} {
		if _, err := ParseEntryBundle(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: ParseEntryBundle = %v, want ErrMalformed", name, err)
		}
	}
	if _, err := MarshalEntryBundle([][]byte{make([]byte, MaxEntrySize+1)}); !errors.Is(err, ErrMalformed) {
		t.Errorf("MarshalEntryBundle(oversized) = %v", err)
	}
}

// TestProveInclusion proves every (sampled) index of trees of awkward
// sizes from tiles and checks each proof.
func TestProveInclusion(t *testing.T) {
	m := newMemLog(t, 70000)
	for _, size := range []int{1, 2, 3, 255, 256, 257, 300, 511, 512, 513, 65535, 65536, 65537, 70000} {
		cp := m.checkpoint(t, size)
		for _, i := range []int{0, 1, size / 2, size - 2, size - 1} {
			if i < 0 || i >= size {
				continue
			}
			path, err := ProveInclusion(t.Context(), m, cp, uint64(i))
			if err != nil {
				t.Fatalf("ProveInclusion(size %d, %d) = %v", size, i, err)
			}
			if err := CheckInclusion(cp, uint64(i), LeafHash(testEntry(i)), path); err != nil {
				t.Fatalf("CheckInclusion(size %d, %d) = %v", size, i, err)
			}
			if err := CheckInclusion(cp, uint64(i), LeafHash(testEntry(i+1)), path); !errors.Is(err, ErrNotIncluded) {
				t.Fatalf("CheckInclusion(size %d, %d, other entry) = %v", size, i, err)
			}
		}
	}
	if _, err := ProveInclusion(t.Context(), m, m.checkpoint(t, 5), 5); !errors.Is(err, ErrNotIncluded) {
		t.Errorf("ProveInclusion(index = size) = %v", err)
	}
}

// TestPartialTileFallback: a checkpoint of size 300 read after the log
// grew to 600 and collected its partial tiles: the reader falls back to
// the full tiles and keeps their first hashes.
func TestPartialTileFallback(t *testing.T) {
	m := newMemLog(t, 300)
	cp := m.checkpoint(t, 300)
	m.add(t, 300)
	m.gc = true
	path, err := ProveInclusion(t.Context(), m, cp, 290)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckInclusion(cp, 290, LeafHash(testEntry(290)), path); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(m.reads, "tile/0/001.p/44") || !slices.Contains(m.reads, "tile/0/001") {
		t.Errorf("reads %q: want the partial tile, then the full one", m.reads)
	}
	m.reads = nil
	es, err := ReadEntries(t.Context(), m, cp, 250, 50)
	if err != nil || len(es) != 50 || !bytes.Equal(es[49], testEntry(299)) {
		t.Fatalf("ReadEntries = %d entries, %v", len(es), err)
	}
	if !slices.Contains(m.reads, "tile/entries/001.p/44") || !slices.Contains(m.reads, "tile/entries/001") {
		t.Errorf("reads %q: want the partial bundle, then the full one", m.reads)
	}

	// Without a full tile to fall back to, the reader's error comes
	// through, and it is not a trust failure.
	m2 := newMemLog(t, 300)
	cp2 := m2.checkpoint(t, 300)
	m2.entries, m2.hashes = m2.entries[:290], m2.hashes[:xtlogStored(290)]
	_, err = ProveInclusion(t.Context(), m2, cp2, 10)
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, attest.ErrTrust) {
		t.Errorf("ProveInclusion with a tile missing = %v, want fs.ErrNotExist", err)
	}
}

// TestBadTiles: tiles or bundles that contradict the checkpoint are
// ErrBadTile; tiles of the wrong length are ErrMalformed.
func TestBadTiles(t *testing.T) {
	m := newMemLog(t, 600)
	cp := m.checkpoint(t, 600)
	m.tamper = func(path string, b []byte) []byte {
		if path == "tile/0/001" {
			b[100] ^= 1
		}
		return b
	}
	if _, err := ProveInclusion(t.Context(), m, cp, 300); !errors.Is(err, ErrBadTile) || !errors.Is(err, attest.ErrTrust) {
		t.Errorf("ProveInclusion over a changed tile = %v, want ErrBadTile", err)
	}
	m.tamper = func(path string, b []byte) []byte {
		if path == "tile/0/001" {
			return b[:len(b)-1]
		}
		return b
	}
	if _, err := LeafHashes(t.Context(), m, cp, 256, 10); !errors.Is(err, ErrMalformed) {
		t.Errorf("LeafHashes over a short tile = %v, want ErrMalformed", err)
	}
	m.tamper = func(path string, b []byte) []byte {
		if path == "tile/entries/001" {
			b[10] ^= 1
		}
		return b
	}
	if _, err := ReadEntries(t.Context(), m, cp, 250, 20); !errors.Is(err, ErrBadTile) {
		t.Errorf("ReadEntries over a changed bundle = %v, want ErrBadTile", err)
	}
	m.tamper = func(path string, b []byte) []byte {
		if path == "tile/entries/002.p/88" {
			return append(b, 0, 1, 'x')
		}
		return b
	}
	if _, err := ReadEntries(t.Context(), m, cp, 590, 5); !errors.Is(err, ErrMalformed) {
		t.Errorf("ReadEntries over a partial bundle with an extra entry = %v, want ErrMalformed", err)
	}
	m.tamper = nil
	if _, err := LeafHashes(t.Context(), m, cp, 590, 11); err == nil {
		t.Error("LeafHashes past the tree succeeded")
	}
	hs, err := LeafHashes(t.Context(), m, cp, 590, 10)
	if err != nil || hs[9] != LeafHash(testEntry(599)) {
		t.Errorf("LeafHashes = %v", err)
	}
}

func TestConsistency(t *testing.T) {
	m := newMemLog(t, 1100)
	sizes := []int{1, 2, 7, 256, 257, 300, 512, 1000, 1100}
	for _, a := range sizes {
		for _, b := range sizes {
			if a > b {
				continue
			}
			old, new := m.checkpoint(t, a), m.checkpoint(t, b)
			path, err := ProveConsistency(t.Context(), m, old, new)
			if err != nil {
				t.Fatalf("ProveConsistency(%d, %d) = %v", a, b, err)
			}
			if err := CheckConsistency(old, new, path); err != nil {
				t.Fatalf("CheckConsistency(%d, %d) = %v", a, b, err)
			}
		}
	}
	// A fork: another log with the same key and a different entry 5.
	f := newMemLog(t, 1100)
	f.entries[5] = []byte("rewritten")
	f.hashes = nil
	es := f.entries
	f.entries = nil
	for _, e := range es {
		hs, _ := xtlogStoredHashes(t, f, e)
		f.entries = append(f.entries, e)
		f.hashes = append(f.hashes, hs...)
	}
	old, forked := m.checkpoint(t, 300), f.checkpoint(t, 1100)
	path, err := ProveConsistency(t.Context(), f, f.checkpoint(t, 300), forked)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckConsistency(old, forked, path); !errors.Is(err, ErrInconsistent) {
		t.Errorf("CheckConsistency(rewritten history) = %v, want ErrInconsistent", err)
	}
	if err := CheckConsistency(old, f.checkpoint(t, 300), nil); !errors.Is(err, ErrInconsistent) {
		t.Errorf("CheckConsistency(same size, two roots) = %v, want ErrInconsistent", err)
	}
	if err := CheckConsistency(m.checkpoint(t, 1100), old, nil); !errors.Is(err, ErrInconsistent) {
		t.Errorf("CheckConsistency(rollback) = %v, want ErrInconsistent", err)
	}
	if _, err := ProveConsistency(t.Context(), m, m.checkpoint(t, 1100), old); !errors.Is(err, ErrInconsistent) {
		t.Errorf("ProveConsistency(rollback) = %v, want ErrInconsistent", err)
	}
	other := *old
	other.Origin = "other.hvmon.dev/log"
	if err := CheckConsistency(&other, forked, path); !errors.Is(err, ErrOrigin) {
		t.Errorf("CheckConsistency(two logs) = %v, want ErrOrigin", err)
	}
}

// TestContextReachesReader: the context given to ProveInclusion is the
// one the reader sees.
func TestContextReachesReader(t *testing.T) {
	m := newMemLog(t, 10)
	cp := m.checkpoint(t, 10)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	r := ctxReader{m}
	if _, err := ProveInclusion(ctx, r, cp, 3); !errors.Is(err, context.Canceled) {
		t.Errorf("ProveInclusion(cancelled) = %v", err)
	}
}

type ctxReader struct{ *memLog }

func (r ctxReader) ReadTile(ctx context.Context, level, index uint64, width uint8) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return r.memLog.ReadTile(ctx, level, index, width)
}

func TestCheckpointTimes(t *testing.T) {
	cp := newMemLog(t, 1).checkpoint(t, 1)
	p := testPolicy(t, 0)
	p.Now = func() time.Time { return testTime.Add(-DefaultSkew) }
	if _, err := p.Open(cp.Signed); err != nil {
		t.Errorf("Open at the edge of the skew = %v", err)
	}
	p.Now = func() time.Time { return testTime.Add(-DefaultSkew - time.Second) }
	if _, err := p.Open(cp.Signed); !errors.Is(err, ErrTimestamp) {
		t.Errorf("Open past the skew = %v, want ErrTimestamp", err)
	}
	p.Skew = time.Hour
	if _, err := p.Open(cp.Signed); err != nil {
		t.Errorf("Open with a wider skew = %v", err)
	}
}
