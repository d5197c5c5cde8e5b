package tee

import (
	"errors"
	"strings"
	"testing"
)

// Each rule of Check, with the configuration it refuses.
func TestCheck(t *testing.T) {
	pem := []File{{Name: "roots.pem", Data: []byte("x")}}
	seed := make([]byte, MinSimulatedSeed)
	for _, tc := range []struct {
		name  string
		trust Trust
		want  error
	}{
		{"zero value", Trust{}, nil},
		{"own roots", Trust{AMDRoots: pem, IntelRoots: pem}, nil},
		{"simulated roots, allowed", Trust{AllowSimulated: true, SimulatedRoots: pem}, nil},
		{"simulated seed, allowed", Trust{AllowSimulated: true, SimulatedSeed: seed}, nil},
		{"debug", Trust{AllowDebugUnsafe: true}, nil},
		{"simulated roots, not allowed", Trust{SimulatedRoots: pem}, ErrSimulatedNotAllowed},
		{"simulated seed, not allowed", Trust{SimulatedSeed: seed}, ErrSimulatedNotAllowed},
		{"allowed without roots", Trust{AllowSimulated: true}, ErrNoSimulatedRoots},
		{"allowed with an empty list", Trust{AllowSimulated: true, SimulatedRoots: []File{}}, ErrNoSimulatedRoots},
		{"short seed", Trust{AllowSimulated: true, SimulatedSeed: seed[1:]}, ErrSimulatedSeed},
		{"empty AMD roots", Trust{AMDRoots: []File{}}, ErrEmptyRoots},
		{"empty Intel roots", Trust{IntelRoots: []File{}}, ErrEmptyRoots},
	} {
		if err := tc.trust.Check(); !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
			t.Errorf("%s: Check() = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestParseSimulatedSeed(t *testing.T) {
	good := strings.Repeat("ab", MinSimulatedSeed)
	if b, err := ParseSimulatedSeed(good); err != nil || len(b) != MinSimulatedSeed || b[0] != 0xab {
		t.Errorf("ParseSimulatedSeed(%q) = %x, %v", good, b, err)
	}
	for _, s := range []string{"", "00", good[2:], good[1:], "zz" + good[2:]} {
		if _, err := ParseSimulatedSeed(s); !errors.Is(err, ErrSimulatedSeed) {
			t.Errorf("ParseSimulatedSeed(%q) = %v, want ErrSimulatedSeed", s, err)
		}
	}
}
