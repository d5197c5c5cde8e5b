package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
)

// app is what every command shares: the process streams and the logger.
// Commands write results to stdout and nothing else; logs and errors go to
// stderr.
type app struct {
	// ctx ends at the first SIGINT or SIGTERM; commands observe it
	// (cobra's cmd.Context() is the same), and so do reads that may block.
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	log    hclog.Logger

	logLevel string
	logJSON  bool
}

// run is the whole program: it parses args, runs one command and returns
// the exit code. It prints at most one error line ("hvmon: ...") to stderr.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "hvmon: internal error (this is a bug): %v\n", r)
			code = exitUsage
		}
	}()
	ctx, stop := signalContext()
	defer stop()

	a := &app{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr, log: hclog.NewNullLogger()}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "hvmon: %s\n", oneLine(err.Error()))
	return exitCode(err)
}

// signalContext returns a context that the first SIGINT or SIGTERM
// cancels. From then on the signals have their default action again, so
// a second one ends the process at once, whatever the command is doing.
func signalContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case <-sigs:
		case <-ctx.Done():
		}
		// Before the cancellation anyone can see: whoever sees the
		// context end may count on the default action.
		signal.Stop(sigs)
		cancel()
	}()
	return ctx, cancel
}

// context is the run's context (Background for an app built in a test).
func (a *app) context() context.Context {
	if a.ctx == nil {
		return context.Background()
	}
	return a.ctx
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:     "hvmon",
		Version: readBuildInfo().String(),
		Short:   "Sign and verify attestation reports over measured memory regions",
		Long: `hvmon is an attestation monitor for QEMU hosts. On a host, "hvmon daemon"
follows VMs over QMP and signs one combined report (a COSE_Sign1 with
ML-DSA-65) per lifecycle event, binding what the guest agent ("hvmon agent")
measured and its hardware evidence to what the host saw. Anywhere, "hvmon
verify" checks a report offline against pinned keys, roots and reference
values. "hvmon demo" runs the whole lifecycle on real QEMU VMs.

Without any VM, hvmon measures files and signs and verifies reports over
them. A typical round trip:

  hvmon keygen -o attester.key
  hvmon attest --key attester.key --region weights=model.bin -o report.cose
  hvmon verify --trust attester.key.pub --expect weights=<root> report.cose

Logs go to stderr, results to stdout.

` + exitCodeHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.setupLogger()
		},
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.PersistentFlags().StringVar(&a.logLevel, "log-level", "warn", "log `LEVEL`: trace, debug, info, warn, error or off")
	root.PersistentFlags().BoolVar(&a.logJSON, "log-json", false, "write logs as JSON lines")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return configErr(fmt.Errorf("%s: %w (see %s --help)", c.CommandPath(), err, c.CommandPath()))
	})
	root.AddCommand(a.keygenCmd(), a.attestCmd(), a.verifyCmd(), a.showCmd(), a.measureCmd())
	root.AddCommand(a.agentCmd(), a.daemonCmd(), a.logCmd(), a.vmCmd(), a.demoCmd())
	root.AddCommand(a.evidenceCmd())
	root.AddCommand(a.hookCmd(), a.libvirtCmd())
	root.AddCommand(a.policyCmd(), a.logdCmd(), a.launchCmd(), a.uiCmd())
	root.AddCommand(a.manCmd())
	return root
}

func (a *app) setupLogger() error {
	level := hclog.LevelFromString(a.logLevel)
	if level == hclog.NoLevel {
		return configErr(fmt.Errorf("--log-level %q: want trace, debug, info, warn, error or off", a.logLevel))
	}
	a.log = hclog.New(&hclog.LoggerOptions{
		Name:       "hvmon",
		Level:      level,
		Output:     a.stderr,
		JSONFormat: a.logJSON,
		Color:      hclog.ColorOff,
	})
	return nil
}

// exactArgs is cobra.ExactArgs with an error that names the command and
// what the argument is.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != n {
			return configErr(fmt.Errorf("%s: want %s, got %d argument(s) (see %s --help)", c.CommandPath(), what, len(args), c.CommandPath()))
		}
		return nil
	}
}

// oneLine keeps an error on one line of stderr.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}
