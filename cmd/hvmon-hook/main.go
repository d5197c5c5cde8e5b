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
	"strings"

	"hvmon.dev/hvmon/hook"
	"hvmon.dev/hvmon/internal/hookrun"
)

func main() {
	os.Exit(run(os.Args, os.Stdin, os.Stderr))
}

const maxHookFile = 64 << 10

func run(argv []string, stdin io.Reader, stderr io.Writer) int {
	opts := hookrun.Options{Timeout: hookrun.DefaultTimeout, Syslog: true}
	args := argv[1:]
	var fromFile []string
	if len(argv) >= 3 && argv[1] == hookrun.ConfigFlag {
		// libvirt's arguments follow the file's path as they are: a domain
		// may be named like a flag.
		var err error
		if fromFile, err = hookFileFlags(argv[2]); err != nil {
			fmt.Fprintf(stderr, "hvmon-hook: %v\n", err)
			return hookrun.ExitUsage
		}
		args = argv[3:]
	}
	if fromFile != nil || !invokedByLibvirt(argv[0]) {
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
		if fromFile != nil {
			if err := fs.Parse(fromFile); err != nil || fs.NArg() != 0 {
				fmt.Fprintf(stderr, "hvmon-hook: %s: the %q line holds flags only\n", argv[2], strings.TrimSpace(hookrun.FlagsPrefix))
				return hookrun.ExitUsage
			}
		} else {
			if err := fs.Parse(args); err != nil {
				if errors.Is(err, flag.ErrHelp) {
					return hookrun.ExitOK
				}
				return hookrun.ExitUsage
			}
			args = fs.Args()
		}
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

// hookFileFlags reads the flags of a hook file: the words of its one line
// that starts with hookrun.FlagsPrefix.
func hookFileFlags(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxHookFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxHookFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxHookFile)
	}
	var flags []string
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, hookrun.FlagsPrefix); ok {
			if found {
				return nil, fmt.Errorf("%s: more than one %q line", path, strings.TrimSpace(hookrun.FlagsPrefix))
			}
			found, flags = true, strings.Fields(rest)
		}
	}
	if !found {
		return nil, fmt.Errorf("%s: no %q line", path, strings.TrimSpace(hookrun.FlagsPrefix))
	}
	if flags == nil {
		flags = []string{}
	}
	return flags, nil
}

// invokedByLibvirt reports whether argv0 is a hook path libvirt runs: a
// file named qemu, or any file in a qemu.d directory.
func invokedByLibvirt(argv0 string) bool {
	return filepath.Base(argv0) == hook.DriverQEMU || filepath.Base(filepath.Dir(argv0)) == hook.DriverQEMU+".d"
}
