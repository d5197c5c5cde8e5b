package libvirt

import (
	"crypto/sha3"
	"encoding/hex"
	"fmt"

	"libvirt.org/go/libvirtxml"

	"hvmon.dev/hvmon/attest"
)

// AgentChannelName is the virtio-serial port name of hvmon's agent
// channel, the target name of the domain's <channel> element.
const AgentChannelName = "org.hvmon.agent.0"

// MaxDomainXML bounds the domain XML hvmon parses.
const MaxDomainXML = 4 << 20

// DomainInfo is what hvmon reads from a domain's XML.
type DomainInfo struct {
	Name string
	UUID string
	// AgentPath is the unix socket of the agent channel: libvirt fills it
	// in the live XML when the domain XML leaves it out.
	AgentPath string
	// AgentAlias is the channel's device alias, which QEMU's
	// VSERPORT_CHANGE events name ("channel0", ...); live XML only.
	AgentAlias string
	// AgentOpen says the guest has the port open (live XML only).
	AgentOpen bool
	// HasAgent says the domain has hvmon's agent channel.
	HasAgent bool
	// LaunchSecurity is "sev", "sev-snp", "tdx", "s390-pv" or "".
	LaunchSecurity string
	// Launch are the launch inputs the XML names.
	Launch LaunchInputs
}

// LaunchInputs are what a confidential VM's launch measurement depends on,
// as a domain XML names them.
type LaunchInputs struct {
	Loader                  string // <os><loader>: the firmware
	Kernel, Initrd, Cmdline string // <os><kernel>, <initrd>, <cmdline>: a direct boot
	// KernelHashes says QEMU puts the direct boot's hashes in the
	// firmware's SEV hashes table (<launchSecurity kernelHashes='yes'>):
	// without it the kernel, initrd and command line are not measured.
	KernelHashes bool
	VCPUs        uint   // <vcpu>, or its current attribute: the vCPUs at launch
	CPUModel     string // <cpu><model>; empty for host-passthrough and host-model
	CPUMode      string // <cpu mode>
}

// ParseDomainXML reads a domain XML document.
func ParseDomainXML(doc string) (*DomainInfo, error) {
	if len(doc) > MaxDomainXML {
		return nil, fmt.Errorf("domain XML is %d bytes, more than %d", len(doc), MaxDomainXML)
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(doc); err != nil {
		return nil, fmt.Errorf("domain XML: %w", err)
	}
	info := &DomainInfo{Name: d.Name, UUID: d.UUID}
	if info.Name == "" {
		return nil, fmt.Errorf("domain XML: no <name>")
	}
	if d.Devices != nil {
		for _, ch := range d.Devices.Channels {
			if ch.Target == nil || ch.Target.VirtIO == nil || ch.Target.VirtIO.Name != AgentChannelName {
				continue
			}
			if ch.Source == nil || ch.Source.UNIX == nil {
				return nil, fmt.Errorf("domain %s: channel %s is not a unix socket channel", d.Name, AgentChannelName)
			}
			info.HasAgent = true
			info.AgentPath = ch.Source.UNIX.Path
			info.AgentOpen = ch.Target.VirtIO.State == "connected"
			if ch.Alias != nil {
				info.AgentAlias = ch.Alias.Name
			}
			break
		}
	}
	if os := d.OS; os != nil {
		if os.Loader != nil {
			info.Launch.Loader = os.Loader.Path
		}
		info.Launch.Kernel, info.Launch.Initrd, info.Launch.Cmdline = os.Kernel, os.Initrd, os.Cmdline
	}
	if v := d.VCPU; v != nil {
		info.Launch.VCPUs = v.Value
		if v.Current != 0 {
			info.Launch.VCPUs = v.Current
		}
	}
	if c := d.CPU; c != nil {
		info.Launch.CPUMode = c.Mode
		if c.Model != nil {
			info.Launch.CPUModel = c.Model.Value
		}
	}
	if ls := d.LaunchSecurity; ls != nil {
		switch {
		case ls.SEVSNP != nil:
			info.LaunchSecurity = "sev-snp"
			info.Launch.KernelHashes = ls.SEVSNP.KernelHashes == "yes"
		case ls.SEV != nil:
			info.LaunchSecurity = "sev"
		case ls.TDX != nil:
			info.LaunchSecurity = "tdx"
		case ls.S390PV != nil:
			info.LaunchSecurity = "s390-pv"
		}
	}
	return info, nil
}

// CheckName refuses a domain whose name breaks hvmon's VM name rule
// (attest.VMNameRule; libvirt itself allows spaces and any Unicode). hvmon
// does not follow such a domain: its reports would carry a name that a
// policy contraindicates, and that could read like another VM's.
func (d *DomainInfo) CheckName() error { return attest.CheckVMName(d.Name) }

// XMLDigest is the SHA3-256 of a domain XML document as libvirt returned
// it, in hex: the "domain_xml_sha3" observation.
func XMLDigest(doc string) string {
	h := sha3.Sum256([]byte(doc))
	return hex.EncodeToString(h[:])
}
