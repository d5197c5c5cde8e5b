package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/hook"
	"hvmon.dev/hvmon/host"
	"hvmon.dev/hvmon/internal/atomicfile"
	"hvmon.dev/hvmon/internal/boundedfile"
	"hvmon.dev/hvmon/internal/hookrun"
)

// This file is "hvmon hook": the program libvirt runs for QEMU domain
// events. It reads its arguments and the domain XML, posts the event to the
// daemon's API socket with a short deadline, and exits. It never loads or
// calls libvirt (libvirt waits for the hook: a call back deadlocks), and it
// never writes to stdout (for migrate and restore, and for every script in
// qemu.d, libvirt takes stdout as a replacement domain XML).

// hookWrapperMarker identifies the wrapper scripts "hvmon hook install"
// writes; install and uninstall touch no file without it.
const hookWrapperMarker = "# hvmon-hook-wrapper v1"

// hookArgs turns libvirt's argv into hvmon's when the binary runs as a
// hook itself (a symlink named qemu, or any name in a qemu.d directory):
// "hvmon hook -- OBJECT OP SUB-OP EXTRA". Any other argv[0] is hvmon's
// own command line.
func hookArgs(argv []string) []string {
	if len(argv) == 0 {
		return nil
	}
	if filepath.Base(argv[0]) == hook.DriverQEMU || filepath.Base(filepath.Dir(argv[0])) == hook.DriverQEMU+".d" {
		return append([]string{"hook", "--"}, argv[1:]...)
	}
	return argv[1:]
}

type hookFlags struct {
	socket     string
	failClosed bool
	timeout    time.Duration
	driver     string
	syslog     bool
}

func (a *app) hookCmd() *cobra.Command {
	var f hookFlags
	cmd := &cobra.Command{
		Use:   "hook [flags] [--] OBJECT OPERATION SUB-OPERATION EXTRA",
		Short: "Forward a libvirt hook event to the daemon (run by libvirt)",
		Long: `Forward a libvirt QEMU hook event to the daemon and exit.

libvirt runs its hooks as PROGRAM OBJECT OPERATION SUB-OPERATION EXTRA with
the domain XML on stdin. "hvmon hook install" writes a wrapper script to
/etc/libvirt/hooks/qemu.d/hvmon that runs this command; a symlink named
qemu (or any name in qemu.d) to the hvmon binary works too, with the
default flags. Put "--" before the arguments in wrapper scripts, so that a
domain named like a subcommand stays an argument.

The event (domain name, UUID, agent channel path, launch security type,
the hvmon:attestation marker and the SHA3-256 of the XML) is posted to
POST /v1/hook on --api-socket, within --timeout. The daemon records it and
answers allow or deny; only an incoming migration (operation migrate) can
be denied: the newest stored report of the domain must verify.

Default (fail-open): the hook always exits 0. When the daemon cannot be
reached or would deny, it says so in one line on stderr and in syslog.
libvirt logs a hook's stderr only at debug level when it exits 0.

--fail-closed: the hook refuses (exits non-zero; libvirt logs the line and
aborts the operation)
  - prepare and start of a domain whose XML carries
    <hvmon:attestation required="yes"/> when the daemon cannot be reached
    or the input is malformed (exit 1);
  - an incoming migrate when the daemon cannot be reached (exit 1) or
    denies it (exit 3).
Every other operation exits 0: refusing it would stop nothing.

Other drivers (network, daemon, lxc) and unknown operations exit 0 at once.
The hook prints nothing on stdout.

hvmon-hook (built from ./cmd/hvmon-hook) is this command in a small static
binary, with the same flags and exit codes; it starts several times faster
than hvmon, whose start-up libvirt would wait for at every domain event.
"hvmon hook install" uses it when it lies next to hvmon.`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 4 {
				return configErr(fmt.Errorf("%s: want OBJECT OPERATION SUB-OPERATION EXTRA (libvirt's hook arguments), got %d argument(s) (see %s --help)",
					c.CommandPath(), len(args), c.CommandPath()))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runHook(cmd.Context(), f, args)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.socket, "api-socket", hookrun.DefaultSocket, "the daemon's API socket `PATH`")
	fl.BoolVar(&f.failClosed, "fail-closed", false, "refuse prepare/start of domains that require attestation, and incoming migrations, when the daemon cannot vouch for them")
	fl.DurationVar(&f.timeout, "timeout", hookrun.DefaultTimeout, "deadline for the daemon's answer")
	fl.StringVar(&f.driver, "driver", hook.DriverQEMU, "libvirt hook `DRIVER` this runs for; only qemu events are forwarded")
	fl.BoolVar(&f.syslog, "syslog", true, "also write warnings and refusals to syslog (when /dev/log is there)")
	cmd.AddCommand(a.hookInstallCmd(), a.hookUninstallCmd(), a.hookEventsCmd())
	return cmd
}

func (a *app) hookEventsCmd() *cobra.Command {
	var (
		loc    daemonLocation
		vm     string
		limit  int
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "events [--vm NAME] [--limit N] [--json] [--api-socket PATH]",
		Short: "List the hook events a running daemon recorded, oldest first",
		Long: `List the libvirt hook events a running daemon recorded (GET /v1/hooks):
the newest ones it holds in memory, oldest first. The complete record is
data_dir/hooks.jsonl, one JSON object a line.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return configErr(errors.New("--limit must not be negative"))
			}
			c, explain, err := loc.client(cmd)
			if err != nil {
				return err
			}
			evs, err := c.Hooks(cmd.Context(), vm, limit)
			if err != nil {
				return explain(err)
			}
			if asJSON {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(evs)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tRECEIVED\tVM\tOP\tSUB-OP\tDECISION\tREASON")
			for _, e := range evs {
				d := "allow"
				if !e.Allow {
					d = "deny"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Received.Format(time.RFC3339), printable(e.VM()), printable(e.Op), printable(e.SubOp), d, printable(e.Reason))
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	loc.flags(f, true, false)
	f.StringVar(&vm, "vm", "", "only the events of domain `NAME`")
	f.IntVar(&limit, "limit", 0, "at most the newest `N` events (0: all the daemon holds)")
	f.BoolVar(&asJSON, "json", false, "print the events as JSON")
	return cmd
}

// hookRefusal is a failed hook run. It exits exitTrust when the daemon
// denied the event (it matches attest.ErrTrust for exitCode), and
// exitUsage otherwise.
type hookRefusal struct{ err *hookrun.Error }

func (e hookRefusal) Error() string { return e.err.Error() }
func (e hookRefusal) Unwrap() error { return e.err }
func (e hookRefusal) Is(target error) bool {
	return e.err.Code == hookrun.ExitRefused && target == attest.ErrTrust
}

func (a *app) runHook(ctx context.Context, f hookFlags, args []string) error {
	err := hookrun.Run(ctx, hookrun.Options{Socket: f.socket, FailClosed: f.failClosed, Timeout: f.timeout, Driver: f.driver, Syslog: f.syslog},
		args, ctxReader{ctx, a.stdin}, a.stderr, "hvmon: ") // a signal ends the run even while stdin blocks
	var he *hookrun.Error
	if errors.As(err, &he) {
		if !he.Refusal {
			return configErr(he)
		}
		return hookRefusal{he}
	}
	return err
}

func (a *app) hookInstallCmd() *cobra.Command {
	var (
		dir, binary string
		loc         daemonLocation
		failClosed  bool
		timeout     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "install [--dir DIR] [--binary PATH] [--fail-closed] [--api-socket PATH] [--timeout D]",
		Short: "Install hvmon as a libvirt QEMU hook (DIR/qemu.d/hvmon)",
		Long: `Write DIR/qemu.d/hvmon, which runs the hook with the given flags for
every QEMU domain event: hvmon-hook (the same hook in a small binary that
starts several times faster) when it lies next to this hvmon executable or
--binary names it, otherwise "hvmon hook". For hvmon-hook the file starts
with "#!HVMON-HOOK --config": the kernel runs hvmon-hook directly, which
reads its flags from the file's "flags:" line; no shell runs per event. A
path that cannot go in a "#!" line, and "hvmon hook", get a /bin/sh
wrapper instead. libvirt (6.5 and later) runs every
executable in qemu.d, in alphabetical order, after DIR/qemu: an existing
qemu script is kept and still runs first, and a failure of any of them
aborts the operation.

Running install again with the same flags changes nothing; with other
flags it rewrites the wrapper. A DIR/qemu.d/hvmon that install did not
write is never replaced. libvirt finds hooks only when it starts: restart
libvirtd (or virtqemud) afterwards.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if binary == "" {
				exe, err := os.Executable()
				if err != nil {
					return configErr(fmt.Errorf("--binary: %w", err))
				}
				binary = exe
				if small := filepath.Join(filepath.Dir(exe), "hvmon-hook"); isExecutable(small) {
					binary = small
				}
			}
			socket, from, err := loc.apiSocket(cmd)
			if err != nil {
				return err
			}
			if from == "--api-socket" {
				// The socket given is the hook's; say when the daemon's
				// configuration names another, which it would not reach.
				if cfg, err := loc.config(cmd); err == nil && cfg != nil && cfg.APISocket != socket {
					fmt.Fprintf(a.stderr, "hvmon: warning: the hook will use %s, but %s names api_socket %s\n", socket, loc.configPath, cfg.APISocket)
				}
			}
			if !filepath.IsAbs(binary) || !filepath.IsAbs(socket) {
				return configErr(errors.New("--binary and --api-socket must be absolute paths"))
			}
			if !isExecutable(binary) {
				return configErr(fmt.Errorf("--binary %s: not an executable file", binary))
			}
			if timeout <= 0 {
				return configErr(errors.New("--timeout must be positive"))
			}
			res, changed, err := installHook(dir, hookWrapper(binary, socket, timeout, failClosed))
			if err != nil {
				return configErr(err)
			}
			fmt.Fprintln(a.stdout, res)
			if _, err := os.Stat(filepath.Join(dir, hook.DriverQEMU)); err == nil {
				fmt.Fprintf(a.stdout, "kept %s: libvirt runs it first, then the scripts in %s\n", filepath.Join(dir, hook.DriverQEMU), filepath.Join(dir, "qemu.d"))
			}
			if changed {
				fmt.Fprintln(a.stdout, "restart libvirtd (or virtqemud) so that libvirt finds the hook: systemctl restart libvirtd")
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&dir, "dir", "/etc/libvirt/hooks", "libvirt's hooks `DIR`")
	fl.StringVar(&binary, "binary", "", "the hvmon-hook or hvmon `PATH` the wrapper runs (default: hvmon-hook next to this executable, else this executable)")
	loc.flags(fl, true, false)
	fl.BoolVar(&failClosed, "fail-closed", false, "install the hook in fail-closed mode (see hvmon hook --help)")
	fl.DurationVar(&timeout, "timeout", 2*time.Second, "deadline for the daemon's answer")
	return cmd
}

func (a *app) hookUninstallCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "uninstall [--dir DIR]",
		Short: "Remove the hook that install wrote (DIR/qemu.d/hvmon), and nothing else",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, changed, err := uninstallHook(dir)
			if err != nil {
				return configErr(err)
			}
			fmt.Fprintln(a.stdout, res)
			if changed {
				fmt.Fprintln(a.stdout, "restart libvirtd (or virtqemud) so that libvirt stops running it: systemctl restart libvirtd")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "/etc/libvirt/hooks", "libvirt's hooks `DIR`")
	return cmd
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// maxShebang keeps the "#!" line within what every Linux kernel reads
// of it (127 bytes before 5.1).
const maxShebang = 127

func hookWrapper(binary, socket string, timeout time.Duration, failClosed bool) []byte {
	var b bytes.Buffer
	flags := fmt.Sprintf("--api-socket %s --timeout %s", socket, timeout)
	if failClosed {
		flags += " --fail-closed"
	}
	shebang := "#!" + binary + " " + hookrun.ConfigFlag
	if strings.HasPrefix(filepath.Base(binary), "hvmon-hook") && len(shebang) <= maxShebang && !strings.ContainsAny(binary+socket, " \t\n") {
		// The kernel runs hvmon-hook with this file's path; hvmon-hook reads
		// the flags line. No shell in between.
		fmt.Fprintf(&b, "%s\n%s\n", shebang, hookWrapperMarker)
		b.WriteString("# Written by \"hvmon hook install\"; \"hvmon hook uninstall\" removes it.\n")
		b.WriteString("# libvirt runs it for every QEMU domain event, after ../qemu if that exists:\n")
		b.WriteString("# the kernel starts hvmon-hook, which reads its flags from the next line.\n")
		fmt.Fprintf(&b, "%s%s\n", hookrun.FlagsPrefix, flags)
		return b.Bytes()
	}
	fmt.Fprintf(&b, "#!/bin/sh\n%s\n", hookWrapperMarker)
	b.WriteString("# Written by \"hvmon hook install\"; \"hvmon hook uninstall\" removes it.\n")
	b.WriteString("# libvirt runs it for every QEMU domain event, after ../qemu if that exists.\n")
	sub := " hook"
	if strings.HasPrefix(filepath.Base(binary), "hvmon-hook") {
		sub = "" // the small binary is the hook command itself
	}
	fmt.Fprintf(&b, "exec %s%s --api-socket %s --timeout %s", shellQuote(binary), sub, shellQuote(socket), timeout)
	if failClosed {
		b.WriteString(" --fail-closed")
	}
	b.WriteString(" -- \"$@\"\n")
	return b.Bytes()
}

// ourWrapper reads path and reports whether install wrote it. A path that
// does not exist is (false, fs.ErrNotExist).
func ourWrapper(path string) ([]byte, bool, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return nil, false, err
	}
	if !st.Mode().IsRegular() || st.Size() > 64<<10 {
		return nil, false, nil
	}
	b, err := boundedfile.Read(path, 64<<10) // not a FIFO swapped in since the Lstat
	if errors.Is(err, boundedfile.ErrNotRegular) || errors.Is(err, boundedfile.ErrTooLarge) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	lines := strings.SplitN(string(b), "\n", 3)
	return b, len(lines) == 3 && lines[1] == hookWrapperMarker, nil
}

func installHook(dir string, wrapper []byte) (string, bool, error) {
	d := filepath.Join(dir, "qemu.d")
	if err := atomicfile.MkdirAll(d, 0o755); err != nil {
		return "", false, fmt.Errorf("hook install: %w", err)
	}
	path := filepath.Join(d, "hvmon")
	old, ours, err := ourWrapper(path)
	switch {
	case err == nil && !ours:
		return "", false, fmt.Errorf("hook install: %s exists and was not written by hvmon hook install; move it away first", path)
	case err == nil && bytes.Equal(old, wrapper):
		return "already installed: " + path, false, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return "", false, fmt.Errorf("hook install: %w", err)
	}
	// The whole script appears at once, and the temporary file goes in
	// DIR, where libvirt runs only files with the drivers' names, not in
	// qemu.d, where it runs every executable. Only our own wrapper is
	// replaced: a file that appeared since the check above stays.
	opts := atomicfile.Options{TempDir: dir, Replace: old != nil}
	if err := atomicfile.Write(path, wrapper, 0o755, opts); err != nil {
		return "", false, fmt.Errorf("hook install: %w", err)
	}
	if old != nil {
		return "updated " + path, true, nil
	}
	return "installed " + path, true, nil
}

func uninstallHook(dir string) (string, bool, error) {
	path := filepath.Join(dir, "qemu.d", "hvmon")
	_, ours, err := ourWrapper(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "nothing to remove: " + path + " does not exist", false, nil
	case err != nil:
		return "", false, fmt.Errorf("hook uninstall: %w", err)
	case !ours:
		return "", false, fmt.Errorf("hook uninstall: %s was not written by hvmon hook install; left alone", path)
	}
	if err := os.Remove(path); err != nil {
		return "", false, fmt.Errorf("hook uninstall: %w", err)
	}
	return "removed " + path, true, nil
}

// newHookService opens the daemon's hook journal (data_dir/hooks.jsonl)
// and returns the service that answers hvmon hook, trusting the given keys
// (the host's own and its trust_peers') for incoming migrations.
func newHookService(cfg *host.Config, trusted []*attest.PublicKey, store host.Store, ev attest.EvidenceVerifier, reg prometheus.Registerer, log hclog.Logger) (*host.HookService, *host.HookJournal, error) {
	j, err := host.OpenHookJournal(filepath.Join(cfg.DataDir, "hooks.jsonl"), host.HookJournalOptions{Logger: log})
	if err != nil {
		return nil, nil, configErr(err)
	}
	h, err := host.NewHookService(host.HookOptions{Journal: j, Store: store, TrustedKeys: trusted, Evidence: ev, Registerer: reg, Logger: log})
	if err != nil {
		j.Close()
		return nil, nil, err
	}
	return h, j, nil
}
