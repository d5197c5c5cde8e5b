package host

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/internal/boundedfile"
	"hvmon.dev/hvmon/internal/hcldepth"
	"hvmon.dev/hvmon/tlog"
)

// MaxConfigSize bounds the daemon's configuration file.
const MaxConfigSize = 1 << 20

// Config is the daemon's configuration file, in HCL. contrib/hvmon.hcl is
// a commented example. Unknown attributes and blocks are errors.
type Config struct {
	HostName      string    `hcl:"host_name,optional"`
	Key           string    `hcl:"key"`
	DataDir       string    `hcl:"data_dir,optional"`
	APISocket     string    `hcl:"api_socket,optional"`
	APIGroup      string    `hcl:"api_group,optional"`
	MetricsListen string    `hcl:"metrics_listen,optional"`
	TTL           string    `hcl:"ttl,optional"`
	AgentTimeout  string    `hcl:"agent_timeout,optional"`
	Periodic      string    `hcl:"periodic,optional"`
	WatchDir      string    `hcl:"watch_dir,optional"`
	VMs           []VMBlock `hcl:"vm,block"`
	Evidence      *Evidence `hcl:"evidence,block"`
	Libvirt       *Libvirt  `hcl:"libvirt,block"`
	// Logs are the transparency logs every stored report is submitted
	// to (the outbox, outbox.go).
	Logs []LogBlock `hcl:"log,block"`

	// TrustPeers are public key files of peer hosts whose reports reach
	// this host's store (a shared or copied data_dir). An incoming
	// migration's hook is allowed only when the domain's newest stored
	// report verifies under the host's own key or one of these.
	TrustPeers []string `hcl:"trust_peers,optional"`

	// MigrationHold bounds how long an outgoing live migration is held
	// while the agent is asked for the migrate-out evidence: a duration,
	// or "off". Empty means agent_timeout.
	MigrationHold string `hcl:"migration_hold,optional"`
}

// Libvirt is the `libvirt { ... }` block: follow the domains of a libvirt
// connection (package host/libvirt).
type Libvirt struct {
	// URI is the connection; empty means qemu:///system.
	URI string `hcl:"uri,optional"`
	// Domains are name patterns of domains to follow even without the
	// agent channel; domains with it are always followed.
	Domains []string `hcl:"domains,optional"`
	// Regions selects agent regions for every domain; empty means all.
	Regions []string `hcl:"regions,optional"`
}

// LogBlock is one `log "LABEL" { ... }` block: a transparency log the
// outbox submits every stored report to. The label names the log in the
// proof files beside reports (<base>.LABEL.proof) and in metrics.
type LogBlock struct {
	Label string `hcl:"label,label"`
	// URL is the log server's base URL (http or https).
	URL string `hcl:"url"`
	// Key is the log's verifier key (ML-DSA-44, type 0x06): the key text,
	// or the absolute path of a file holding it.
	Key string `hcl:"key"`
	// WitnessKeys are witness verifier keys (0x06 or 0x04), as Key.
	WitnessKeys []string `hcl:"witness_keys,optional"`
	// Quorum is how many distinct witnesses must cosign each checkpoint;
	// unset means all of WitnessKeys, 0 none.
	Quorum *int `hcl:"quorum,optional"`
	// ReadURL is where the checkpoint and tiles are read; empty means URL.
	ReadURL     string `hcl:"read_url,optional"`
	Concurrency int    `hcl:"concurrency,optional"`
	Timeout     string `hcl:"timeout,optional"`
	MinBackoff  string `hcl:"min_backoff,optional"`
	MaxBackoff  string `hcl:"max_backoff,optional"`
}

// maxLogConcurrency bounds a log block's concurrency.
const maxLogConcurrency = 1024

// maxLogs bounds the log blocks (each is a file beside every report).
const maxLogs = 8

func (l *LogBlock) validate() error {
	if !ValidLogLabel(l.Label) {
		return fmt.Errorf("label must be 1 to 32 of a-z, 0-9 and -")
	}
	for name, v := range map[string]string{"url": l.URL, "read_url": l.ReadURL} {
		if v == "" && name == "read_url" {
			continue
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("%s: %q is not an http or https URL", name, v)
		}
	}
	if l.Key == "" {
		return fmt.Errorf("key is required (the log's verifier key or a file holding it)")
	}
	for _, k := range append([]string{l.Key}, l.WitnessKeys...) {
		if !filepath.IsAbs(k) && strings.HasPrefix(k, ".") {
			return fmt.Errorf("key %q: a key file must be an absolute path", k)
		}
	}
	if q := l.Quorum; q != nil && (*q < 0 || *q > len(l.WitnessKeys)) {
		return fmt.Errorf("quorum %d: must be between 0 and the %d witness_keys", *q, len(l.WitnessKeys))
	}
	if l.Concurrency < 0 || l.Concurrency > maxLogConcurrency {
		return fmt.Errorf("concurrency %d: must be between 1 and %d", l.Concurrency, maxLogConcurrency)
	}
	var d [3]time.Duration
	for i, v := range []struct{ name, s string }{{"timeout", l.Timeout}, {"min_backoff", l.MinBackoff}, {"max_backoff", l.MaxBackoff}} {
		var err error
		if d[i], err = parseDuration(v.s); err != nil {
			return fmt.Errorf("%s: %w", v.name, err)
		}
	}
	if d[1] != 0 && d[2] != 0 && d[1] > d[2] {
		return fmt.Errorf("min_backoff %s is above max_backoff %s", l.MinBackoff, l.MaxBackoff)
	}
	return nil
}

// maxVerifierKeyFile bounds a verifier key file.
const maxVerifierKeyFile = 16 << 10

// loadVerifier reads a verifier key: the key text, or the file at an
// absolute path holding it.
func loadVerifier(s string, parse func(string) (*tlog.Verifier, error)) (*tlog.Verifier, error) {
	if filepath.IsAbs(s) {
		b, err := boundedfile.Read(s, maxVerifierKeyFile)
		if err != nil {
			return nil, err
		}
		s = strings.TrimSpace(string(b))
	}
	return parse(s)
}

// LogConfigs reads the log blocks' keys and returns them as outbox
// configurations.
func (c *Config) LogConfigs() ([]LogConfig, error) {
	var out []LogConfig
	for _, l := range c.Logs {
		lv, err := loadVerifier(l.Key, tlog.LogVerifier)
		if err != nil {
			return nil, fmt.Errorf("log %q: key: %w", l.Label, err)
		}
		p := tlog.Policy{Log: lv}
		for _, w := range l.WitnessKeys {
			wv, err := loadVerifier(w, tlog.ParseVerifierKey)
			if err != nil {
				return nil, fmt.Errorf("log %q: witness_keys: %w", l.Label, err)
			}
			p.Witnesses = append(p.Witnesses, wv)
		}
		if l.Quorum != nil {
			p.Quorum = *l.Quorum
			if p.Quorum == 0 {
				p.Witnesses = nil // no witness required: none checked
			}
		}
		if _, err := p.Open(nil); errors.Is(err, tlog.ErrPolicy) {
			return nil, fmt.Errorf("log %q: %w", l.Label, err)
		}
		timeout, _ := parseDuration(l.Timeout)
		minB, _ := parseDuration(l.MinBackoff)
		maxB, _ := parseDuration(l.MaxBackoff)
		out = append(out, LogConfig{Label: l.Label, URL: l.URL, ReadURL: l.ReadURL, Policy: p,
			Concurrency: l.Concurrency, Timeout: timeout, MinBackoff: minB, MaxBackoff: maxB})
	}
	return out, nil
}

// VMBlock is one `vm "NAME" { ... }` block.
type VMBlock struct {
	Name     string   `hcl:"name,label"`
	UUID     string   `hcl:"uuid,optional"`
	QMP      string   `hcl:"qmp"`
	Agent    string   `hcl:"agent,optional"`
	AgentID  string   `hcl:"agent_port_id,optional"`
	Periodic string   `hcl:"periodic,optional"`
	Regions  []string `hcl:"regions,optional"`
	// HostRegions are guest-physical ranges the host measures itself
	// (non-confidential VMs only).
	HostRegions []HostRegionBlock `hcl:"host_region,block"`
}

// HostRegionBlock is one `host_region "ID" { address = ..., size = ... }`.
type HostRegionBlock struct {
	ID      string `hcl:"id,label"`
	Address uint64 `hcl:"address"`
	Size    uint64 `hcl:"size"`
}

// Evidence is the evidence block: how the host checks hardware evidence
// before it signs. It holds what a tee.Trust holds, as configuration
// writes it (file paths, a hex seed), and means what the verify commands'
// flags of the same names mean (--allow-simulated, --amd-roots, ...):
// hvmon daemon reads it into the tee.Trust its verifier is built from
// (evidence.TrustOptions).
type Evidence struct {
	AllowSimulated bool     `hcl:"allow_simulated,optional"`
	SimulatedRoots []string `hcl:"simulated_roots,optional"`
	SimulatedSeed  string   `hcl:"simulated_seed,optional"`
	AllowDebug     bool     `hcl:"allow_debug,optional"`
	AMDRoots       string   `hcl:"amd_roots,optional"`
	IntelRoots     string   `hcl:"intel_roots,optional"`
}

// Defaults of the daemon's configuration.
const (
	DefaultDataDir       = "/var/lib/hvmon"
	DefaultAPISocket     = "/run/hvmon/api.sock"
	DefaultMetricsListen = "127.0.0.1:9464"
)

// ParseConfig parses and validates HCL configuration text. filename names
// it in errors, and relative paths in it (key, data_dir, api_socket,
// watch_dir, a vm's qmp and agent, trust_peers, the evidence block's
// roots) resolve against its directory, as a policy's do.
func ParseConfig(src []byte, filename string) (*Config, error) {
	// hcl's parser recurses: hcldepth bounds the nesting first (deep
	// enough would overflow Go's stack, which is fatal).
	var c Config
	if err := hcldepth.Decode(src, filename, MaxConfigSize, &c); err != nil {
		return nil, err
	}
	c.resolvePaths(filename)
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.APISocket == "" {
		c.APISocket = DefaultAPISocket
	}
	if c.MetricsListen == "" {
		c.MetricsListen = DefaultMetricsListen
	}
	if err := c.validate(filename); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) validate(filename string) error {
	for name, d := range map[string]string{"ttl": c.TTL, "agent_timeout": c.AgentTimeout, "periodic": c.Periodic} {
		if _, err := parseDuration(d); err != nil {
			return fmt.Errorf("%s: %s: %w", filename, name, err)
		}
	}
	if c.MigrationHold != "" && c.MigrationHold != "off" {
		if d, err := parseDuration(c.MigrationHold); err != nil || d == 0 {
			return fmt.Errorf("%s: migration_hold: %q is neither a positive duration nor \"off\"", filename, c.MigrationHold)
		}
	}
	if c.Key == "" {
		return fmt.Errorf("%s: key is required", filename)
	}
	seen := map[string]bool{}
	for _, v := range c.VMs {
		if err := attest.CheckVMName(v.Name); err != nil {
			return fmt.Errorf("%s: vm: %w", filename, err)
		}
		if seen[v.Name] {
			return fmt.Errorf("%s: vm %q defined twice", filename, v.Name)
		}
		seen[v.Name] = true
		if !filepath.IsAbs(v.QMP) || (v.Agent != "" && !filepath.IsAbs(v.Agent)) {
			return fmt.Errorf("%s: vm %q: qmp and agent must be absolute socket paths", filename, v.Name)
		}
		if _, err := parseDuration(v.Periodic); err != nil {
			return fmt.Errorf("%s: vm %q: periodic: %w", filename, v.Name, err)
		}
		for _, h := range v.HostRegions {
			if err := (attest.Region{ID: h.ID, Size: h.Size}).Validate(); err != nil || h.Size == 0 || h.Size > 1<<40 {
				return fmt.Errorf("%s: vm %q: host_region %q: need a valid id and a size of 1 byte to 1 TiB", filename, v.Name, h.ID)
			}
		}
	}
	if c.WatchDir != "" && !filepath.IsAbs(c.WatchDir) {
		return fmt.Errorf("%s: watch_dir must be absolute", filename)
	}
	if l := c.Libvirt; l != nil {
		for _, p := range l.Domains {
			if _, err := filepath.Match(p, ""); err != nil {
				return fmt.Errorf("%s: libvirt: domains: %q: %w", filename, p, err)
			}
		}
	}
	if len(c.Logs) > maxLogs {
		return fmt.Errorf("%s: %d log blocks, at most %d", filename, len(c.Logs), maxLogs)
	}
	labels := map[string]bool{}
	for i := range c.Logs {
		l := &c.Logs[i]
		if err := l.validate(); err != nil {
			return fmt.Errorf("%s: log %q: %w", filename, l.Label, err)
		}
		if labels[l.Label] {
			return fmt.Errorf("%s: log %q defined twice", filename, l.Label)
		}
		labels[l.Label] = true
	}
	for _, p := range c.TrustPeers {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("%s: trust_peers: %q must be an absolute path", filename, p)
		}
	}
	return nil
}

// resolvePaths makes the configuration's relative paths relative to the
// directory of the file it came from (made absolute with the working
// directory when the file name is relative).
func (c *Config) resolvePaths(filename string) {
	base := filepath.Dir(filename)
	if abs, err := filepath.Abs(base); err == nil {
		base = abs
	}
	rel := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	for _, p := range []*string{&c.Key, &c.DataDir, &c.APISocket, &c.WatchDir} {
		rel(p)
	}
	for i := range c.VMs {
		rel(&c.VMs[i].QMP)
		rel(&c.VMs[i].Agent)
	}
	for i := range c.TrustPeers {
		rel(&c.TrustPeers[i])
	}
	if e := c.Evidence; e != nil {
		for i := range e.SimulatedRoots {
			rel(&e.SimulatedRoots[i])
		}
		rel(&e.AMDRoots)
		rel(&e.IntelRoots)
	}
}

// parseDuration parses an optional Go duration ("" is zero); negative
// values are errors.
func parseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration %s", s)
	}
	return d, nil
}

// Durations returns the parsed durations (validated by ParseConfig).
func (c *Config) Durations() (ttl, agentTimeout, periodic time.Duration) {
	ttl, _ = parseDuration(c.TTL)
	agentTimeout, _ = parseDuration(c.AgentTimeout)
	periodic, _ = parseDuration(c.Periodic)
	return
}

// MigrationHoldDuration returns migration_hold (validated by ParseConfig)
// as Options.MigrationHold: negative for "off", zero for the default.
func (c *Config) MigrationHoldDuration() time.Duration {
	if c.MigrationHold == "off" {
		return -1
	}
	d, _ := parseDuration(c.MigrationHold)
	return d
}

// VMConfigs returns the configured VMs as supervisor configurations.
func (c *Config) VMConfigs() []VMConfig {
	_, _, defPeriodic := c.Durations()
	out := make([]VMConfig, 0, len(c.VMs))
	for _, v := range c.VMs {
		p, _ := parseDuration(v.Periodic)
		if v.Periodic == "" {
			p = defPeriodic
		}
		var hrs []HostRegion
		for _, h := range v.HostRegions {
			hrs = append(hrs, HostRegion(h))
		}
		out = append(out, VMConfig{Name: v.Name, UUID: v.UUID, QMP: v.QMP, Agent: v.Agent, AgentPortID: v.AgentID, Periodic: p, Regions: v.Regions, HostRegions: hrs})
	}
	return out
}
