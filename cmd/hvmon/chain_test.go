package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// chainVectorDir holds the chain audit vectors of package policy.
const chainVectorDir = "../../policy/testdata/chain"

// TestChainScript runs the scripts in testdata/chainscript, with the chain
// vectors under chain/NAME and the vector keys (host.pub, other.pub) in the
// work directory. They can use the commands TestScript offers.
func TestChainScript(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/chainscript",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			if err := os.CopyFS(filepath.Join(env.WorkDir, "chain"), os.DirFS(chainVectorDir)); err != nil {
				return err
			}
			for _, k := range []string{"host.pub", "other.pub"} {
				b, err := os.ReadFile(filepath.Join(vectorDir, "keys", k))
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(env.WorkDir, k), b, 0o644); err != nil {
					return err
				}
			}
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits":    cmdExits,
			"flipbyte": cmdFlipByte,
			"truncate": cmdTruncate,
		},
	})
}

// TestChainVectors runs hvmon verify --chain on every chain vector and
// checks the exit code, the verdict and the findings its want.json names.
func TestChainVectors(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join(chainVectorDir, "*", "want.json"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no chain vectors in %s (%v)", chainVectorDir, err)
	}
	for _, w := range dirs {
		dir := filepath.Dir(w)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			b, err := os.ReadFile(w)
			if err != nil {
				t.Fatal(err)
			}
			var want struct {
				Trust    []string
				Status   string
				Exit     int
				Findings []struct{ Check, Status, Reason, Subject string }
			}
			if err := json.Unmarshal(b, &want); err != nil {
				t.Fatal(err)
			}
			args := []string{"verify"}
			for _, k := range want.Trust {
				args = append(args, "--trust", filepath.Join(vectorDir, "keys", k))
			}
			args = append(args, "--chain", dir)
			code, stdout, stderr := runIn(t, nil, args...)
			if code != want.Exit {
				t.Fatalf("hvmon %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, want.Exit, stdout, stderr)
			}
			lines := strings.Split(strings.TrimSpace(stdout), "\n")
			if last := lines[len(lines)-1]; !strings.HasPrefix(last, "VERDICT: "+want.Status) {
				t.Errorf("last line %q, want VERDICT: %s", last, want.Status)
			}
			for _, f := range want.Findings {
				found := false
				for _, l := range lines {
					fs := strings.Fields(l)
					found = found || len(fs) >= 4 && fs[0] == f.Check && fs[1] == f.Subject && fs[2] == f.Status && fs[3] == f.Reason
				}
				if !found {
					t.Errorf("no line %s %s %s %s in:\n%s", f.Check, f.Subject, f.Status, f.Reason, stdout)
				}
			}

			code, stdout, _ = runIn(t, nil, append([]string{"verify", "--json"}, args[1:]...)...)
			var got struct {
				Status string
				Error  string
				VMs    []struct{ Timeline []json.RawMessage }
			}
			if err := json.Unmarshal([]byte(stdout), &got); err != nil {
				t.Fatalf("--json output is not JSON: %v\n%s", err, stdout)
			}
			if code != want.Exit || got.Status != want.Status || (got.Error != "") != (want.Exit != 0) || len(got.VMs) != 1 {
				t.Errorf("--json: exit %d, status %q, error %q, %d VM(s); want exit %d, status %s, one VM", code, got.Status, got.Error, len(got.VMs), want.Exit, want.Status)
			}
		})
	}
}
