package hook

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds Parse arbitrary arguments and XML. Parse must never
// panic, must return either a message or an error matching exactly one of
// ErrMalformed and ErrIgnored, and a message it returns must be consistent
// with its input.
func FuzzParse(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "*.xml"))
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no seeds in testdata/*.xml (%v)", err)
	}
	for _, s := range seeds {
		b := readTestdata(f, filepath.Base(s))
		d, err := ParseDomain(b)
		if err != nil {
			f.Fatalf("seed %s: %v", s, err)
		}
		for _, op := range []string{"prepare", "start", "migrate", "release"} {
			f.Add(d.Name+"\x00"+op+"\x00begin\x00-", b)
		}
	}
	f.Add("vm\x00start\x00begin", []byte("<domain><name>vm</name></domain>"))
	f.Add("default\x00start\x00begin\x00-", []byte("<hookData><network/></hookData>"))
	f.Fuzz(func(t *testing.T, argv string, xml []byte) {
		args := strings.Split(argv, "\x00")
		m, err := Parse("qemu", args, bytes.NewReader(xml))
		if err != nil {
			if m != nil || errors.Is(err, ErrMalformed) == errors.Is(err, ErrIgnored) {
				t.Fatalf("Parse = %+v, %v", m, err)
			}
			return
		}
		if m.Object != args[0] || m.Domain.Name != m.Object || m.XMLSize != len(xml) || !Followed(m.Driver, m.Op) {
			t.Fatalf("Parse = %+v for %q", m, args)
		}
		if m.Domain.AgentSocket != "" && !strings.HasPrefix(m.Domain.AgentSocket, "/") {
			t.Fatalf("agent socket %q is not absolute", m.Domain.AgentSocket)
		}
	})
}
