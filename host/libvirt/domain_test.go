package libvirt

import (
	"io"
	"io/fs"
	"strings"
	"testing"
)

// liveXML is the shape of a running domain's XML as libvirt 9.0 returned
// it on the test machine (trimmed).
const liveXML = `<domain type='qemu' id='5'>
  <name>tiny1</name>
  <uuid>8c16d2ec-3637-41d1-9f74-2d6ed099523e</uuid>
  <devices>
    <channel type='unix'>
      <source mode='bind' path='/var/lib/libvirt/qemu/channel/target/domain-5-tiny1/org.hvmon.agent.0'/>
      <target type='virtio' name='org.hvmon.agent.0' state='connected'/>
      <alias name='channel0'/>
      <address type='virtio-serial' controller='0' bus='0' port='1'/>
    </channel>
  </devices>
  <launchSecurity type='sev-snp'><policy>0x30000</policy></launchSecurity>
</domain>`

func TestParseDomainXML(t *testing.T) {
	info, err := ParseDomainXML(liveXML)
	if err != nil {
		t.Fatal(err)
	}
	want := DomainInfo{Name: "tiny1", UUID: "8c16d2ec-3637-41d1-9f74-2d6ed099523e", HasAgent: true, AgentOpen: true,
		AgentPath: "/var/lib/libvirt/qemu/channel/target/domain-5-tiny1/org.hvmon.agent.0", AgentAlias: "channel0", LaunchSecurity: "sev-snp"}
	if *info != want {
		t.Fatalf("ParseDomainXML = %+v, want %+v", *info, want)
	}
	// The persistent XML: no path (libvirt picks one per start), no alias.
	persistent := `<domain type='qemu'><name>tiny1</name><devices><channel type='unix'>
      <target type='virtio' name='org.hvmon.agent.0'/></channel></devices></domain>`
	if info, err := ParseDomainXML(persistent); err != nil || !info.HasAgent || info.AgentPath != "" || info.AgentOpen {
		t.Fatalf("persistent XML: %+v, %v", info, err)
	}
	// Another channel (the QEMU guest agent's) is not hvmon's.
	other := strings.ReplaceAll(liveXML, "org.hvmon.agent.0", "org.qemu.guest_agent.0")
	if info, err := ParseDomainXML(other); err != nil || info.HasAgent {
		t.Fatalf("guest agent channel taken for hvmon's: %+v, %v", info, err)
	}
	for name, bad := range map[string]string{
		"not xml":       "<domain",
		"no name":       "<domain type='qemu'></domain>",
		"pty channel":   strings.Replace(liveXML, "type='unix'", "type='pty'", 1),
		"over the size": "<domain><name>" + strings.Repeat("a", MaxDomainXML) + "</name></domain>",
	} {
		if _, err := ParseDomainXML(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestLifecycleNames(t *testing.T) {
	for _, c := range []struct {
		event, detail int
		e, d          string
	}{
		{2, 0, "started", "booted"}, {2, 3, "started", "from_snapshot"}, {5, 4, "stopped", "saved"},
		{5, 6, "stopped", "from_snapshot"}, {4, 1, "resumed", "migrated"}, {3, 0, "suspended", "paused"},
		{99, 0, "event-99", "detail-0"}, {5, 42, "stopped", "detail-42"}, {-1, -1, "event--1", "detail--1"},
	} {
		if e, d := LifecycleNames(c.event, c.detail); e != c.e || d != c.d {
			t.Errorf("LifecycleNames(%d, %d) = %s/%s, want %s/%s", c.event, c.detail, e, d, c.e, c.d)
		}
	}
	if StateName(1) != "running" || StateName(5) != "shutoff" || StateName(12) != "state-12" {
		t.Error("StateName")
	}
}

func FuzzParseDomainXML(f *testing.F) {
	f.Add(liveXML)
	f.Add(snpXML)
	f.Add(`<domain type='qemu'><name>x</name><devices><channel type='unix'><target type='virtio' name='org.hvmon.agent.0'/></channel></devices></domain>`)
	f.Fuzz(func(t *testing.T, doc string) {
		info, err := ParseDomainXML(doc)
		if err != nil {
			return
		}
		if info.Name == "" {
			t.Fatal("accepted a domain without a name")
		}
		if !info.HasAgent && (info.AgentPath != "" || info.AgentAlias != "" || info.AgentOpen) {
			t.Fatalf("agent fields without the agent channel: %+v", info)
		}
		if info.Launch.KernelHashes && info.LaunchSecurity != "sev-snp" {
			t.Fatalf("kernelHashes without SEV-SNP: %+v", info)
		}
		// The launch facts of any domain, with files that do not exist,
		// never panic.
		LaunchFacts(info, func(string) (io.ReadCloser, error) { return nil, fs.ErrNotExist })
	})
}

// snpXML is an SEV-SNP domain with a direct boot.
const snpXML = `<domain type='kvm'><name>snp1</name>
  <vcpu placement='static' current='4'>8</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type>
    <loader type='rom' stateless='yes'>/usr/share/OVMF/OVMF.amdsev.fd</loader>
    <kernel>/boot/vmlinuz</kernel><initrd>/boot/initrd.img</initrd><cmdline>console=ttyS0 ro</cmdline>
  </os>
  <cpu mode='custom' match='exact'><model fallback='forbid'>EPYC-Milan</model></cpu>
  <launchSecurity type='sev-snp' kernelHashes='yes'><policy>0x30000</policy></launchSecurity>
</domain>`

// The launch inputs of an SEV-SNP domain with a direct boot.
func TestParseDomainXMLLaunch(t *testing.T) {
	doc := snpXML
	info, err := ParseDomainXML(doc)
	if err != nil {
		t.Fatal(err)
	}
	want := LaunchInputs{Loader: "/usr/share/OVMF/OVMF.amdsev.fd", Kernel: "/boot/vmlinuz", Initrd: "/boot/initrd.img",
		Cmdline: "console=ttyS0 ro", KernelHashes: true, VCPUs: 4, CPUModel: "EPYC-Milan", CPUMode: "custom"}
	if info.Launch != want {
		t.Errorf("Launch = %+v, want %+v", info.Launch, want)
	}
	doc = strings.Replace(doc, " current='4'", "", 1)
	doc = strings.Replace(doc, " kernelHashes='yes'", "", 1)
	if info, err := ParseDomainXML(doc); err != nil || info.Launch.VCPUs != 8 || info.Launch.KernelHashes {
		t.Errorf("without current and kernelHashes: %+v, %v", info.Launch, err)
	}
}
