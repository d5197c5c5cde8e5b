package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/internal/atomicfile"
	"hvmon.dev/hvmon/internal/boundedfile"
)

// reportMode is the mode of report files: reports are signed, not secret.
const reportMode = 0o644

// readReport reads a report from path, or from stdin when path is "-". It
// reads at most attest.MaxReportSize+1 bytes, so that an oversize input
// reaches the parser, which refuses it as malformed, without being held in
// memory in full. A path must be a regular file: a FIFO or a device is
// refused at once rather than waited on. Stdin is read until it ends or the
// run is interrupted.
func (a *app) readReport(path string) ([]byte, error) {
	if path == "-" {
		a.log.Debug("reading the report from stdin")
		data, err := a.readInterruptible(a.stdin, attest.MaxReportSize+1)
		if err != nil {
			return nil, configErr(fmt.Errorf("reading stdin: %w", err))
		}
		return data, nil
	}
	data, err := readReportFile(path)
	if err != nil {
		return nil, configErr(err)
	}
	return data, nil
}

// readReportFile reads at most attest.MaxReportSize+1 bytes of the regular
// file at path.
func readReportFile(path string) ([]byte, error) {
	f, err := boundedfile.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, attest.MaxReportSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return data, nil
}

// errInterrupted is the error of a read that a signal ended.
var errInterrupted = errors.New("interrupted")

// readInterruptible reads at most max bytes of r, returning early with
// errInterrupted when the run's context ends (a SIGINT while stdin is a
// terminal or a pipe no one writes).
func (a *app) readInterruptible(r io.Reader, max int64) ([]byte, error) {
	return io.ReadAll(io.LimitReader(ctxReader{a.context(), r}, max))
}

// ctxReader is a reader that gives up when ctx ends, even while the read
// under it blocks. Each Read runs in a goroutine of its own, which a
// cancelled read leaves behind: ctxReader is for the few reads of a run
// whose end is near once a signal came.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if c.ctx.Err() != nil {
		return 0, errInterrupted
	}
	type result struct {
		n   int
		err error
	}
	buf := make([]byte, len(p)) // never p: the goroutine may outlive this call
	done := make(chan result, 1)
	go func() {
		n, err := c.r.Read(buf)
		done <- result{n, err}
	}()
	select {
	case res := <-done:
		return copy(p, buf[:res.n]), res.err
	case <-c.ctx.Done():
		return 0, errInterrupted
	}
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
