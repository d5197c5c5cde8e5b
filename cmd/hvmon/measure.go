package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"hvmon.dev/hvmon/measure"
	"hvmon.dev/hvmon/measure/fileregion"
	"hvmon.dev/hvmon/measure/proc"
)

// maxRepeat bounds measure --repeat.
const maxRepeat = 1_000_000

func (a *app) measureCmd() *cobra.Command {
	var (
		asJSON, progress bool
		repeat           int
		interval         time.Duration
	)
	cmd := &cobra.Command{
		Use:   "measure [--json] [--progress] [--repeat N [--interval D]] FILE|pid:PID:PATTERN ...",
		Short: "Print the fingerprint (page-tree root) of files and process memory",
		Long: `Measure regions and print, for each, its root (the region fingerprint of
docs/FORMAT.md §3, as attest signs it), its size in bytes, the mode of the
measurement and the region:

  ROOT SIZE MODE REGION

A region is a FILE, measured whole, or pid:PID:PATTERN: the memory of
process PID in the mappings whose pathname (as /proc/PID/maps shows it)
contains PATTERN, a plain substring. The pattern must select one run of
adjacent mappings of one file; the region is their address range, read
through /proc/PID/mem as the process sees it. Reading another process's
memory needs root or ptrace rights over it. A path that starts with "pid:"
is written ./pid:... .

--repeat N measures every region N times, --interval apart. After the
first pass, a process region is re-measured incrementally: only the pages
the kernel's soft-dirty bits mark as written since the previous pass are
read again. MODE is "full" (first pass), "incremental", or "full-fallback"
when an incremental pass was not possible (the reason is logged, and
given in --json). Files are always measured in full.

--json prints one JSON object a line for each measurement, with the pages
that changed since the previous pass. --progress draws a progress bar on
stderr when stderr is a terminal, and nothing otherwise.

Exit codes: 0 measured, 1 usage or I/O error.`,
		Example: `  hvmon measure model.safetensors
  hvmon measure --progress --json /models/*.bin
  hvmon measure --repeat 10 --interval 30s pid:4242:llama.bin`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return configErr(fmt.Errorf("%s: want at least one FILE or pid:PID:PATTERN (see %s --help)", c.CommandPath(), c.CommandPath()))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if repeat < 1 || repeat > maxRepeat {
				return configErr(fmt.Errorf("--repeat %d: want 1 to %d", repeat, maxRepeat))
			}
			if interval < 0 {
				return configErr(fmt.Errorf("--interval %s: want a duration of 0 or more", interval))
			}
			regions := make([]*region, 0, len(args))
			defer func() {
				for _, r := range regions {
					r.close()
				}
			}()
			for _, arg := range args {
				r, err := openRegion(arg)
				if err != nil {
					return err
				}
				regions = append(regions, r)
			}
			showBar := progress && isTerminal(a.stderr)
			ctx := cmd.Context()
			for pass := 1; pass <= repeat; pass++ {
				if pass > 1 {
					select {
					case <-ctx.Done():
						return ctx.Err()
					case <-time.After(interval):
					}
				}
				for _, r := range regions {
					if err := a.measureOne(cmd, r, pass, asJSON, showBar); err != nil {
						return err
					}
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print one JSON object a line for each measurement")
	f.BoolVar(&progress, "progress", false, "show a progress bar with throughput on stderr (only when it is a terminal)")
	f.IntVar(&repeat, "repeat", 1, "measure every region `N` times; passes after the first are incremental where possible")
	f.DurationVar(&interval, "interval", time.Second, "pause `D` between passes of --repeat")
	return cmd
}

// region is one argument of hvmon measure, open for the whole run.
type region struct {
	name       string
	src        measure.Source
	tracker    *measure.Tracker
	tracks     bool // the source can re-measure incrementally
	close      func() error
	onProgress func(bytes int64) // set around a pass that shows progress
}

func newRegion(name string, src measure.Source, tracks bool, close func() error) *region {
	r := &region{name: name, src: src, tracks: tracks, close: close}
	r.tracker = measure.NewTracker(src, &measure.Options{Progress: func(n int64) {
		if f := r.onProgress; f != nil {
			f(n)
		}
	}})
	return r
}

// openRegion opens a FILE or pid:PID:PATTERN argument.
func openRegion(arg string) (*region, error) {
	if proc.IsSelector(arg) {
		sel, err := proc.ParseSelector(arg)
		if err != nil {
			return nil, configErr(err)
		}
		pr, err := proc.Open(sel)
		if err != nil {
			return nil, configErr(err)
		}
		return newRegion(pr.String(), pr, true, pr.Close), nil
	}
	src, err := fileregion.Open(arg, 0, 0) // never waits on a FIFO or reads a device
	if err != nil {
		return nil, configErr(err)
	}
	name := arg
	if abs, err := filepath.Abs(arg); err == nil {
		name = abs
	}
	return newRegion(name, src, false, src.Close), nil
}

// measureJSON is the --json view of one measurement.
type measureJSON struct {
	Region   string              `json:"region"`
	Pass     int                 `json:"pass"`
	Root     measure.Digest      `json:"root"`
	Size     int64               `json:"size"`
	Pages    int64               `json:"pages"`
	Mode     measure.Mode        `json:"mode"`
	Rehashed int64               `json:"rehashed_pages"`
	Changed  []measure.PageRange `json:"changed,omitempty"`
	Seconds  float64             `json:"seconds"`
}

func (a *app) measureOne(cmd *cobra.Command, r *region, pass int, asJSON, showBar bool) error {
	var bar *progressbar.ProgressBar
	if showBar {
		bar = progressbar.NewOptions64(r.src.Size(),
			progressbar.OptionSetWriter(a.stderr),
			progressbar.OptionSetDescription(filepath.Base(r.name)),
			progressbar.OptionShowBytes(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
		r.onProgress = func(n int64) { bar.Add64(n) }
	}
	start := time.Now()
	res, err := r.tracker.Measure(cmd.Context())
	if bar != nil {
		r.onProgress = nil
		bar.Exit()
	}
	if err != nil {
		return configErr(fmt.Errorf("measuring %s: %w", r.name, err))
	}
	took := time.Since(start)
	mode := string(res.Mode)
	if reason, ok := res.Mode.Fallback(); ok {
		mode = "full-fallback"
		if r.tracks {
			a.log.Warn("incremental measurement not possible, measured in full", "region", r.name, "reason", reason)
		} else {
			a.log.Debug("measured in full", "region", r.name, "reason", reason)
		}
	}
	a.log.Info("measured", "region", r.name, "pass", pass, "mode", res.Mode, "bytes", res.Size,
		"rehashed_pages", res.Rehashed, "changed_ranges", len(res.Changed), "took", took,
		"mb_per_s", fmt.Sprintf("%.0f", float64(res.Rehashed*measure.PageSize)/1e6/max(took.Seconds(), 1e-9)))
	if asJSON {
		b, err := json.Marshal(measureJSON{
			Region: r.name, Pass: pass, Root: res.Root, Size: res.Size, Pages: measure.Pages(res.Size),
			Mode: res.Mode, Rehashed: res.Rehashed, Changed: res.Changed, Seconds: took.Seconds(),
		})
		if err == nil {
			_, err = a.stdout.Write(append(b, '\n'))
		}
		return configErr(err)
	}
	_, err = fmt.Fprintf(a.stdout, "%s %d %s %s\n", res.Root, res.Size, mode, printable(r.name))
	return configErr(err)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
