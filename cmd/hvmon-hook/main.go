// Command hvmon-hook is "hvmon hook" in a small binary: the program libvirt
// runs for QEMU domain events, as /etc/libvirt/hooks/qemu.d/hvmon (through
// the wrapper "hvmon hook install" writes) or as a symlink named qemu or
// placed in qemu.d.
//
//	hvmon-hook [--api-socket PATH] [--fail-closed] [--timeout D] [--driver qemu] [--syslog=false] [--] OBJECT OPERATION SUB-OPERATION EXTRA
//
// It behaves exactly as "hvmon hook" (see "hvmon hook --help"), with the
// same flags and exit codes: 0 go on, 1 usage error or refused because the
// daemon could not vouch for the event, 3 refused because the daemon
// denied it. It exists because libvirt waits for its hooks: this binary
// links only the standard library and hvmon's hook parser, so it starts in
// a fraction of the time the full hvmon binary takes (package
// initialisation of the verifier's dependencies, and libvirt's shared
// library in cgo builds). Run as a symlink, it takes no flags: libvirt's
// arguments are used as they are, with the defaults.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"hvmon.dev/hvmon/hook"
	"hvmon.dev/hvmon/internal/hookrun"
)

func main() {
	os.Exit(run(os.Args, os.Stdin, os.Stderr))
}

func run(argv []string, stdin io.Reader, stderr io.Writer) int {
	opts := hookrun.Options{Timeout: hookrun.DefaultTimeout, Syslog: true}
	args := argv[1:]
	if !invokedByLibvirt(argv[0]) {
		fs := flag.NewFlagSet("hvmon-hook", flag.ContinueOnError)
		fs.SetOutput(stderr)
		fs.StringVar(&opts.Socket, "api-socket", hookrun.DefaultSocket, "the daemon's API socket `PATH`")
		fs.BoolVar(&opts.FailClosed, "fail-closed", false, "refuse prepare/start of domains that require attestation, and incoming migrations, when the daemon cannot vouch for them")
		fs.DurationVar(&opts.Timeout, "timeout", hookrun.DefaultTimeout, "deadline for the daemon's answer")
		fs.StringVar(&opts.Driver, "driver", hook.DriverQEMU, "libvirt hook `DRIVER` this runs for; only qemu events are forwarded")
		fs.BoolVar(&opts.Syslog, "syslog", true, "also write warnings and refusals to syslog")
		fs.Usage = func() {
			fmt.Fprintln(stderr, "usage: hvmon-hook [flags] [--] OBJECT OPERATION SUB-OPERATION EXTRA (see hvmon hook --help)")
			fs.PrintDefaults()
		}
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return hookrun.ExitOK
			}
			return hookrun.ExitUsage
		}
		args = fs.Args()
	}
	if len(args) != 4 {
		fmt.Fprintf(stderr, "hvmon-hook: want OBJECT OPERATION SUB-OPERATION EXTRA (libvirt's hook arguments), got %d argument(s)\n", len(args))
		return hookrun.ExitUsage
	}
	err := hookrun.Run(context.Background(), opts, args, stdin, stderr, "hvmon-hook: ")
	var he *hookrun.Error
	if errors.As(err, &he) {
		fmt.Fprintf(stderr, "hvmon-hook: %s\n", he)
		return he.Code
	}
	return hookrun.ExitOK
}

// invokedByLibvirt reports whether argv0 is a hook path libvirt runs: a
// file named qemu, or any file in a qemu.d directory.
func invokedByLibvirt(argv0 string) bool {
	return filepath.Base(argv0) == hook.DriverQEMU || filepath.Base(filepath.Dir(argv0)) == hook.DriverQEMU+".d"
}
