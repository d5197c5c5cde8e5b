package libvirt

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"testing"

	"hvmon.dev/hvmon/launch"
)

// amdSevTail ends a firmware shaped like OVMF's AmdSev build: SEV metadata
// (a secrets page at 0x809000, a kernel hashes page at 0x80c000), the SEV-ES
// reset block (0x80b004), the SEV hashes table (0x80c400), the footer table
// and 32 bytes of reset vector.
const amdSevTail = "4153455628000000010000000200000000908000001000000200000000c080000010000010000000a00000001600666588dc4a989847a75e5585a7bf67cc04b080001600de71f7007e1acb4f890e68c77e2fb44e00c48000000400001a001f3755723b3a044b927b1da6efa8d4545800de82b596b21ff745baeaa366c55a082d9090909090909090909090909090909090909090909090909090909090909090"

func testFiles(t *testing.T) map[string][]byte {
	tail, err := hex.DecodeString(amdSevTail)
	if err != nil {
		t.Fatal(err)
	}
	fw := append(make([]byte, 16*launch.PageSize-len(tail)), tail...)
	return map[string][]byte{"/fw.fd": fw, "/vmlinuz": []byte("kernel"), "/initrd.img": []byte("initrd")}
}

func opener(files map[string][]byte) func(string) (io.ReadCloser, error) {
	return func(p string) (io.ReadCloser, error) {
		b, ok := files[p]
		if !ok {
			return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
		}
		return io.NopCloser(bytes.NewReader(b)), nil
	}
}

func TestLaunchFacts(t *testing.T) {
	files := testFiles(t)
	info := &DomainInfo{Name: "snp1", LaunchSecurity: "sev-snp", Launch: LaunchInputs{
		Loader: "/fw.fd", Kernel: "/vmlinuz", Initrd: "/initrd.img", Cmdline: "console=ttyS0",
		KernelHashes: true, VCPUs: 2, CPUModel: "EPYC-Genoa", CPUMode: "custom",
	}}
	fw, err := launch.ParseFirmware(files["/fw.fd"])
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := launch.VCPUSignature("EPYC-Genoa")
	want, err := launch.MeasureSNP(launch.SNPOptions{Firmware: fw, VCPUs: 2, VCPUSignature: sig,
		Boot: launch.NewDirectBoot(files["/vmlinuz"], files["/initrd.img"], "console=ttyS0")})
	if err != nil {
		t.Fatal(err)
	}
	digest := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	f := LaunchFacts(info, opener(files))
	for k, v := range map[string]string{
		FactLaunchFirmware: digest(files["/fw.fd"]), FactLaunchKernel: digest(files["/vmlinuz"]),
		FactLaunchInitrd: digest(files["/initrd.img"]), FactLaunchCmdline: digest([]byte("console=ttyS0\x00")),
		FactLaunchKernelHashes: "yes", FactLaunchVCPUs: "2", FactLaunchCPU: "EPYC-Genoa",
		FactLaunchMeasurement: want.String(),
	} {
		if f[k] != v {
			t.Errorf("fact %s = %q, want %q", k, f[k], v)
		}
	}
	if e, ok := f[FactLaunchError]; ok {
		t.Errorf("unexpected %s: %s", FactLaunchError, e)
	}

	// Without kernelHashes the direct boot is recorded but not measured.
	info.Launch.KernelHashes = false
	noBoot, _ := launch.MeasureSNP(launch.SNPOptions{Firmware: fw, VCPUs: 2, VCPUSignature: sig})
	if f := LaunchFacts(info, opener(files)); f[FactLaunchMeasurement] != noBoot.String() || f[FactLaunchKernelHashes] != "no" || f[FactLaunchKernel] == "" {
		t.Errorf("without kernelHashes: %v, want measurement %s", f, noBoot)
	}
}

func TestLaunchFactsErrors(t *testing.T) {
	files := testFiles(t)
	base := LaunchInputs{Loader: "/fw.fd", VCPUs: 1, CPUModel: "EPYC", CPUMode: "custom"}
	for name, c := range map[string]struct {
		in   LaunchInputs
		want string
	}{
		"no loader":    {LaunchInputs{VCPUs: 1, CPUModel: "EPYC"}, "the domain names no loader (firmware)"},
		"missing file": {LaunchInputs{Loader: "/nope.fd", VCPUs: 1, CPUModel: "EPYC"}, "firmware: open /nope.fd: file does not exist"},
		"passthrough":  {LaunchInputs{Loader: "/fw.fd", VCPUs: 1, CPUMode: "host-passthrough"}, "the CPU has no model (mode \"host-passthrough\"): its signature is the host's, which hvmon does not record"},
		"kernel gone":  {LaunchInputs{Loader: "/fw.fd", Kernel: "/gone", VCPUs: 1, CPUModel: "EPYC"}, "kernel: open /gone: file does not exist"},
		"zero vcpus":   {LaunchInputs{Loader: "/fw.fd", CPUModel: "EPYC"}, "0 vCPUs: want 1 to 4096"},
		"bad model":    {LaunchInputs{Loader: "/fw.fd", VCPUs: 1, CPUModel: "Skylake"}, "unknown vCPU type \"Skylake\""},
	} {
		t.Run(name, func(t *testing.T) {
			f := LaunchFacts(&DomainInfo{LaunchSecurity: "sev-snp", Launch: c.in}, opener(files))
			if got := f[FactLaunchError]; len(got) < len(c.want) || got[:len(c.want)] != c.want {
				t.Errorf("%s = %q, want %q...", FactLaunchError, got, c.want)
			}
			if _, ok := f[FactLaunchMeasurement]; ok {
				t.Errorf("a measurement despite the error: %v", f)
			}
		})
	}
	if f := LaunchFacts(&DomainInfo{Launch: base}, opener(files)); f != nil {
		t.Errorf("a domain without launch security: %v, want nothing", f)
	}
	if f := LaunchFacts(&DomainInfo{LaunchSecurity: "tdx", Launch: base}, opener(files)); f[FactLaunchFirmware] == "" || f[FactLaunchMeasurement] != "" {
		t.Errorf("TDX: %v, want the digests and no measurement", f)
	}
}
