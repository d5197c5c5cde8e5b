package measure

import (
	"bytes"
	"context"
	"crypto/sha3"
	"errors"
	"fmt"
	"io"
	"testing"
)

// content returns n bytes of the pattern (7i+3) mod 251, the pattern the
// vectors in docs/FORMAT.md use.
func content(n int) []byte {
	b := make([]byte, n)
	for i := range min(n, 251) {
		b[i] = byte((i*7 + 3) % 251)
	}
	for k := 251; k < n; k *= 2 { // the pattern repeats every 251 bytes
		copy(b[k:], b[:k-k%251])
	}
	return b
}

// These roots were computed independently of hvmon, from the definition in
// docs/FORMAT.md over a separate SHA3-256 implementation.
var vectors = []struct {
	size int
	root string
}{
	{0, "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a"},
	{1, "a3f30948550805cb1a32ea5f3f7ede7112a4007b3b1834b4d4c254b8b7d58bd2"},
	{4095, "46869a31b1b3e8bb93bf945a69ee230492ab906f334847fbda97957455a7657e"},
	{4096, "e91b57a143865334905eedbe42ed891c35d7f0501d5c6352801bfb3c2aa75606"},
	{4097, "24cb9c44989d3694d027728b10daadbb9920d8bc05b2513a00a3ddb4397a19d8"},
	{8192, "1e0437cc1914bd6ab90b377265dc56dc59fe431fe56fb5353b174c601981b47c"},
	{12288, "26befd4d6ce9205e674d9420c04cb236c76d0ee422956b983a78ea62937ceba4"},
	{12289, "a4ab5ec20837196df00d30e24e7806acab4161ee7985e796792ff9baabd32b82"},
	{5*4096 + 1, "64dfff63a62f838aaff99a21c6791b3aec980d8468e930fff9202c2e82b6c7ea"},
	{1 << 20, "25c57b3c965439a75a3d99b4e15f446b0b990e952bebb49d5a0c81065e33e5af"},
}

func TestVectors(t *testing.T) {
	for _, v := range vectors {
		b := content(v.size)
		if got := Bytes(b).String(); got != v.root {
			t.Errorf("Bytes(%d bytes) = %s, want %s", v.size, got, v.root)
		}
		got, err := sectionRoot(bytes.NewReader(b), int64(len(b)))
		if err != nil || got.String() != v.root {
			t.Errorf("Root(Section(%d bytes)) = %s, %v; want %s", v.size, got, err, v.root)
		}
	}
}

func TestEmptyRoot(t *testing.T) {
	if EmptyRoot != Digest(sha3.Sum256(nil)) {
		t.Fatal("EmptyRoot is not SHA3-256 of the empty string")
	}
}

// TestTreeShape spells out the first trees by hand.
func TestTreeShape(t *testing.T) {
	l := make([]Digest, 7)
	for i := range l {
		l[i] = LeafHash([]byte{byte(i)})
	}
	n := NodeHash
	for _, tc := range []struct {
		leaves int
		want   Digest
	}{
		{1, l[0]},
		{2, n(l[0], l[1])},
		{3, n(n(l[0], l[1]), l[2])},
		{4, n(n(l[0], l[1]), n(l[2], l[3]))},
		{5, n(n(n(l[0], l[1]), n(l[2], l[3])), l[4])},
		{7, n(n(n(l[0], l[1]), n(l[2], l[3])), n(n(l[4], l[5]), l[6]))},
	} {
		if got := RootFromLeaves(l[:tc.leaves]); got != tc.want {
			t.Errorf("RootFromLeaves(%d leaves) = %s, want %s", tc.leaves, got, tc.want)
		}
	}
	// Leaves and nodes are domain-separated: a leaf over the bytes of a
	// node's input is not that node.
	var two [2 * HashSize]byte
	copy(two[:], l[0][:])
	copy(two[HashSize:], l[1][:])
	if LeafHash(two[:]) == n(l[0], l[1]) {
		t.Error("leaf and node hashes collide")
	}
}

type shortReader struct{ n int64 }

func (s shortReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= s.n {
		return 0, fmt.Errorf("read past end")
	}
	return copy(p, make([]byte, min(int64(len(p)), s.n-off))), nil
}

// sectionRoot is the fingerprint of size bytes of r, read through Section
// as fileregion reads a file.
func sectionRoot(r io.ReaderAt, size int64) (Digest, error) {
	src, err := Section(r, 0, size)
	if err != nil {
		return Digest{}, err
	}
	return Root(context.Background(), src, nil)
}

func TestSectionShort(t *testing.T) {
	_, err := sectionRoot(bytes.NewReader(make([]byte, 5000)), 9000)
	if !errors.Is(err, ErrShortRead) {
		t.Errorf("Root(Section(5000 bytes, size 9000)) = %v, want ErrShortRead", err)
	}
	if _, err := sectionRoot(shortReader{10}, 4096); !errors.Is(err, ErrShortRead) {
		t.Errorf("Root(Section(short reader)) = %v, want ErrShortRead", err)
	}
	if _, err := sectionRoot(bytes.NewReader(nil), -1); err == nil {
		t.Error("Section accepted a negative size")
	}
}

func TestParseDigest(t *testing.T) {
	d := Bytes([]byte("x"))
	got, err := ParseDigest(d.String())
	if err != nil || got != d {
		t.Fatalf("ParseDigest(%s) = %s, %v", d, got, err)
	}
	for _, bad := range []string{"", "00", d.String() + "00", "zz" + d.String()[2:]} {
		if _, err := ParseDigest(bad); err == nil {
			t.Errorf("ParseDigest(%q) accepted", bad)
		}
	}
}

func FuzzTree(f *testing.F) {
	for _, v := range vectors[:8] {
		f.Add(content(v.size))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want := Bytes(b)
		got, err := sectionRoot(bytes.NewReader(b), int64(len(b)))
		if err != nil || got != want {
			t.Fatalf("Root(Section) = %s, %v; Bytes = %s", got, err, want)
		}
	})
}

func ExampleBytes() {
	fmt.Println(Bytes(nil) == EmptyRoot, Bytes(make([]byte, 5000)) == NodeHash(LeafHash(make([]byte, 4096)), LeafHash(make([]byte, 904))))
	// Output: true true
}

func BenchmarkReferenceTree(b *testing.B) {
	buf := content(64 << 20)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		reference(buf)
	}
}
