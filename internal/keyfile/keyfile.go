// Package keyfile stores hvmon ML-DSA-65 keys in files: the private key as
// a PEM PKCS#8 file readable by its owner only, the public key next to it as
// PATH.pub, a PEM SPKI. The encodings are package attest's; this package
// adds the file system rules: atomic creation, no silent overwrite, and
// refusing private keys that other users can read.
package keyfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/internal/atomicfile"
	"hvmon.dev/hvmon/internal/boundedfile"
)

// MaxFileSize bounds the bytes read from a key file. Real key files are
// under 3 KiB; anything larger is refused as malformed without being read
// in full.
const MaxFileSize = 64 << 10

// File modes of the files Generate writes.
const (
	PrivateMode fs.FileMode = 0o600
	PublicMode  fs.FileMode = 0o644
)

// PublicSuffix is appended to a private key path to name its public key.
const PublicSuffix = ".pub"

// WriteOptions tune Generate. The zero value refuses to replace files.
type WriteOptions struct {
	// Force replaces existing key files.
	Force bool
}

// LoadOptions tune LoadPrivate. The zero value is the safe one.
type LoadOptions struct {
	// AllowInsecurePermissionsUnsafe accepts a private key file that
	// group or others may read or write. Whoever can read the file can
	// sign reports in the attester's name.
	AllowInsecurePermissionsUnsafe bool
}

// PermissionError reports a private key file that users other than its
// owner may read or write.
type PermissionError struct {
	Path string
	Mode fs.FileMode // permission bits of the file
}

func (e *PermissionError) Error() string {
	return fmt.Sprintf("private key %s has mode %04o, which lets other users read or change it: run chmod 600 %s", e.Path, uint32(e.Mode.Perm()), e.Path)
}

// Generate makes a new key and writes it to path (mode 0600) and its public
// key to path+".pub" (mode 0644). Each file is written atomically. Without
// opts.Force, an existing file at either path is an error matching
// fs.ErrExist and nothing is written.
func Generate(path string, opts WriteOptions) (*attest.PrivateKey, error) {
	pubPath := path + PublicSuffix
	if !opts.Force {
		for _, p := range []string{path, pubPath} {
			if _, err := os.Lstat(p); err == nil {
				return nil, &fs.PathError{Op: "create", Path: p, Err: fs.ErrExist}
			} else if !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
		}
	}
	k, err := attest.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	priv, err := attest.MarshalPrivateKeyPEM(k)
	if err != nil {
		return nil, err
	}
	pub, err := attest.MarshalPublicKeyPEM(k.PublicKey())
	if err != nil {
		return nil, err
	}
	wo := atomicfile.Options{Replace: opts.Force}
	if err := atomicfile.Write(path, priv, PrivateMode, wo); err != nil {
		return nil, fmt.Errorf("writing private key: %w", err)
	}
	if err := atomicfile.Write(pubPath, pub, PublicMode, wo); err != nil {
		// A private key without its public half is of little use and we
		// just created it: take it back rather than leave half a key pair.
		if !opts.Force {
			os.Remove(path)
		}
		return nil, fmt.Errorf("writing public key: %w", err)
	}
	return k, nil
}

// LoadPrivate reads a private key file. The path must name a regular file,
// not a symlink, whose mode gives group and others no access; otherwise it
// returns a *PermissionError, unless opts.AllowInsecurePermissionsUnsafe.
// Content that is not an hvmon private key gives an error matching
// attest.ErrMalformed.
func LoadPrivate(path string, opts LoadOptions) (*attest.PrivateKey, error) {
	lst, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !lst.Mode().IsRegular() {
		return nil, notRegular(path, lst.Mode())
	}
	f, err := boundedfile.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	// The file opened must be the one inspected, not something swapped in
	// between.
	if !st.Mode().IsRegular() || !os.SameFile(lst, st) {
		return nil, fmt.Errorf("private key %s changed while it was opened", path)
	}
	if st.Mode().Perm()&0o077 != 0 && !opts.AllowInsecurePermissionsUnsafe {
		return nil, &PermissionError{Path: path, Mode: st.Mode().Perm()}
	}
	data, err := readBounded(f, "private key file "+path)
	if err != nil {
		return nil, err
	}
	return attest.ParsePrivateKeyPEM(data)
}

// LoadPublic reads a public key file. The path must lead, possibly through
// symlinks, to a regular file. Content that is not an hvmon public key gives
// an error matching attest.ErrMalformed.
func LoadPublic(path string) (*attest.PublicKey, error) {
	f, err := boundedfile.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, notRegular(path, st.Mode())
	}
	data, err := readBounded(f, "public key file "+path)
	if err != nil {
		return nil, err
	}
	return attest.ParsePublicKeyPEM(data)
}

func notRegular(path string, m fs.FileMode) error {
	kind := boundedfile.Kind(m) + ", not a regular file"
	if m&fs.ModeSymlink != 0 {
		kind = "a symlink; give the path of the key file itself"
	}
	return fmt.Errorf("key file %s is %s", path, kind)
}

func readBounded(r io.Reader, what string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, &attest.MalformedError{What: what, Reason: fmt.Sprintf("larger than %d bytes", MaxFileSize)}
	}
	return data, nil
}
