package policy

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/tee"
)

// Golden is what Generate writes a starting policy from: a report that
// verified and was chosen as the reference, and the files a verifier of
// the same VM pins.
type Golden struct {
	// Result is attest.Verify's result for the golden report.
	Result *attest.Result
	// Hardware are the decoded fields of its hardware evidence, or nil.
	Hardware *tee.Facts
	// HostKeys are the public key files to pin, as the policy should name
	// them (relative to the policy file, or absolute).
	HostKeys []string
	// The hardware roots the golden report verified with, as the policy
	// should name them; empty for the roots built into hvmon.
	AMDRoots, IntelRoots []string
	AllowSimulated       bool
	SimulatedRoots       []string
	SimulatedSeed        string // hex
}

// Generate writes a starting policy for the golden report's VM, as
// commented HCL for a person to review: the host keys, the hardware roots,
// the hardware kind and its reference values (SEV-SNP measurement, TCB
// and policy bits, or TDX MR_TD, RTMRs, MRCONFIGID and TEE TCB SVN), every
// region's root, and the lifecycle events. Appraising the golden report
// against it affirms, unless the golden report itself breaks a default
// (a debug guest; regions the host measured).
func Generate(g Golden) ([]byte, error) {
	res := g.Result
	if res == nil || !res.Valid || res.Report == nil {
		return nil, errors.New("policy: the golden report did not verify")
	}
	rep := res.Report
	if err := attest.CheckVMName(rep.Workload); err != nil {
		return nil, fmt.Errorf("policy: the golden report's VM: %w", err)
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	w("# hvmon policy, generated from the golden report %s\n", res.ReportHash)
	w("# (VM %s, event %s, issued %s).\n", printableComment(rep.Workload), rep.Event, rep.IssuedAt.UTC().Format("2006-01-02T15:04:05Z"))
	w("# Review every value before trusting it: it says what this one report held,\n")
	w("# not what the VM should hold. docs/POLICY.md describes every setting.\n\n")

	w("# The host keys whose reports are accepted (PEM SPKI, relative to this file).\n")
	w("trust {\n  host_keys = %s\n}\n\n", hclList(g.HostKeys))

	hw := (*attest.HardwareEvidence)(nil)
	if res.Guest != nil {
		hw = res.Guest.Hardware
	}
	if len(g.AMDRoots)+len(g.IntelRoots) > 0 || g.AllowSimulated {
		w("# Hardware roots. Without this block: the AMD and Intel roots built into hvmon.\n")
		w("hardware_roots {\n")
		if len(g.AMDRoots) > 0 {
			w("  amd = %s\n", hclList(g.AMDRoots))
		}
		if len(g.IntelRoots) > 0 {
			w("  intel = %s\n", hclList(g.IntelRoots))
		}
		if g.AllowSimulated {
			w("  # SIMULATED evidence: for tests and demonstrations only.\n")
			w("  allow_simulated = true\n")
			if len(g.SimulatedRoots) > 0 {
				w("  simulated = %s\n", hclList(g.SimulatedRoots))
			}
			if g.SimulatedSeed != "" {
				w("  simulated_seed = %s\n", hclString(g.SimulatedSeed))
			}
		}
		w("}\n\n")
	}

	w("defaults {\n")
	w("  # Only the VMs a vm block names are appraised: any other VM (another\n")
	w("  # name, or this one spelled differently) is contraindicated (unknown_vm).\n")
	w("  # Add a vm block for each VM you accept.\n")
	w("  require_vm_block = true\n")
	if hw != nil {
		w("  # The report must carry hardware evidence, and every region must come from\n")
		w("  # the guest (none measured by the host).\n")
		w("  require_hardware = true\n")
		w("  hardware_types   = [%s]\n", hclString(string(hw.Type)))
	} else {
		w("  # The golden report carries NO hardware evidence: its regions are only as\n")
		w("  # trustworthy as its signer. Set require_hardware = true for confidential VMs.\n")
		w("  require_hardware = false\n")
	}
	w("  # Reports older than this are contraindicated; uncomment to bound them.\n")
	w("  # max_age = \"15m\"\n")
	w("  # The lifecycle events accepted; remove those this VM should never report.\n")
	var events []string
	for _, e := range attest.Events() {
		events = append(events, string(e))
	}
	w("  allowed_events = %s\n", hclList(events))
	w("}\n\n")

	w("# The golden report's VM, by its exact name.\n")
	w("vm %s {\n", hclString(globEscape(rep.Workload)))
	kind := kindOf(g.Hardware)
	if kind != nil {
		field, got, want := kind.identity(g.Hardware, rep.Workload)
		if bytes.Equal(got, want) {
			w("  # The host launched the VM with its name's identity (%s): evidence relabelled\n", field)
			w("  # for another VM is contraindicated.\n")
			w("  bind_vm_identity = true\n")
		} else {
			w("  # Launch the VM with its identity (hvmon vm identity %s) as %s,\n", printableComment(rep.Workload), field)
			w("  # then set this: evidence relabelled for another VM is then contraindicated.\n")
			w("  # bind_vm_identity = true\n")
		}
	}
	claims := slices.Clone(res.AllClaims())
	slices.SortFunc(claims, func(a, c attest.Claim) int { return strings.Compare(a.Region.ID, c.Region.ID) })
	if len(claims) > 0 {
		w("  # Reference roots, one region each; add roots to accept other versions.\n")
	}
	for _, c := range claims {
		if c.Platform == attest.PlatformHost {
			w("  # Measured by the host, not the guest: contraindicated while require_hardware is true.\n")
		}
		w("  region %s {\n    roots = [%s]\n  }\n", hclString(c.Region.ID), hclString(c.Snapshot.Root.String()))
	}
	if kind != nil {
		kind.generate(w, g.Hardware)
	}
	w("}\n")
	return []byte(b.String()), nil
}

func hexs(b []byte) string { return fmt.Sprintf("%x", b) }

// hclString quotes s as an HCL string literal: the escapes HCL knows, and
// template sequences ("${", "%{") doubled so they stay literal.
func hclString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case (r == '$' || r == '%') && strings.HasPrefix(s[i+1:], "{"):
			b.WriteRune(r)
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f || r == 0xfffd:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func hclList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = hclString(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// globEscape makes a VM name a pattern that matches exactly that name.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	if ok, err := path.Match(b.String(), s); err != nil || !ok {
		return s // unreachable for valid UTF-8; the test of Generate checks
	}
	return b.String()
}

// printableComment keeps a name on one comment line.
func printableComment(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
