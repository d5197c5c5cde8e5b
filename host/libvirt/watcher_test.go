//go:build cgo

package libvirt

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	golibvirt "libvirt.org/go/libvirt"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/host"
)

// domainXML is a domain with hvmon's agent channel.
func domainXML(name string) string {
	return `<domain type='kvm'><name>` + name + `</name><devices><channel type='unix'>
      <target type='virtio' name='org.hvmon.agent.0'/></channel></devices></domain>`
}

// TestWatcherRefusesBadNames: libvirt accepts domain names with spaces and
// any Unicode; the watcher follows only domains whose name follows the VM
// name rule, and says so once per refused domain, naming it and the rule.
func TestWatcherRefusesBadNames(t *testing.T) {
	store, err := host.NewFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key, _ := attest.NewKeyFromSeed(bytes.Repeat([]byte{1}, attest.SeedSize))
	sup, err := host.New(host.Options{Signer: key, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Close()
	var logs bytes.Buffer
	w, err := New(Options{URI: "test:///default", Supervisor: sup, Domains: []string{"plain*"},
		Logger: hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info})})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, uuid string
		xml        string
		want       bool
	}{
		{"good-1", "u1", domainXML("good-1"), true},
		{"bad name", "u2", domainXML("bad name"), false},
		{"w\u0435b-1", "u3", domainXML("w\u0435b-1"), false},
		{"plain-1", "u4", `<domain type='kvm'><name>plain-1</name></domain>`, true},  // by pattern
		{"other", "u5", `<domain type='kvm'><name>other</name></domain>`, false},     // not wanted: not logged
		{"plain x", "u6", `<domain type='kvm'><name>plain x</name></domain>`, false}, // wanted by pattern, bad name
	} {
		info, err := ParseDomainXML(tc.xml)
		if err != nil {
			t.Fatal(err)
		}
		for range 3 { // as every lifecycle event of an unfollowed domain would
			if got := w.admit(tc.uuid, info); got != tc.want {
				t.Errorf("admit(%q) = %v, want %v", tc.name, got, tc.want)
			}
		}
		want := 0
		if !tc.want && tc.name != "other" {
			want = 1
		}
		if n := strings.Count(logs.String(), "domain="+`"`+tc.name+`"`); n != want {
			t.Errorf("domain %q logged %d time(s), want %d:\n%s", tc.name, n, want, logs.String())
		}
	}
	if !strings.Contains(logs.String(), attest.VMNameRule) {
		t.Errorf("the log does not name the rule:\n%s", logs.String())
	}
}

// TestDaemonDown: a libvirtd that is not running (no socket) is waited
// for; a URI that cannot be right is an error at once.
func TestDaemonDown(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "absent-sock")
	_, err := golibvirt.NewConnect("qemu+unix:///system?socket=" + sock)
	if err == nil || !daemonDown(fmt.Errorf("wrapped: %w", err)) {
		t.Errorf("no libvirtd at %s: %v, daemonDown = false", sock, err)
	}
	for _, uri := range []string{"::not a uri", "qemu:///system?mode=nosuchmode"} {
		if _, err := golibvirt.NewConnect(uri); err == nil || daemonDown(err) {
			t.Errorf("%s: %v, daemonDown = true", uri, err)
		}
	}
}
