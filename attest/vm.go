package attest

import (
	"crypto/sha3"
	"errors"
	"fmt"
	"strings"
)

// VM names (docs/FORMAT.md §6.1). One rule, enforced wherever a name
// enters hvmon (the daemon's configuration, libvirt discovery, the watched
// socket directory, the local API, the agent, hvmon attest) and in
// appraisal; attest.Verify does not enforce it, so that version 1 objects
// signed before the rule existed still verify (a policy contraindicates
// them, and verify --vm matches names byte for byte).
const (
	// VMNameRule is the syntax of a VM name: ASCII letters, digits and
	// "._+@:-", starting with a letter or digit, 1 to MaxVMName bytes. No
	// space, no "/", no glob character, nothing outside ASCII: a trailing
	// space or a look-alike letter can never make a second valid name that
	// reads like the first.
	VMNameRule = "[A-Za-z0-9][A-Za-z0-9._+@:-]{0,127}"
	// MaxVMName is the longest VM name, in bytes.
	MaxVMName = 128
)

// ErrInvalidVMName matches every *InvalidVMNameError.
var ErrInvalidVMName = errors.New("invalid VM name")

// InvalidVMNameError says that a name breaks VMNameRule.
type InvalidVMNameError struct {
	Name string
}

func (e *InvalidVMNameError) Error() string {
	name := fmt.Sprintf("%+q", e.Name)
	if len(e.Name) > 2*MaxVMName {
		// A name from anywhere: the message stays a line long.
		name = fmt.Sprintf("%+q… (%d bytes)", e.Name[:MaxVMName], len(e.Name))
	}
	return fmt.Sprintf("invalid VM name %s: a VM name must match %s", name, VMNameRule)
}

func (e *InvalidVMNameError) Unwrap() error { return ErrInvalidVMName }

// ValidVMName reports whether name matches VMNameRule.
func ValidVMName(name string) bool {
	return validToken(name, MaxVMName, func(c byte) bool {
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
	}, "._+@:-")
}

// CheckVMName returns an *InvalidVMNameError when name breaks VMNameRule.
func CheckVMName(name string) error {
	if !ValidVMName(name) {
		return &InvalidVMNameError{Name: name}
	}
	return nil
}

// FactVMUUID is the host observation fact that carries the VM's UUID (the
// host's statement: libvirt's domain UUID or the configured uuid).
const FactVMUUID = "vm_uuid"

// vmUUID returns the report's vm_uuid fact, or "" when it has none.
func (r *Report) vmUUID() string {
	if r.Host == nil {
		return ""
	}
	return r.Host.Facts[FactVMUUID]
}

// IsAbout reports whether the report is about the VM vm: its workload
// equals vm byte for byte, or vm is a UUID and the report's vm_uuid fact
// is the same UUID (compared without regard to hex letter case). Nothing
// else is folded: "web-1 " and "web-1" are different VMs.
func (r *Report) IsAbout(vm string) bool {
	if r.Workload == vm {
		return true
	}
	u := r.vmUUID()
	return isUUID(vm) && isUUID(u) && strings.EqualFold(u, vm)
}

// isUUID reports whether s is a UUID in its text form, 8-4-4-4-12 hex
// digits (RFC 9562), in either case.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// vmIdentityTag separates VMIdentity from every other hash hvmon makes.
const vmIdentityTag = "hvmon vm identity v1"

// VMIdentity is the value that binds a VM's name to its launch
// (docs/FORMAT.md §8.1): SHA3-256("hvmon vm identity v1" ‖ 0x00 ‖ name).
// The host sets it when it launches a confidential VM (VMIdentityHostData,
// VMIdentityMRConfigID), the hardware reports it in every attestation, and
// a policy with bind_vm_identity checks it against the report's VM name.
func VMIdentity(name string) Digest {
	h := sha3.New256()
	h.Write([]byte(vmIdentityTag))
	h.Write([]byte{0})
	h.Write([]byte(name))
	var d Digest
	h.Sum(d[:0])
	return d
}

// VMIdentityHostData is the SEV-SNP HOST_DATA (32 bytes) hvmon expects for
// the VM name: VMIdentity itself.
func VMIdentityHostData(name string) [32]byte { return VMIdentity(name) }

// VMIdentityMRConfigID is the TDX MRCONFIGID (48 bytes) hvmon expects for
// the VM name: VMIdentity followed by 16 zero bytes.
func VMIdentityMRConfigID(name string) [48]byte {
	var out [48]byte
	d := VMIdentity(name)
	copy(out[:], d[:])
	return out
}
