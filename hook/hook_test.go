package hook

import (
	"bytes"
	"crypto/sha3"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParse(t *testing.T) {
	snp := readTestdata(t, "domain-snp.xml")
	m, err := Parse("qemu", []string{"llm-1", "prepare", "begin", "-"}, bytes.NewReader(snp))
	if err != nil {
		t.Fatalf("Parse(domain-snp.xml) = %v", err)
	}
	sum := sha3.Sum256(snp)
	want := Message{
		Driver: "qemu", Args: Args{Object: "llm-1", Op: "prepare", SubOp: "begin", Extra: "-"},
		Domain: Domain{Name: "llm-1", UUID: "4dea22b3-1d52-d8f3-2516-782e98ab3fa0", Agent: true, AgentSocket: "/run/hvmon/agents/llm-1.agent",
			LaunchSecurity: "sev-snp", AttestationRequired: true},
		XMLSHA3: hex.EncodeToString(sum[:]), XMLSize: len(snp),
	}
	if *m != want {
		t.Errorf("Parse(domain-snp.xml) =\n%+v\nwant\n%+v", *m, want)
	}

	plain := readTestdata(t, "domain-plain.xml")
	m, err = Parse("qemu", []string{"plain-1", "release", "end", "shutdown"}, bytes.NewReader(plain))
	if err != nil {
		t.Fatalf("Parse(domain-plain.xml) = %v", err)
	}
	if m.Domain != (Domain{Name: "plain-1", UUID: "c7a5fdbd-cdaf-9455-926a-d65c16db1809"}) || m.Extra != "shutdown" {
		t.Errorf("Parse(domain-plain.xml) = %+v", m)
	}
}

// TestParseLibvirtChosenPath: libvirt drops a channel path under its own
// channel directory from the persistent XML (what prepare and start get) and
// fills the per-start path in the live XML; both are the agent channel.
func TestParseLibvirtChosenPath(t *testing.T) {
	const persistent = `<domain type='qemu'><name>vm-2</name><devices>
    <channel type='unix'>
      <target type='virtio' name='org.hvmon.agent.0'/>
      <address type='virtio-serial' controller='0' bus='0' port='1'/>
    </channel></devices></domain>`
	m, err := Parse("qemu", []string{"vm-2", "prepare", "begin", "-"}, strings.NewReader(persistent))
	if err != nil || !m.Domain.Agent || m.Domain.AgentSocket != "" {
		t.Fatalf("persistent XML: %+v, %v", m, err)
	}
	live := strings.Replace(persistent, "<target", "<source mode='bind' path='/var/lib/libvirt/qemu/channel/target/domain-3-vm-2/org.hvmon.agent.0'/><target", 1)
	m, err = Parse("qemu", []string{"vm-2", "started", "begin", "-"}, strings.NewReader(live))
	if err != nil || !m.Domain.Agent || m.Domain.AgentSocket != "/var/lib/libvirt/qemu/channel/target/domain-3-vm-2/org.hvmon.agent.0" {
		t.Fatalf("live XML: %+v, %v", m, err)
	}
	pty := strings.Replace(persistent, "type='unix'", "type='pty'", 1)
	if _, err := Parse("qemu", []string{"vm-2", "prepare", "begin", "-"}, strings.NewReader(pty)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a pty channel named %s: %v, want ErrMalformed", AgentChannel, err)
	}
}

func TestParseIgnored(t *testing.T) {
	for _, c := range []struct {
		driver string
		args   []string
	}{
		{"network", []string{"default", "start", "begin", "-"}},
		{"daemon", []string{"-", "start", "-", "start"}},
		{"lxc", []string{"c1", "prepare", "begin", "-"}},
		{"qemu", []string{"vm", "future-op", "begin", "-"}},
	} {
		// The reader fails: an ignored event must not read stdin.
		_, err := Parse(c.driver, c.args, failReader{})
		if !errors.Is(err, ErrIgnored) || errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%s, %q) = %v, want ErrIgnored", c.driver, c.args, err)
		}
	}
}

type failReader struct{}

func (failReader) Read([]byte) (int, error) { return 0, errors.New("stdin was read") }

func TestParseMalformed(t *testing.T) {
	snp := string(readTestdata(t, "domain-snp.xml"))
	args := []string{"llm-1", "start", "begin", "-"}
	for _, c := range []struct {
		name string
		args []string
		xml  string
		want string // in the message
	}{
		{"no args", nil, snp, "got 0 argument(s)"},
		{"three args", args[:3], snp, "got 3 argument(s)"},
		{"five args", append(args[:4:4], "x"), snp, "got 5 argument(s)"},
		{"empty object", []string{"", "start", "begin", "-"}, snp, "OBJECT: empty"},
		{"control char", []string{"llm-1\n", "start", "begin", "-"}, snp, "OBJECT: contains a control character"},
		{"long arg", []string{"llm-1", "start", "begin", strings.Repeat("x", MaxArg+1)}, snp, "EXTRA: longer than 1024 bytes"},
		{"bad utf8", []string{"llm-1", "start", "\xff", "-"}, snp, "SUB-OPERATION: not UTF-8"},
		{"empty stdin", args, "", "domain XML: empty"},
		{"not xml", args, "hello", "domain XML"},
		{"wrong root", args, "<network><name>llm-1</name></network>", "expected element type <domain>"},
		{"truncated", args, snp[:len(snp)/2], "domain XML"},
		{"trailing element", args, snp + "<domain/>", "trailing data"},
		{"trailing text", args, snp + "junk", "text after </domain>"},
		{"name mismatch", args, strings.Replace(snp, "<name>llm-1</name>", "<name>llm-2</name>", 1), `names domain "llm-2", arguments name "llm-1"`},
		{"two names", args, strings.Replace(snp, "<name>llm-1</name>", "<name>llm-1</name><name>x</name>", 1), "want one <name>, got 2"},
		{"no name", args, "<domain><uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid></domain>", "want one <name>, got 0"},
		{"bad uuid", args, strings.Replace(snp, "4dea22b3-1d52", "zzzz22b3-1d52", 1), "<uuid>"},
		{"required maybe", args, strings.Replace(snp, `required="yes"`, `required="maybe"`, 1), `required="maybe": want yes or no`},
		{"two agent channels", args, strings.ReplaceAll(snp, "org.qemu.guest_agent.0'", "org.hvmon.agent.0'"), "more than one channel named org.hvmon.agent.0"},
		{"agent channel pty", args, strings.Replace(snp, "<channel type='unix'>\n      <source mode='bind' path='/run/hvmon", "<channel type='pty'>\n      <source mode='bind' path='/run/hvmon", 1), "want type='unix'"},
		{"relative agent path", args, strings.Replace(snp, "path='/run/hvmon/agents/llm-1.agent'", "path='llm-1.agent'", 1), "not an absolute path"},
		{"too large", args, snp[:len(snp)-len("</domain>\n")] + "<!--" + strings.Repeat("x", MaxXML) + "--></domain>", "larger than 1048576 bytes"},
		{"not utf8", args, strings.Replace(snp, "console=ttyS0", "console=\xff", 1), "not UTF-8"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := Parse("qemu", c.args, strings.NewReader(c.xml))
			var me *MalformedError
			if !errors.Is(err, ErrMalformed) || !errors.As(err, &me) {
				t.Fatalf("Parse = %+v, %v; want a MalformedError", m, err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("Parse error = %q, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestParseDomainNoMarker(t *testing.T) {
	snp := readTestdata(t, "domain-snp.xml")
	// The same element in another namespace is not hvmon's marker.
	other := bytes.Replace(snp, []byte("https://hvmon.dev/xmlns/libvirt/1"), []byte("https://example.org/other"), 1)
	d, err := ParseDomain(other)
	if err != nil || d.AttestationRequired {
		t.Errorf("ParseDomain(marker in another namespace) = %+v, %v; want not required", d, err)
	}
	no := bytes.Replace(snp, []byte(`required="yes"`), []byte(`required="no"`), 1)
	if d, err := ParseDomain(no); err != nil || d.AttestationRequired {
		t.Errorf(`ParseDomain(required="no") = %+v, %v`, d, err)
	}
}

func TestGates(t *testing.T) {
	for op, want := range map[string]bool{"prepare": true, "start": true, "migrate": true, "started": false, "stopped": false, "release": false, "restore": false, "reconnect": false} {
		if Gates(op) != want {
			t.Errorf("Gates(%q) = %v, want %v", op, !want, want)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	snp := readTestdata(b, "domain-snp.xml")
	args := []string{"llm-1", "start", "begin", "-"}
	b.SetBytes(int64(len(snp)))
	for b.Loop() {
		if _, err := Parse("qemu", args, bytes.NewReader(snp)); err != nil {
			b.Fatal(err)
		}
	}
}
