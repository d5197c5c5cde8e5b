package guest

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/evidence"
	"hvmon.dev/hvmon/evidence/sim"
	"hvmon.dev/hvmon/internal/boundedfile"
)

// MaxConfigSize bounds the agent's configuration file.
const MaxConfigSize = 1 << 20

// MaxMemoryRegion bounds an in-memory test region.
const MaxMemoryRegion = 1 << 30

// Config is the agent's configuration file (JSON; see
// docs/AGENT-PROTOCOL.md, "Agent configuration"). Unknown fields are
// errors.
type Config struct {
	// Port is the virtio-serial port name; empty means DefaultPort.
	Port string `json:"port,omitempty"`
	// Evidence selects the hardware evidence: one of
	// evidence.ProviderNames ("sev-snp", "tdx", "simulated-sev-snp",
	// "simulated-tdx", "auto" to probe, or "none"). Empty means "auto".
	Evidence string `json:"evidence,omitempty"`
	// SimulatedSeed (hex, 16 to 64 bytes) derives the simulated evidence
	// types' signing chain, so that a verifier given the same seed can
	// trust exactly that chain. Never use a seeded chain outside tests and
	// demonstrations: the seed is the whole secret.
	SimulatedSeed string `json:"simulated_seed,omitempty"`
	// SimulatedHostData (hex, 32 bytes) and SimulatedMRConfigID (hex, 48
	// bytes) stand for the values a host sets when it launches an SEV-SNP
	// guest (HOST_DATA) or a TD (MRCONFIGID); the simulated evidence
	// reports them. hvmon puts the VM's identity there (hvmon vm identity
	// NAME), which a policy's bind_vm_identity checks.
	SimulatedHostData   string `json:"simulated_host_data,omitempty"`
	SimulatedMRConfigID string `json:"simulated_mr_config_id,omitempty"`
	// Regions are measured in this order.
	Regions []RegionConfig `json:"regions"`
}

// RegionConfig is one region. Exactly one of File, Memory and Process is
// set.
type RegionConfig struct {
	ID          string `json:"id"`
	Description string `json:"description,omitempty"`
	Protection  string `json:"protection,omitempty"`

	// File regions: Size bytes of File from Offset; Size 0 means to the
	// end of the file, measured at each attestation.
	File   string `json:"file,omitempty"`
	Offset int64  `json:"offset,omitempty"`
	Size   int64  `json:"size,omitempty"`

	// Memory regions live in the agent's own memory: Size bytes, every
	// byte Fill. For tests and demonstrations.
	Memory *MemoryConfig `json:"memory,omitempty"`

	// Process regions: the mappings of a process (by PID, or by the name
	// in /proc/PID/comm) whose path matches Mapping.
	Process *ProcessConfig `json:"process,omitempty"`
}

// MemoryConfig describes an in-memory test region.
type MemoryConfig struct {
	Size int64 `json:"size"`
	Fill byte  `json:"fill"`
}

// ProcessConfig selects process mappings.
type ProcessConfig struct {
	PID     int    `json:"pid,omitempty"`
	Name    string `json:"name,omitempty"`
	Mapping string `json:"mapping"`
}

// ParseConfig parses and validates a configuration.
func ParseConfig(data []byte) (*Config, error) {
	if len(data) > MaxConfigSize {
		return nil, fmt.Errorf("agent config: larger than %d bytes", MaxConfigSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("agent config: data after the JSON object")
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// SimulatedOptions returns the options of the simulated evidence types:
// the seed and the launch values of the configuration.
func (c *Config) SimulatedOptions() (sim.Options, error) {
	var o sim.Options
	for _, f := range []struct {
		name, hex string
		size      int
		out       *[]byte
	}{
		{"simulated_host_data", c.SimulatedHostData, sim.HostDataSize, &o.HostData},
		{"simulated_mr_config_id", c.SimulatedMRConfigID, sim.MRConfigIDSize, &o.MRConfigID},
	} {
		if f.hex == "" {
			continue
		}
		b, err := hex.DecodeString(f.hex)
		if err != nil || len(b) != f.size {
			return o, fmt.Errorf("agent config: %s must be %d bytes of hex", f.name, f.size)
		}
		*f.out = b
	}
	if c.SimulatedSeed != "" {
		o.Seed, _ = hex.DecodeString(c.SimulatedSeed) // checked by Validate
	}
	return o, nil
}

// LoadConfig reads and parses a configuration file.
func LoadConfig(path string) (*Config, error) {
	data, err := boundedfile.Read(path, MaxConfigSize)
	if err != nil {
		return nil, err
	}
	return ParseConfig(data)
}

// Validate checks the configuration's rules.
func (c *Config) Validate() error {
	if c.Evidence != "" && !slices.Contains(evidence.ProviderNames(), c.Evidence) {
		return fmt.Errorf("agent config: unknown evidence %q", c.Evidence)
	}
	if c.SimulatedSeed != "" {
		if b, err := hex.DecodeString(c.SimulatedSeed); err != nil || len(b) < 16 || len(b) > 64 {
			return fmt.Errorf("agent config: simulated_seed must be 16 to 64 bytes of hex")
		}
	}
	if _, err := c.SimulatedOptions(); err != nil {
		return err
	}
	if len(c.Regions) == 0 {
		return fmt.Errorf("agent config: no regions")
	}
	if len(c.Regions) > attest.MaxRegions {
		return fmt.Errorf("agent config: more than %d regions", attest.MaxRegions)
	}
	seen := map[string]bool{}
	for i, r := range c.Regions {
		reg := attest.Region{ID: r.ID, Description: r.Description, Protection: r.Protection}
		if err := reg.Validate(); err != nil {
			return fmt.Errorf("agent config: region %d: %w", i, err)
		}
		if seen[r.ID] {
			return fmt.Errorf("agent config: duplicate region id %q", r.ID)
		}
		seen[r.ID] = true
		kinds := 0
		if r.File != "" {
			kinds++
			if r.Offset < 0 || r.Size < 0 {
				return fmt.Errorf("agent config: region %q: negative offset or size", r.ID)
			}
		} else if r.Offset != 0 || r.Size != 0 {
			return fmt.Errorf("agent config: region %q: offset and size belong to file regions", r.ID)
		}
		if m := r.Memory; m != nil {
			kinds++
			if m.Size <= 0 || m.Size > MaxMemoryRegion {
				return fmt.Errorf("agent config: region %q: memory size must be 1 to %d bytes", r.ID, int64(MaxMemoryRegion))
			}
		}
		if p := r.Process; p != nil {
			kinds++
			if (p.PID > 0) == (p.Name != "") || p.PID < 0 {
				return fmt.Errorf("agent config: region %q: give a process pid or a name, not both", r.ID)
			}
			if p.Mapping == "" {
				return fmt.Errorf("agent config: region %q: process regions need a mapping pattern", r.ID)
			}
		}
		if kinds != 1 {
			return fmt.Errorf("agent config: region %q: give exactly one of file, memory and process", r.ID)
		}
	}
	return nil
}
