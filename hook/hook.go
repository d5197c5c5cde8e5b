// Package hook parses what libvirt hands a hook program and builds the
// message "hvmon hook" forwards to the daemon.
//
// libvirt runs /etc/libvirt/hooks/qemu (and, since libvirt 6.5, every
// executable in /etc/libvirt/hooks/qemu.d/, in alphabetical order after the
// main script) as
//
//	PROGRAM OBJECT OPERATION SUB-OPERATION EXTRA
//
// where OBJECT is the domain's name ("-" when there is none), with the
// domain XML on stdin. The driver ("qemu", "lxc", "network", "daemon", ...)
// is not in the arguments: it is the name of the script (or of the ".d"
// directory) libvirt ran. For "migrate" and "restore" (and for every
// script in qemu.d) the program is a filter: whatever it prints on stdout
// replaces the domain XML. A hook program must therefore print nothing on
// stdout, and it must never call back into libvirt, which waits for it.
//
// Parse is strict and bounded: exactly four arguments of at most MaxArg
// bytes each, at most MaxXML bytes of XML, one <domain> root element with
// exactly one <name>, whose value must equal OBJECT, and no trailing data.
// It never touches the network or libvirt; the package imports only the
// standard library.
//
// A domain marks that its policy requires attestation with an element in
// its <metadata>:
//
//	<metadata>
//	  <hvmon:attestation xmlns:hvmon="https://hvmon.dev/xmlns/libvirt/1" required="yes"/>
//	</metadata>
package hook

import (
	"bytes"
	"crypto/sha3"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Bounds and names.
const (
	// MaxXML bounds the domain XML read from stdin. libvirt's domain XML is
	// a few KiB; 1 MiB leaves room for large device lists.
	MaxXML = 1 << 20
	// MaxArg bounds one argument.
	MaxArg = 1024
	// AgentChannel is the virtio-serial port name of hvmon's guest agent.
	AgentChannel = "org.hvmon.agent.0"
	// Namespace is the XML namespace of hvmon's domain metadata.
	Namespace = "https://hvmon.dev/xmlns/libvirt/1"
	// DriverQEMU is the only driver whose events are forwarded.
	DriverQEMU = "qemu"
)

// Operations of the qemu hook (libvirt 9.0).
const (
	OpPrepare   = "prepare"
	OpStart     = "start"
	OpStarted   = "started"
	OpStopped   = "stopped"
	OpRelease   = "release"
	OpMigrate   = "migrate"
	OpRestore   = "restore"
	OpReconnect = "reconnect"
	OpAttach    = "attach"
)

var qemuOps = map[string]bool{
	OpPrepare: true, OpStart: true, OpStarted: true, OpStopped: true, OpRelease: true,
	OpMigrate: true, OpRestore: true, OpReconnect: true, OpAttach: true,
}

// ErrMalformed matches every error about the arguments or the XML.
var ErrMalformed = errors.New("malformed hook input")

// ErrIgnored is returned for events hvmon does not follow: another driver
// than qemu, or an operation this version does not know. A hook exits 0
// on it.
var ErrIgnored = errors.New("event not followed by hvmon")

// MalformedError says which input was malformed and why.
type MalformedError struct {
	What string // "arguments", "domain XML"
	Err  error
}

func (e *MalformedError) Error() string { return e.What + ": " + e.Err.Error() }
func (e *MalformedError) Is(target error) bool {
	return target == ErrMalformed
}
func (e *MalformedError) Unwrap() error { return e.Err }

func malformed(what, format string, args ...any) error {
	return &MalformedError{What: what, Err: fmt.Errorf(format, args...)}
}

// Args are libvirt's four arguments.
type Args struct {
	Object string `json:"object"` // the domain name
	Op     string `json:"op"`
	SubOp  string `json:"sub_op"`
	Extra  string `json:"extra"`
}

// ParseArgs checks libvirt's arguments: exactly four, each 1 to MaxArg
// bytes of UTF-8 without control characters.
func ParseArgs(args []string) (Args, error) {
	if len(args) != 4 {
		return Args{}, malformed("arguments", "want OBJECT OPERATION SUB-OPERATION EXTRA, got %d argument(s)", len(args))
	}
	names := [4]string{"OBJECT", "OPERATION", "SUB-OPERATION", "EXTRA"}
	for i, a := range args {
		if err := checkText(a, MaxArg); err != nil {
			return Args{}, malformed("arguments", "%s: %v", names[i], err)
		}
	}
	return Args{Object: args[0], Op: args[1], SubOp: args[2], Extra: args[3]}, nil
}

func checkText(s string, max int) error {
	switch {
	case s == "":
		return errors.New("empty")
	case len(s) > max:
		return fmt.Errorf("longer than %d bytes", max)
	case !utf8.ValidString(s):
		return errors.New("not UTF-8")
	case strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		return errors.New("contains a control character")
	}
	return nil
}

// Followed reports whether hvmon forwards events of this driver and
// operation.
func Followed(driver, op string) bool { return driver == DriverQEMU && qemuOps[op] }

// Gates reports whether a fail-closed hook may refuse this operation:
// prepare and start (the domain does not run yet) and an incoming
// migration (migrate on the destination). Refusing any other operation
// changes nothing or kills a running domain.
func Gates(op string) bool { return op == OpPrepare || op == OpStart || op == OpMigrate }

// Domain is what the hook reads from the domain XML.
type Domain struct {
	Name string `json:"name"`
	UUID string `json:"uuid,omitempty"`
	// Agent says the domain has the unix channel whose target is
	// AgentChannel.
	Agent bool `json:"agent"`
	// AgentSocket is that channel's host path; empty when the domain has no
	// channel, or when libvirt chooses the path (see Parse).
	AgentSocket string `json:"agent_socket,omitempty"`
	// LaunchSecurity is <launchSecurity type=...>: "sev", "sev-snp",
	// "tdx", "s390-pv"; empty for none.
	LaunchSecurity string `json:"launch_security,omitempty"`
	// AttestationRequired is set by <hvmon:attestation required="yes"/>
	// in the domain's metadata.
	AttestationRequired bool `json:"attestation_required"`
}

// Message is one hook event as "hvmon hook" sends it to the daemon
// (POST /v1/hook, JSON).
type Message struct {
	Driver string `json:"driver"`
	Args
	Domain Domain `json:"domain"`
	// XMLSHA3 is the SHA3-256 of the domain XML exactly as received (hex).
	XMLSHA3 string `json:"xml_sha3_256"`
	XMLSize int    `json:"xml_size"`
}

// Decision is the daemon's answer to a hook event.
type Decision struct {
	Allow  bool   `json:"allow"`
	Reason string `json:"reason,omitempty"`
	// Seq is the daemon's journal sequence number of the recorded event.
	Seq uint64 `json:"event_seq,omitempty"`
}

// Parse checks the arguments of a hook run for driver and reads the domain
// XML from r (at most MaxXML bytes). It returns ErrIgnored, without
// reading r, for events Followed rejects, and an error matching
// ErrMalformed for bad input.
func Parse(driver string, args []string, r io.Reader) (*Message, error) {
	a, err := ParseArgs(args)
	if err != nil {
		return nil, err
	}
	if !Followed(driver, a.Op) {
		return nil, fmt.Errorf("%w: %s %s", ErrIgnored, driver, a.Op)
	}
	b, err := io.ReadAll(io.LimitReader(r, MaxXML+1))
	if err != nil {
		return nil, malformed("domain XML", "reading stdin: %v", err)
	}
	if len(b) > MaxXML {
		return nil, malformed("domain XML", "larger than %d bytes", MaxXML)
	}
	d, err := ParseDomain(b)
	if err != nil {
		return nil, err
	}
	if d.Name != a.Object {
		return nil, malformed("domain XML", "names domain %q, arguments name %q", d.Name, a.Object)
	}
	sum := sha3.Sum256(b)
	return &Message{Driver: driver, Args: a, Domain: d, XMLSHA3: hex.EncodeToString(sum[:]), XMLSize: len(b)}, nil
}

type xmlDomain struct {
	XMLName  xml.Name `xml:"domain"`
	Names    []string `xml:"name"`
	UUIDs    []string `xml:"uuid"`
	Metadata []struct {
		Attestation []struct {
			Required string `xml:"required,attr"`
		} `xml:"https://hvmon.dev/xmlns/libvirt/1 attestation"`
	} `xml:"metadata"`
	Devices []struct {
		Channels []struct {
			Type   string `xml:"type,attr"`
			Source []struct {
				Mode string `xml:"mode,attr"`
				Path string `xml:"path,attr"`
			} `xml:"source"`
			Target []struct {
				Type string `xml:"type,attr"`
				Name string `xml:"name,attr"`
			} `xml:"target"`
		} `xml:"channel"`
	} `xml:"devices"`
	LaunchSecurity []struct {
		Type string `xml:"type,attr"`
	} `xml:"launchSecurity"`
}

// ParseDomain extracts a Domain from domain XML: one <domain> root with
// exactly one non-empty <name>, at most one <uuid>, <devices>,
// <metadata> and <launchSecurity>, at most one hvmon agent channel and
// attestation element, and nothing but comments and white space after
// the root element. The attestation element's required attribute must be
// "yes" or "no".
func ParseDomain(b []byte) (Domain, error) {
	if len(b) > MaxXML {
		return Domain{}, malformed("domain XML", "larger than %d bytes", MaxXML)
	}
	if !utf8.Valid(b) {
		return Domain{}, malformed("domain XML", "not UTF-8")
	}
	dec := xml.NewDecoder(bytes.NewReader(b))
	var x xmlDomain
	if err := dec.Decode(&x); err != nil {
		if errors.Is(err, io.EOF) {
			return Domain{}, malformed("domain XML", "empty")
		}
		return Domain{}, malformed("domain XML", "%v", err)
	}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Domain{}, malformed("domain XML", "after </domain>: %v", err)
		}
		switch t := tok.(type) {
		case xml.Comment:
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return Domain{}, malformed("domain XML", "text after </domain>")
			}
		default:
			return Domain{}, malformed("domain XML", "trailing data after </domain>")
		}
	}
	var d Domain
	if len(x.Names) != 1 {
		return Domain{}, malformed("domain XML", "want one <name>, got %d", len(x.Names))
	}
	d.Name = strings.TrimSpace(x.Names[0])
	if err := checkText(d.Name, MaxArg); err != nil {
		return Domain{}, malformed("domain XML", "<name>: %v", err)
	}
	if len(x.UUIDs) > 1 || len(x.Devices) > 1 || len(x.Metadata) > 1 || len(x.LaunchSecurity) > 1 {
		return Domain{}, malformed("domain XML", "more than one <uuid>, <devices>, <metadata> or <launchSecurity>")
	}
	if len(x.UUIDs) == 1 {
		d.UUID = strings.TrimSpace(x.UUIDs[0])
		if err := checkUUID(d.UUID); err != nil {
			return Domain{}, malformed("domain XML", "<uuid> %q: %v", d.UUID, err)
		}
	}
	if len(x.LaunchSecurity) == 1 {
		d.LaunchSecurity = x.LaunchSecurity[0].Type
		if err := checkText(d.LaunchSecurity, 64); err != nil {
			return Domain{}, malformed("domain XML", "<launchSecurity type>: %v", err)
		}
	}
	if len(x.Metadata) == 1 {
		switch as := x.Metadata[0].Attestation; {
		case len(as) > 1:
			return Domain{}, malformed("domain XML", "more than one hvmon:attestation element")
		case len(as) == 1:
			switch as[0].Required {
			case "yes":
				d.AttestationRequired = true
			case "no":
			default:
				return Domain{}, malformed("domain XML", "hvmon:attestation required=%q: want yes or no", as[0].Required)
			}
		}
	}
	if len(x.Devices) == 1 {
		for _, c := range x.Devices[0].Channels {
			if len(c.Target) != 1 || c.Target[0].Name != AgentChannel {
				continue
			}
			if d.Agent {
				return Domain{}, malformed("domain XML", "more than one channel named %s", AgentChannel)
			}
			d.Agent = true
			// A unix channel may have no source at all, or one without a
			// path: libvirt then picks the socket per start, and drops paths
			// under its own channel directory from the persistent XML. The
			// path is known only in the live XML (started, and later ops).
			if c.Type != "unix" || len(c.Source) > 1 {
				return Domain{}, malformed("domain XML", "channel %s: want type='unix' with at most one <source>", AgentChannel)
			}
			if len(c.Source) == 0 || c.Source[0].Path == "" {
				continue
			}
			d.AgentSocket = c.Source[0].Path
			if err := checkText(d.AgentSocket, 4096); err != nil || !strings.HasPrefix(d.AgentSocket, "/") {
				return Domain{}, malformed("domain XML", "channel %s: source path %q is not an absolute path", AgentChannel, d.AgentSocket)
			}
		}
	}
	return d, nil
}

// checkUUID accepts libvirt's forms: 32 hex digits, with or without the
// four dashes of the canonical form.
func checkUUID(s string) error {
	h := strings.ReplaceAll(s, "-", "")
	if len(h) != 32 || (len(s) != 32 && len(s) != 36) {
		return errors.New("want 32 hex digits")
	}
	if _, err := hex.DecodeString(h); err != nil {
		return errors.New("want 32 hex digits")
	}
	return nil
}
