package host

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"hvmon.dev/hvmon/internal/hcldepth"
)

func TestParseConfigExample(t *testing.T) {
	src, err := os.ReadFile("../contrib/hvmon.hcl")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig(src, "hvmon.hcl")
	if err != nil {
		t.Fatalf("the shipped example does not parse: %v", err)
	}
	if len(c.VMs) == 0 || c.Key == "" || c.APISocket == "" {
		t.Errorf("example = %+v", c)
	}
}

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(`
key = "/etc/hvmon/host.key"
periodic = "10m"
vm "a" {
  qmp = "/run/a.qmp"
  agent = "/run/a.agent"
}
vm "b" {
  qmp = "/run/b.qmp"
  periodic = "1m"
  regions = ["w0"]
}
`), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	vms := c.VMConfigs()
	if len(vms) != 2 || vms[0].Periodic != 10*time.Minute || vms[1].Periodic != time.Minute || vms[1].Regions[0] != "w0" || c.DataDir != DefaultDataDir {
		t.Fatalf("VMConfigs = %+v", vms)
	}
	lc, err := ParseConfig([]byte("key = \"/k\"\nlibvirt {\n  uri = \"qemu:///system\"\n  domains = [\"ai-*\"]\n}\n"), "t.hcl")
	if err != nil || lc.Libvirt == nil || lc.Libvirt.URI != "qemu:///system" || lc.Libvirt.Domains[0] != "ai-*" {
		t.Fatalf("libvirt block: %+v, %v", lc, err)
	}
	for name, bad := range map[string]string{
		"unknown attribute": "key = \"/k\"\nbogus = 1\n",
		"unknown block":     "key = \"/k\"\nthing {}\n",
		"no key":            "data_dir = \"/d\"\n",
		"bad duration":      "key = \"/k\"\nttl = \"5 minutes\"\n",
		"negative":          "key = \"/k\"\nttl = \"-5m\"\n",
		"duplicate vm":      "key = \"/k\"\nvm \"a\" { qmp = \"/q\" }\nvm \"a\" { qmp = \"/q\" }\n",
		"relative socket":   "key = \"/k\"\nvm \"a\" { qmp = \"q.sock\" }\n",
		"vm without qmp":    "key = \"/k\"\nvm \"a\" { }\n",
		"syntax":            "key = \n",
		"huge":              strings.Repeat("#", MaxConfigSize+1),
		"relative peer key": "key = \"/k\"\ntrust_peers = [\"peer.pub\"]\n",
		"bad domain glob":   "key = \"/k\"\nlibvirt {\n domains = [\"[\"]\n}\n",
		"unknown libvirt":   "key = \"/k\"\nlibvirt {\n url = \"qemu:///system\"\n}\n",
		"vm name, space":    "key = \"/k\"\nvm \"web 1\" { qmp = \"/q\" }\n",
		"vm name, trailing": "key = \"/k\"\nvm \"web-1 \" { qmp = \"/q\" }\n",
		"vm name, slash":    "key = \"/k\"\nvm \"a/b\" { qmp = \"/q\" }\n",
		"vm name, Cyrillic": "key = \"/k\"\nvm \"w\u0435b-1\" { qmp = \"/q\" }\n",
		"vm name, empty":    "key = \"/k\"\nvm \"\" { qmp = \"/q\" }\n",
	} {
		if _, err := ParseConfig([]byte(bad), "t.hcl"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestParseConfigMigrationHold(t *testing.T) {
	for src, want := range map[string]time.Duration{"": 0, "migration_hold = \"off\"\n": -1, "migration_hold = \"90s\"\n": 90 * time.Second} {
		c, err := ParseConfig([]byte("key = \"/k\"\n"+src), "t.hcl")
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		if got := c.MigrationHoldDuration(); got != want {
			t.Errorf("%q: migration hold %v, want %v", src, got, want)
		}
	}
	for _, bad := range []string{"0s", "-1s", "never", "1 minute"} {
		if _, err := ParseConfig([]byte("key = \"/k\"\nmigration_hold = \""+bad+"\"\n"), "t.hcl"); err == nil {
			t.Errorf("migration_hold = %q accepted", bad)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	src, _ := os.ReadFile("../contrib/hvmon.hcl")
	if len(src) == 0 {
		f.Fatal("no seed: contrib/hvmon.hcl is missing")
	}
	f.Add(src)
	f.Add([]byte("key = \"/k\"\nvm \"a\" { qmp = \"/q\" }\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b, "fuzz.hcl")
		if err != nil {
			return
		}
		if c.Key == "" || c.DataDir == "" {
			t.Fatalf("accepted a config without key or data dir: %+v", c)
		}
		c.VMConfigs()
	})
}

// TestConfigDeepNesting: a configuration nested a million deep gives an
// error naming the file and line, never the parser's fatal stack overflow.
func TestConfigDeepNesting(t *testing.T) {
	for _, src := range []string{
		"key = \"/k\"\nttl = " + strings.Repeat("-", 1e6) + "1\n", // just under MaxConfigSize
		"key = \"/k\"\nttl = " + strings.Repeat("(", 1e6) + "1" + strings.Repeat(")", 1e6) + "\n",
		"key = \"/k\"\n" + strings.Repeat("vm \"a\" {\n", 100) + strings.Repeat("}\n", 100),
	} {
		_, err := ParseConfig([]byte(src), "deep.hcl")
		var deep *hcldepth.Error
		if err == nil || (len(src) <= MaxConfigSize && !errors.As(err, &deep)) {
			t.Errorf("ParseConfig(%d bytes nested deep) = %v, want a nesting error", len(src), err)
		}
	}
}
