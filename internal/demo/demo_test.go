package demo

import (
	"bytes"
	"strings"
	"testing"

	"hvmon.dev/hvmon/attest"
)

// Every host gets its own key: the given ones are kept, the others
// generated; a shared key or a key for a host the demo does not run is
// refused.
func TestHostKeys(t *testing.T) {
	k1, err := attest.NewKeyFromSeed(bytes.Repeat([]byte{1}, attest.SeedSize))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := hostKeys(map[string]*attest.PrivateKey{DestHost: k1})
	if err != nil {
		t.Fatal(err)
	}
	if keys[DestHost] != k1 || keys[SourceHost] == nil || keys[SourceHost].KeyID() == k1.KeyID() || len(keys) != 2 {
		t.Errorf("hostKeys({%s: k1}) = %v; want k1 for %s and another key for %s", DestHost, keys, DestHost, SourceHost)
	}
	res := &Result{Keys: keys}
	if tk := res.TrustedKeys(); len(tk) != 2 || tk[0].KeyID() != keys[SourceHost].KeyID() || tk[1].KeyID() != k1.KeyID() {
		t.Errorf("TrustedKeys() = %v, want %s's then %s's", tk, SourceHost, DestHost)
	}
	if _, err := hostKeys(map[string]*attest.PrivateKey{SourceHost: k1, DestHost: k1}); err == nil || !strings.Contains(err.Error(), "share a key") {
		t.Errorf("one key for both hosts: %v", err)
	}
	if _, err := hostKeys(map[string]*attest.PrivateKey{"hv-c": k1}); err == nil || !strings.Contains(err.Error(), `"hv-c"`) {
		t.Errorf("a key for another host: %v", err)
	}
}
