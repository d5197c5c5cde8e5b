package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// vector is one entry of testdata/vectors/vectors.json (written by package
// attest's generator): a signed object, the verifier's settings, and the
// exit code hvmon verify must give.
type vector struct {
	Name   string            `json:"name"`
	File   string            `json:"file"`
	Trust  []string          `json:"trust"`
	At     time.Time         `json:"at"`
	Nonce  string            `json:"nonce"`
	Expect map[string]string `json:"expect"`
	Strict bool              `json:"strict"`
	Exit   int               `json:"exit"`
	Drift  []string          `json:"drift"`

	AllowHostMeasured bool   `json:"allow_host_measured"`
	RequireHardware   bool   `json:"require_hardware"`
	VM                string `json:"vm"`
	MaxEvidenceAge    string `json:"max_evidence_age"`
}

const vectorDir = "../../testdata"

// TestVectors runs hvmon verify on every shared vector and checks the exit
// code, the verdict line and the drift lines.
func TestVectors(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(vectorDir, "vectors", "vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var vf struct{ Vectors []vector }
	if err := json.Unmarshal(data, &vf); err != nil {
		t.Fatal(err)
	}
	if len(vf.Vectors) == 0 {
		t.Fatal("vectors.json holds no vectors")
	}
	for _, v := range vf.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			args := []string{"verify", "--at", v.At.Format(time.RFC3339)}
			for _, k := range v.Trust {
				args = append(args, "--trust", filepath.Join(vectorDir, "keys", k))
			}
			if v.Nonce != "" {
				args = append(args, "--nonce", v.Nonce)
			}
			ids := make([]string, 0, len(v.Expect))
			for id := range v.Expect {
				ids = append(ids, id)
			}
			slices.Sort(ids)
			for _, id := range ids {
				args = append(args, "--expect", id+"="+v.Expect[id])
			}
			if v.Strict {
				args = append(args, "--strict")
			}
			if v.AllowHostMeasured {
				args = append(args, "--allow-host-measured")
			}
			if v.RequireHardware {
				args = append(args, "--require-hardware")
			}
			if v.VM != "" {
				args = append(args, "--vm", v.VM)
			}
			if v.MaxEvidenceAge != "" {
				args = append(args, "--max-evidence-age", v.MaxEvidenceAge)
			}
			args = append(args, filepath.Join(vectorDir, "vectors", v.File))

			code, stdout, stderr := runIn(t, nil, args...)
			if code != v.Exit {
				t.Fatalf("hvmon %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, v.Exit, stdout, stderr)
			}
			lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			last := lines[len(lines)-1]
			switch {
			case v.Exit == 0 && len(v.Drift) > 0 && !strings.HasPrefix(last, "VALID (drift: "):
				t.Errorf("verdict %q, want VALID with drift", last)
			case v.Exit == 0 && len(v.Drift) == 0 && last != "VALID":
				t.Errorf("verdict %q, want VALID", last)
			case v.Exit != 0 && !strings.HasPrefix(last, "INVALID: "):
				t.Errorf("verdict %q, want INVALID", last)
			}
			for _, id := range v.Drift {
				re := regexp.MustCompile(`(?m)^drift +` + regexp.QuoteMeta(id) + ` +(warn|fail) `)
				if !re.MatchString(stdout) {
					t.Errorf("no drift line for region %s in:\n%s", id, stdout)
				}
			}

			// --json changes the view, not the verdict.
			code, stdout, _ = runIn(t, nil, append([]string{"verify", "--json"}, args[1:]...)...)
			if code != v.Exit {
				t.Errorf("with --json: exit %d, want %d", code, v.Exit)
			}
			var res struct {
				Valid bool   `json:"valid"`
				Error string `json:"error"`
			}
			if err := json.Unmarshal([]byte(stdout), &res); err != nil {
				t.Fatalf("--json output is not JSON: %v\n%s", err, stdout)
			}
			if res.Valid != (v.Exit == 0) || (res.Error == "") != (v.Exit == 0) {
				t.Errorf("--json: valid %v, error %q; want valid %v", res.Valid, res.Error, v.Exit == 0)
			}
		})
	}
}
