package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"hvmon.dev/hvmon/qmp/qmptest"
)

// TestMigrateParameters: max-bandwidth is read and set exactly, also
// libvirt's "unlimited" (8796093022207 MiB/s) and a value no float64
// holds (2^53+1), and a set without it leaves it alone.
func TestMigrateParameters(t *testing.T) {
	s, c := fake(t)
	m := s.EnableMigration(qmptest.MigrationOptions{})
	var args []string
	s.Handle("migrate-set-parameters", func(a json.RawMessage) (any, string, string) {
		args = append(args, string(a))
		var p struct {
			MaxBandwidth *uint64 `json:"max-bandwidth"`
		}
		json.Unmarshal(a, &p)
		if p.MaxBandwidth != nil {
			s.Handle("query-migrate-parameters", func(json.RawMessage) (any, string, string) {
				return map[string]any{"max-bandwidth": *p.MaxBandwidth, "downtime-limit": 300}, "", ""
			})
		}
		return nil, "", ""
	})
	ctx := context.Background()
	p, err := c.QueryMigrateParameters(ctx)
	if err != nil || p.MaxBandwidth == nil || *p.MaxBandwidth != qmptest.DefaultMaxBandwidth {
		t.Fatalf("QueryMigrateParameters = %+v, %v; want max-bandwidth %d", p, err, m.MaxBandwidth())
	}
	const unlimited = 8796093022207 << 20
	for _, want := range []uint64{10, unlimited, 1<<53 + 1} {
		v := want
		if err := c.MigrateSetParameters(ctx, MigrationParameters{MaxBandwidth: &v}); err != nil {
			t.Fatal(err)
		}
		p, err := c.QueryMigrateParameters(ctx)
		if err != nil || p.MaxBandwidth == nil || *p.MaxBandwidth != want {
			t.Fatalf("after setting %d: %+v, %v", want, p, err)
		}
	}
	if err := c.MigrateSetParameters(ctx, MigrationParameters{}); err != nil {
		t.Fatal(err)
	}
	if want := []string{`{"max-bandwidth":10}`, `{"max-bandwidth":9223372036853727232}`, `{"max-bandwidth":9007199254740993}`, `{}`}; !slices.Equal(args, want) {
		t.Fatalf("migrate-set-parameters arguments %q, want %q", args, want)
	}
}

// TestMigrateParametersRefused: QEMU's refusal is a *Error.
func TestMigrateParametersRefused(t *testing.T) {
	s, c := fake(t)
	s.Handle("migrate-set-parameters", func(json.RawMessage) (any, string, string) {
		return nil, "GenericError", "Parameter 'max-bandwidth' expects uint64"
	})
	v := uint64(1)
	var qerr *Error
	err := c.MigrateSetParameters(context.Background(), MigrationParameters{MaxBandwidth: &v})
	if !errors.As(err, &qerr) || qerr.Class != "GenericError" || qerr.Command != "migrate-set-parameters" {
		t.Fatalf("MigrateSetParameters = %v, want a GenericError *Error", err)
	}
	if _, err := c.QueryMigrateParameters(context.Background()); !errors.As(err, &qerr) || qerr.Class != "CommandNotFound" {
		t.Fatalf("QueryMigrateParameters on a QEMU without it = %v", err)
	}
}
