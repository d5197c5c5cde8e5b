package logd

import (
	"os"
	"strings"
	"testing"
	"time"

	"hvmon.dev/hvmon/tlog"
)

func TestParseConfigDefaults(t *testing.T) {
	c, err := ParseConfig([]byte(testConfig("/srv", "")), "logd.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != DefaultListen || *c.BatchMaxSize != DefaultBatchMaxSize || *c.MaxInflight != DefaultMaxInflight ||
		*c.PushbackMaxOutstanding != DefaultPushbackMaxOutstanding {
		t.Errorf("defaults not applied: %+v", c)
	}
	want := Durations{CheckpointInterval: 100 * time.Millisecond, BatchMaxAge: 10 * time.Millisecond, AwaitTimeout: DefaultAwaitTimeout, WitnessTimeout: DefaultWitnessTimeout}
	if c.Durations != want {
		t.Errorf("durations %+v, want %+v", c.Durations, want)
	}
	if c.POSIX.Dir != "/srv/log" || c.Quorum() != 0 || len(c.WitnessList()) != 0 {
		t.Errorf("storage or witnesses wrong: %+v", c)
	}
}

// witnessVKey is an Ed25519 witness verifier key made from a fixed seed.
func witnessVKey(t *testing.T, name string) string {
	t.Helper()
	k, err := tlog.NewKeyFromSeed(name, [32]byte{byte(len(name))})
	if err != nil {
		t.Fatal(err)
	}
	return k.VerifierKey()
}

func TestParseConfigWitnesses(t *testing.T) {
	w1, w2 := witnessVKey(t, "w1.example"), witnessVKey(t, "w2.example")
	c, err := ParseConfig([]byte(testConfig("/srv", `
witness "w1" {
  vkey = "`+w1+`"
  url  = "http://127.0.0.1:1/"
}
witness "w2" {
  vkey = "`+w2+`"
  url  = "https://w2.example/root"
}
witness_quorum = 1
witness_fail_open = true
`)), "logd.hcl")
	if err != nil {
		t.Fatal(err)
	}
	ws := c.WitnessList()
	if len(ws) != 2 || c.Quorum() != 1 || !c.WitnessFailOpen || ws[0].URL != "http://127.0.0.1:1" || ws[1].Verifier.Name() != "w2.example" {
		t.Errorf("witnesses parsed wrong: %+v quorum %d", ws, c.Quorum())
	}
	g := witnessGroup(c.Quorum(), ws)
	if g.N != 1 || len(g.Endpoints()) != 2 || g.Endpoints()["http://127.0.0.1:1/add-checkpoint"] == nil {
		t.Errorf("witness group %+v", g)
	}
}

func TestParseConfigErrors(t *testing.T) {
	w1 := witnessVKey(t, "w1.example")
	witness := func(name, vkey, url string) string {
		return `witness "` + name + `" {
  vkey = "` + vkey + `"
  url = "` + url + `"
}
`
	}
	base := testConfig("/srv", "")
	for _, tc := range []struct {
		name, src, want string
	}{
		{"unknown attribute", base + "colour = \"blue\"\n", "Unsupported argument"},
		{"no storage", strings.Replace(base, "posix {", "ignored {", 1), "Unsupported block"},
		{"two storages", base + "aws {\n dsn = \"a\"\n antispam_dsn = \"b\"\n bucket = \"c\"\n}\n", "exactly one storage"},
		{"aws without bucket", strings.Replace(base, "posix {\n  dir = \"/srv/log\"\n}", "aws {\n dsn = \"a\"\n antispam_dsn = \"b\"\n bucket = \"\"\n}", 1), "bucket are required"},
		{"aws one database", strings.Replace(base, "posix {\n  dir = \"/srv/log\"\n}", "aws {\n dsn = \"a\"\n antispam_dsn = \"a\"\n bucket = \"c\"\n}", 1), "another database"},
		{"empty posix dir", strings.Replace(base, `dir = "/srv/log"`, `dir = ""`, 1), "dir is required"},
		{"origin with space", strings.Replace(base, testOrigin, "a log", 1), "origin"},
		{"origin with plus", strings.Replace(base, testOrigin, "a+log", 1), "origin"},
		{"empty origin", strings.Replace(base, testOrigin, "", 1), "origin"},
		{"origin too long", strings.Replace(base, testOrigin, strings.Repeat("o", 256), 1), "origin"},
		{"no key", strings.Replace(base, `key = "/srv/log.key"`, `key = ""`, 1), "required"},
		{"interval below POSIX minimum", strings.Replace(base, `"100ms"`, `"99ms"`, 1), "minimum"},
		{"bad duration", base + "await_timeout = \"soon\"\n", "await_timeout"},
		{"zero batch", base + "batch_max_size = 0\n", "batch_max_size"},
		{"huge inflight", base + "max_inflight = 2000000\n", "max_inflight"},
		{"witness bad key", base + witness("w", "nonsense", "http://x"), "vkey"},
		{"witness bad url", base + witness("w", w1, "ftp://x"), "url"},
		{"witness twice", base + witness("w", w1, "http://x") + witness("w", w1, "http://y"), "twice"},
		{"quorum above witnesses", base + witness("w", w1, "http://x") + "witness_quorum = 2\n", "witness_quorum"},
		{"negative quorum", base + "witness_quorum = -1\n", "witness_quorum"},
		{"deep nesting", base + "x = " + strings.Repeat("[", 10000), "nest"},
		{"too large", base + strings.Repeat("#", MaxConfigSize), "larger"},
	} {
		_, err := ParseConfig([]byte(tc.src), "logd.hcl")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(testConfig("/srv", "")))
	if b, err := os.ReadFile("../contrib/logd.hcl"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(testConfig("/srv", "witness \"w\" {\n vkey = \"x\"\n url = \"http://x\"\n}\nwitness_quorum = 1\n")))
	f.Add([]byte("origin = \"o\"\nkey = \"k\"\nallowlist = \"a\"\naws {\n dsn = \"a\"\n antispam_dsn = \"b\"\n bucket = \"c\"\n}\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		c, err := ParseConfig(src, "fuzz.hcl")
		if err != nil {
			return
		}
		// Whatever parses satisfies the invariants New relies on.
		if checkOrigin(c.Origin) != nil || (c.POSIX == nil) == (c.AWS == nil) || *c.MaxInflight < 1 || *c.BatchMaxSize < 1 ||
			c.Quorum() < 0 || c.Quorum() > len(c.WitnessList()) || c.Durations.CheckpointInterval < 100*time.Millisecond {
			t.Fatalf("accepted an invalid configuration: %+v", c)
		}
	})
}

// contrib/logd.hcl, the documented example, parses and means its defaults.
func TestContribConfig(t *testing.T) {
	src, err := os.ReadFile("../contrib/logd.hcl")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig(src, "contrib/logd.hcl")
	if err != nil {
		t.Fatal(err)
	}
	want := Durations{CheckpointInterval: DefaultCheckpointInterval, BatchMaxAge: DefaultBatchMaxAge, AwaitTimeout: DefaultAwaitTimeout, WitnessTimeout: DefaultWitnessTimeout}
	if c.Durations != want || c.Listen != DefaultListen || *c.MaxInflight != DefaultMaxInflight || *c.BatchMaxSize != DefaultBatchMaxSize ||
		*c.PushbackMaxOutstanding != DefaultPushbackMaxOutstanding || c.POSIX == nil || c.WitnessFailOpen {
		t.Errorf("contrib/logd.hcl does not show the defaults: %+v", c)
	}
}
