package main

import (
	"fmt"
	"io"
	"os"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/internal/atomicfile"
)

// reportMode is the mode of report files: reports are signed, not secret.
const reportMode = 0o644

// readReport reads a report from path, or from stdin when path is "-". It
// reads at most attest.MaxReportSize+1 bytes, so that an oversize input
// reaches the parser, which refuses it as malformed, without being held in
// memory in full.
func (a *app) readReport(path string) ([]byte, error) {
	var r io.Reader = a.stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, configErr(err)
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return nil, configErr(err)
		}
		if st.IsDir() {
			return nil, configErr(fmt.Errorf("%s is a directory", path))
		}
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, attest.MaxReportSize+1))
	if err != nil {
		return nil, configErr(fmt.Errorf("reading %s: %w", displayName(path), err))
	}
	return data, nil
}

// writeOutput writes data to stdout when path is "-", or else atomically to
// path, replacing any file there.
func (a *app) writeOutput(path string, data []byte) error {
	if path == "-" {
		_, err := a.stdout.Write(data)
		return configErr(err)
	}
	return configErr(atomicfile.Write(path, data, reportMode, atomicfile.Options{Replace: true}))
}

func displayName(path string) string {
	if path == "-" {
		return "stdin"
	}
	return path
}
