package logd

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"hvmon.dev/hvmon/internal/hcldepth"
	"hvmon.dev/hvmon/tlog"
)

// MaxConfigSize bounds the log server's configuration file.
const MaxConfigSize = 1 << 20

// Defaults of the configuration's optional settings.
const (
	DefaultListen                 = "127.0.0.1:8790"
	DefaultCheckpointInterval     = time.Second
	DefaultBatchMaxSize           = 256
	DefaultBatchMaxAge            = 100 * time.Millisecond
	DefaultPushbackMaxOutstanding = 4096
	DefaultMaxInflight            = 4096
	DefaultAwaitTimeout           = 30 * time.Second
	DefaultWitnessTimeout         = 5 * time.Second
)

// Config is the log server's configuration file, in HCL. Unknown
// attributes and blocks are errors. Durations are Go durations.
type Config struct {
	// Origin is the log's name: the first line of its checkpoints and the
	// name of its key.
	Origin string `hcl:"origin"`
	// Key is the log's ML-DSA-44 private key file (PEM, mode 0600).
	Key string `hcl:"key"`
	// Allowlist is a file of concatenated PEM public keys of the hosts
	// whose reports the log accepts.
	Allowlist     string `hcl:"allowlist"`
	Listen        string `hcl:"listen,optional"`
	MetricsListen string `hcl:"metrics_listen,optional"`

	CheckpointInterval     string `hcl:"checkpoint_interval,optional"`
	BatchMaxSize           *int   `hcl:"batch_max_size,optional"`
	BatchMaxAge            string `hcl:"batch_max_age,optional"`
	PushbackMaxOutstanding *int   `hcl:"pushback_max_outstanding,optional"`
	MaxInflight            *int   `hcl:"max_inflight,optional"`
	AwaitTimeout           string `hcl:"await_timeout,optional"`

	POSIX *POSIXStorage `hcl:"posix,block"`
	AWS   *AWSStorage   `hcl:"aws,block"`

	Witnesses       []WitnessBlock `hcl:"witness,block"`
	WitnessQuorum   *int           `hcl:"witness_quorum,optional"`
	WitnessTimeout  string         `hcl:"witness_timeout,optional"`
	WitnessFailOpen bool           `hcl:"witness_fail_open,optional"`

	// Parsed settings, filled in by ParseConfig.
	Durations Durations
	witnesses []*Witness
}

// Durations are the configuration's durations, parsed, defaults applied.
type Durations struct {
	CheckpointInterval, BatchMaxAge, AwaitTimeout, WitnessTimeout time.Duration
}

// POSIXStorage is the `posix { ... }` block: the log in a local directory,
// for one logd process.
type POSIXStorage struct {
	Dir string `hcl:"dir"`
	// AntispamDir holds the persistent dedup index; empty means
	// DIR/.antispam.
	AntispamDir string `hcl:"antispam_dir,optional"`
}

// AWSStorage is the `aws { ... }` block: tiles in an S3-compatible bucket,
// sequencing in a MySQL-compatible database, shared by several logd
// processes. S3 credentials come from the environment
// (HVMON_S3_ACCESS_KEY, HVMON_S3_SECRET_KEY), never from this file.
type AWSStorage struct {
	DSN                  string `hcl:"dsn"`
	AntispamDSN          string `hcl:"antispam_dsn"`
	Bucket               string `hcl:"bucket"`
	Endpoint             string `hcl:"endpoint,optional"`
	Region               string `hcl:"region,optional"`
	PathStyle            *bool  `hcl:"path_style,optional"`
	MaxOpenConns         int    `hcl:"max_open_conns,optional"`
	AntispamMaxOpenConns int    `hcl:"antispam_max_open_conns,optional"`
}

// WitnessBlock is a `witness "NAME" { vkey = ..., url = ... }` block.
type WitnessBlock struct {
	Name string `hcl:"name,label"`
	// VKey is the witness's verifier key (0x04 Ed25519 or 0x06 ML-DSA-44).
	VKey string `hcl:"vkey"`
	// URL is the witness's root; logd posts to URL/add-checkpoint.
	URL string `hcl:"url"`
}

// Witness is a configured witness, its key parsed.
type Witness struct {
	Name     string
	Verifier *tlog.Verifier
	URL      string
}

// WitnessList returns the configured witnesses, keys parsed.
func (c *Config) WitnessList() []*Witness { return c.witnesses }

// Quorum returns how many witnesses must cosign a checkpoint before it is
// published: witness_quorum, or all of them when unset.
func (c *Config) Quorum() int {
	if c.WitnessQuorum == nil {
		return len(c.witnesses)
	}
	return *c.WitnessQuorum
}

// ParseConfig parses and validates HCL configuration text; filename is used
// in error messages. It reads no file the configuration names.
func ParseConfig(src []byte, filename string) (*Config, error) {
	// hcl's parser recurses: hcldepth bounds the nesting first (deep
	// enough would overflow Go's stack, which is fatal).
	var c Config
	if err := hcldepth.Decode(src, filename, MaxConfigSize, &c); err != nil {
		return nil, err
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", filename, err)
	}
	return &c, nil
}

func (c *Config) validate() error {
	if err := checkOrigin(c.Origin); err != nil {
		return err
	}
	if c.Key == "" || c.Allowlist == "" {
		return errors.New("key and allowlist are required")
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	d := &c.Durations
	for _, s := range []struct {
		name, val string
		dst       *time.Duration
		def, min  time.Duration
	}{
		{"checkpoint_interval", c.CheckpointInterval, &d.CheckpointInterval, DefaultCheckpointInterval, 100 * time.Millisecond},
		{"batch_max_age", c.BatchMaxAge, &d.BatchMaxAge, DefaultBatchMaxAge, time.Millisecond},
		{"await_timeout", c.AwaitTimeout, &d.AwaitTimeout, DefaultAwaitTimeout, time.Millisecond},
		{"witness_timeout", c.WitnessTimeout, &d.WitnessTimeout, DefaultWitnessTimeout, time.Millisecond},
	} {
		*s.dst = s.def
		if s.val == "" {
			continue
		}
		v, err := time.ParseDuration(s.val)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		if v < s.min {
			return fmt.Errorf("%s: %s is below the minimum %s", s.name, v, s.min)
		}
		*s.dst = v
	}
	for _, n := range []struct {
		name string
		val  **int
		def  int
	}{
		{"batch_max_size", &c.BatchMaxSize, DefaultBatchMaxSize},
		{"pushback_max_outstanding", &c.PushbackMaxOutstanding, DefaultPushbackMaxOutstanding},
		{"max_inflight", &c.MaxInflight, DefaultMaxInflight},
	} {
		if *n.val == nil {
			v := n.def
			*n.val = &v
		} else if **n.val < 1 || **n.val > 1<<20 {
			return fmt.Errorf("%s: %d is not between 1 and %d", n.name, **n.val, 1<<20)
		}
	}
	switch {
	case (c.POSIX == nil) == (c.AWS == nil):
		return errors.New("exactly one storage block, posix or aws, is required")
	case c.POSIX != nil && c.POSIX.Dir == "":
		return errors.New("posix: dir is required")
	case c.AWS != nil && (c.AWS.DSN == "" || c.AWS.AntispamDSN == "" || c.AWS.Bucket == ""):
		return errors.New("aws: dsn, antispam_dsn and bucket are required")
	case c.AWS != nil && c.AWS.DSN == c.AWS.AntispamDSN:
		return errors.New("aws: antispam_dsn must name another database than dsn")
	}
	seen := map[string]bool{}
	for _, w := range c.Witnesses {
		if seen[w.Name] {
			return fmt.Errorf("witness %q: given twice", w.Name)
		}
		seen[w.Name] = true
		v, err := tlog.ParseVerifierKey(w.VKey)
		if err != nil {
			return fmt.Errorf("witness %q: vkey: %w", w.Name, err)
		}
		if !strings.HasPrefix(w.URL, "http://") && !strings.HasPrefix(w.URL, "https://") {
			return fmt.Errorf("witness %q: url %q is not an http(s) URL", w.Name, w.URL)
		}
		c.witnesses = append(c.witnesses, &Witness{Name: w.Name, Verifier: v, URL: strings.TrimSuffix(w.URL, "/")})
	}
	if q := c.WitnessQuorum; q != nil && (*q < 0 || *q > len(c.witnesses)) {
		return fmt.Errorf("witness_quorum: %d of %d witnesses", *q, len(c.witnesses))
	}
	return nil
}

// checkOrigin applies the log's origin rules: 1–255 bytes, printable, no
// spaces or '+' (it is also the key's name).
func checkOrigin(o string) error {
	if o == "" || len(o) > 255 {
		return fmt.Errorf("origin: must be 1 to 255 bytes, got %d", len(o))
	}
	for _, r := range o {
		if r <= ' ' || r == '+' || r >= 0x7f {
			return fmt.Errorf("origin %q: only printable ASCII without spaces or '+'", o)
		}
	}
	return nil
}
