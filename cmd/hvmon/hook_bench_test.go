package main

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/host"
)

// BenchmarkHookProcess measures whole hook runs the way libvirt makes
// them: exec of the built hvmon binary with libvirt's four arguments and a
// 3.5 KB domain XML on stdin, posting to a daemon's API handler (with its
// journal synced to disk) over a real unix socket. Side by side, in the
// same run, it measures baselines: exec of /bin/true, and the same binary
// on an event it ignores (process start-up, flag parsing, no socket). It
// reports the median and the 99th percentile of the wall-clock time per
// run, and the median CPU time of the process (less sensitive to other
// load on the machine). For 200 runs each:
//
//	go test -run '^$' -bench HookProcess -benchtime 200x ./cmd/hvmon/
//
// It builds hvmon as shipped (with cgo, hvmon links libvirt, which the
// dynamic loader maps at every start, though the hook never calls it) and
// the small static hvmon-hook, and runs both directly and hvmon-hook
// through the wrapper script "hvmon hook install" writes.
func BenchmarkHookProcess(b *testing.B) {
	dir, err := os.MkdirTemp("", "hvmon-b") // short: unix socket paths are bounded
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	type binary struct {
		name, pkg, cgo string
		sub            []string // the subcommand before the flags
	}
	bins := []binary{
		{"hvmon", ".", "", []string{"hook"}},      // as shipped: cgo (libvirt linked) when available
		{"hvmon-hook", "../hvmon-hook", "0", nil}, // the small hook binary
	}
	paths := map[string]string{}
	for _, bin := range bins {
		path := filepath.Join(dir, bin.name)
		cmd := exec.Command("go", "build", "-o", path, bin.pkg)
		cmd.Env = os.Environ()
		if bin.cgo != "" {
			cmd.Env = append(cmd.Env, "CGO_ENABLED="+bin.cgo)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("building %s: %v\n%s", bin.name, err, out)
		}
		paths[bin.name] = path
	}

	// The daemon's side: a store, a journal on disk, the API handler.
	store, err := host.NewFileStore(filepath.Join(dir, "data"))
	if err != nil {
		b.Fatal(err)
	}
	j, err := host.OpenHookJournal(filepath.Join(dir, "data", "hooks.jsonl"), host.HookJournalOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	key, _ := attest.NewKeyFromSeed(make([]byte, 32))
	hooks, err := host.NewHookService(host.HookOptions{Journal: j, Store: store, TrustedKeys: []*attest.PublicKey{key.PublicKey()}, Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	sup, err := host.New(host.Options{Signer: key, Store: store})
	if err != nil {
		b.Fatal(err)
	}
	defer sup.Close()
	sock := filepath.Join(dir, "api.sock")
	ln, err := host.ListenAPI(sock, "")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: host.APIHandler(sup, store, nil, hooks.Routes)}
	go srv.Serve(ln)
	defer srv.Close()

	xml := hookTestXML(b)
	run := func(b *testing.B, stdin []byte, name string, args ...string) {
		b.Helper()
		times := make([]time.Duration, 0, b.N)
		cpu := make([]time.Duration, 0, b.N)
		for b.Loop() {
			cmd := exec.Command(name, args...)
			cmd.Stdin = bytes.NewReader(stdin)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			t0 := time.Now()
			err := cmd.Run()
			times = append(times, time.Since(t0))
			if cmd.ProcessState != nil {
				cpu = append(cpu, cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
			}
			if err != nil || stderr.Len() != 0 {
				b.Fatalf("%s %q: %v %s", name, args, err, stderr.Bytes())
			}
		}
		q := func(ds []time.Duration, p float64) float64 {
			slices.Sort(ds)
			return float64(ds[min(len(ds)-1, int(p*float64(len(ds))))].Microseconds()) / 1000
		}
		b.ReportMetric(q(times, 0.50), "p50-ms")
		b.ReportMetric(q(times, 0.99), "p99-ms")
		if len(cpu) > 0 {
			// CPU time (user + system) of the process: what the run costs,
			// whatever else the machine is doing.
			b.ReportMetric(q(cpu, 0.50), "cpu-p50-ms")
		}
		b.ReportMetric(0, "ns/op")
	}
	b.Run("bin-true", func(b *testing.B) { run(b, nil, "/bin/true") })
	for _, bin := range bins {
		path := paths[bin.name]
		b.Run(bin.name+"/ignored-event", func(b *testing.B) {
			run(b, xml, path, append(bin.sub, "--driver", "network", "--", "default", "start", "begin", "-")...)
		})
		b.Run(bin.name+"/hook", func(b *testing.B) {
			before := len(j.List("", 0))
			run(b, xml, path, append(bin.sub, "--syslog=false", "--fail-closed", "--api-socket", sock, "--", "llm-1", "start", "begin", "-")...)
			if after := len(j.List("", 0)); after <= before {
				b.Fatalf("the daemon recorded nothing (%d -> %d events)", before, after)
			}
		})
	}
	// As installed: /bin/sh runs the wrapper, which execs hvmon-hook.
	hooksDir := filepath.Join(dir, "hooks")
	wrapper := filepath.Join(hooksDir, "qemu.d", "hvmon")
	if _, _, err := installHook(hooksDir, hookWrapper(paths["hvmon-hook"], sock, 2*time.Second, true)); err != nil {
		b.Fatal(err)
	}
	b.Run("hvmon-hook/wrapper", func(b *testing.B) { run(b, xml, wrapper, "llm-1", "start", "begin", "-") })
}
