package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	// Client commands read the daemon's configuration by default: the
	// tests never see the machine's.
	os.Setenv("HVMON_CONFIG", "/nonexistent/hvmon-test.hcl")
	testscript.Main(m, map[string]func(){
		"hvmon": func() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
		// signalContext in a run that ignores its context (TestSecondSignal).
		"hvmon-ignore-signal": func() {
			ctx, stop := signalContext()
			defer stop()
			fmt.Fprintln(os.Stderr, "ready")
			<-ctx.Done()
			fmt.Fprintln(os.Stderr, "first signal seen, carrying on")
			select {}
		},
	})
}

// TestScript runs the scripts in testdata/script. Besides the standard
// testscript commands they can use:
//
//	exits CODE PROGRAM [ARGS...]  run PROGRAM, which must exit with CODE
//	flipbyte FILE OFFSET          xor the byte at OFFSET (negative: from the end; "middle") with 0x01
//	truncate FILE SIZE            cut FILE to SIZE bytes (negative: drop that many from the end)
//	appendhex FILE HEX            append bytes to FILE
//	filemode FILE PERM            FILE's permission bits must be PERM (octal)
//	needovmf FILE                 copy Debian's OVMF_CODE_4M.fd to FILE
//
// and the condition [ovmf]: that firmware is installed, or must be
// (HVMON_REQUIRE_OVMF=1, where needovmf then fails).
//
//	tlogprove VKEY FILE...        log the FILEs in a new test log (fixed key), write its verifier key to VKEY and each FILE's proof to FILE without .cose plus .proof
func TestScript(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("HVMON_CONFIG", "/nonexistent/hvmon-test.hcl")
			return nil
		},
		Condition: func(cond string) (bool, error) {
			if cond != "ovmf" {
				return false, fmt.Errorf("unknown condition %q", cond)
			}
			_, err := os.Stat(debianOVMF)
			return err == nil || os.Getenv("HVMON_REQUIRE_OVMF") == "1", nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits":     cmdExits,
			"flipbyte":  cmdFlipByte,
			"truncate":  cmdTruncate,
			"appendhex": cmdAppendHex,
			"filemode":  cmdFileMode,
			"tlogprove": cmdTlogProve,
			"needovmf":  cmdNeedOVMF,
		},
	})
}

func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits CODE PROGRAM [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		got = ee.ExitCode()
	case err != nil:
		ts.Fatalf("running %s: %v", args[1], err)
	}
	if got != want {
		ts.Fatalf("%s exited with %d, want %d", strings.Join(args[1:], " "), got, want)
	}
}

func cmdFlipByte(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: flipbyte FILE OFFSET")
	}
	data := []byte(ts.ReadFile(args[0]))
	off := len(data) / 2
	if args[1] != "middle" {
		n, err := strconv.Atoi(args[1])
		ts.Check(err)
		off = n
		if n < 0 {
			off = len(data) + n
		}
	}
	if off < 0 || off >= len(data) {
		ts.Fatalf("flipbyte: offset %s outside %s (%d bytes)", args[1], args[0], len(data))
	}
	data[off] ^= 0x01
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), data, 0o644))
}

func cmdTruncate(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: truncate FILE SIZE")
	}
	data := []byte(ts.ReadFile(args[0]))
	n, err := strconv.Atoi(args[1])
	ts.Check(err)
	if n < 0 {
		n += len(data)
	}
	if n < 0 || n > len(data) {
		ts.Fatalf("truncate: size %s outside %s (%d bytes)", args[1], args[0], len(data))
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), data[:n], 0o644))
}

func cmdAppendHex(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: appendhex FILE HEX")
	}
	b, err := parseHex("appendhex", args[1])
	ts.Check(err)
	f, err := os.OpenFile(ts.MkAbs(args[0]), os.O_APPEND|os.O_WRONLY, 0)
	ts.Check(err)
	_, err = f.Write(b)
	ts.Check(errors.Join(err, f.Close()))
}

func cmdFileMode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: filemode FILE PERM")
	}
	want, err := strconv.ParseUint(args[1], 8, 32)
	ts.Check(err)
	st, err := os.Lstat(ts.MkAbs(args[0]))
	ts.Check(err)
	if got := st.Mode().Perm(); got != fs.FileMode(want) {
		ts.Fatalf("%s has mode %04o, want %04o", args[0], got, want)
	}
}

// debianOVMF is the firmware of the launch vectors (Debian's ovmf package).
const debianOVMF = "/usr/share/OVMF/OVMF_CODE_4M.fd"

func cmdNeedOVMF(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: needovmf FILE")
	}
	b, err := os.ReadFile(debianOVMF)
	if err != nil {
		if os.Getenv("HVMON_REQUIRE_OVMF") == "1" {
			ts.Fatalf("%v (install Debian's ovmf package)", err)
		}
		ts.Fatalf("%v: guard the script with [!ovmf] skip", err)
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), b, 0o644))
}
