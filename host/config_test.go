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
	// It follows no VM that does not exist: its vm blocks are commented
	// out (lines starting "#" and no space), and parse once uncommented.
	if len(c.VMs) != 0 || c.Key == "" || c.APISocket == "" {
		t.Errorf("example = %+v", c)
	}
	var lines []string
	in := false
	for _, l := range strings.Split(string(src), "\n") {
		in = in || strings.HasPrefix(l, "#vm ")
		if in {
			in = l != "#}"
			l = l[1:]
		}
		lines = append(lines, l)
	}
	c, err = ParseConfig([]byte(strings.Join(lines, "\n")), "hvmon.hcl")
	if err != nil || len(c.VMs) != 2 || len(c.VMs[1].HostRegions) != 1 {
		t.Errorf("the example's vm blocks, uncommented: %v, %+v", err, c)
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
		"vm without qmp":    "key = \"/k\"\nvm \"a\" { }\n",
		"syntax":            "key = \n",
		"huge":              strings.Repeat("#", MaxConfigSize+1),
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
	f.Add([]byte(testLogBlock))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b, "fuzz.hcl")
		if err != nil {
			return
		}
		if c.Key == "" || c.DataDir == "" {
			t.Fatalf("accepted a config without key or data dir: %+v", c)
		}
		c.VMConfigs()
		for _, l := range c.Logs {
			if !ValidLogLabel(l.Label) || l.URL == "" || l.Key == "" {
				t.Fatalf("accepted log block %+v", l)
			}
		}
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

const testLogBlock = `
key = "/etc/hvmon/host.key"
log "main" {
  url          = "http://log.example:8790"
  key          = "/etc/hvmon/log.vkey"
  witness_keys = ["/etc/hvmon/w1.vkey", "/etc/hvmon/w2.vkey"]
  quorum       = 1
  read_url     = "https://cdn.example/log/"
  concurrency  = 8
  timeout      = "30s"
  min_backoff  = "2s"
  max_backoff  = "1m"
}
log "backup-2" {
  url = "https://other.example"
  key = "/etc/hvmon/other.vkey"
}
`

func TestParseConfigLogs(t *testing.T) {
	c, err := ParseConfig([]byte(testLogBlock), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Logs) != 2 || c.Logs[0].Label != "main" || *c.Logs[0].Quorum != 1 || c.Logs[1].Quorum != nil {
		t.Fatalf("logs = %+v", c.Logs)
	}
	// The keys: one from a file, the witness's as text.
	dir := t.TempDir()
	lk := testLogKey(t, 7)
	_, wv := testWitness(t)
	keyFile := dir + "/log.vkey"
	if err := os.WriteFile(keyFile, []byte(lk.VerifierKey()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err = ParseConfig([]byte(`key = "/k"
log "main" {
  url = "http://127.0.0.1:8790"
  key = "`+keyFile+`"
  witness_keys = ["`+wv.String()+`"]
  max_backoff = "10s"
}`), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	lc, err := c.LogConfigs()
	if err != nil {
		t.Fatal(err)
	}
	if len(lc) != 1 || !lc[0].Policy.Log.Equal(lk.Verifier()) || len(lc[0].Policy.Witnesses) != 1 || lc[0].MaxBackoff != 10*time.Second {
		t.Fatalf("LogConfigs = %+v", lc)
	}
}

func logBlock(label string, attrs ...string) string {
	return "log \"" + label + "\" {\n" + strings.Join(attrs, "\n") + "\n}\n"
}

func TestParseConfigLogErrors(t *testing.T) {
	u, k := `url = "http://l"`, `key = "/k"`
	for _, tc := range []struct{ block, want string }{
		{logBlock("Main", u, k), `log "Main": label must be 1 to 32 of a-z, 0-9 and -`},
		{logBlock(strings.Repeat("a", 33), u, k), "label must be"},
		{logBlock("a", `url = "ftp://l"`, k), `url: "ftp://l" is not an http or https URL`},
		{logBlock("a", u, k, `read_url = "l"`), `read_url: "l" is not an http or https URL`},
		{logBlock("a", u), `Missing required argument`},
		{logBlock("a", u, k, "quorum = 1"), "quorum 1: must be between 0 and the 0 witness_keys"},
		{logBlock("a", u, k, "concurrency = 5000"), "concurrency 5000"},
		{logBlock("a", u, k, `timeout = "-1s"`), "timeout: negative duration"},
		{logBlock("a", u, k, `min_backoff = "1m"`, `max_backoff = "1s"`), "min_backoff 1m is above max_backoff 1s"},
		{logBlock("a", u, k) + logBlock("a", u, k), `log "a" defined twice`},
		{logBlock("a", u, k, "bogus = 1"), "Unsupported argument"},
	} {
		_, err := ParseConfig([]byte("key = \"/k\"\n"+tc.block), "t.hcl")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseConfig(%s) = %v, want an error with %q", tc.block, err, tc.want)
		}
	}
	// Keys are checked when they are loaded: a witness key as the log key.
	_, wv := testWitness(t)
	c, err := ParseConfig([]byte(`key = "/k"
log "a" {
  url = "http://l"
  key = "`+wv.String()+`"
}`), "t.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.LogConfigs(); err == nil || !strings.Contains(err.Error(), `log "a": key:`) {
		t.Errorf("LogConfigs with an Ed25519 log key = %v", err)
	}
}

// TestParseConfigRelativePaths: relative paths resolve against the
// configuration file's directory, absolute ones stay, the defaults stay.
func TestParseConfigRelativePaths(t *testing.T) {
	src := `key = "keys/host.key"
api_socket = "run/api.sock"
watch_dir = "/abs/watch"
trust_peers = ["peers/b.pub"]
vm "a" {
  qmp = "a.qmp"
  agent = "../a.agent"
}
evidence {
  simulated_roots = ["roots.pem"]
}
`
	c, err := ParseConfig([]byte(src), "/etc/hvmon/hvmon.hcl")
	if err != nil {
		t.Fatal(err)
	}
	for got, want := range map[string]string{
		c.Key: "/etc/hvmon/keys/host.key", c.APISocket: "/etc/hvmon/run/api.sock", c.WatchDir: "/abs/watch",
		c.TrustPeers[0]: "/etc/hvmon/peers/b.pub", c.VMs[0].QMP: "/etc/hvmon/a.qmp", c.VMs[0].Agent: "/etc/a.agent",
		c.Evidence.SimulatedRoots[0]: "/etc/hvmon/roots.pem", c.DataDir: DefaultDataDir,
	} {
		if got != want {
			t.Errorf("resolved %q, want %q", got, want)
		}
	}
}
