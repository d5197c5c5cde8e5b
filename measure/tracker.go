package measure

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// DirtySource is a Source that can tell which of its pages were written.
type DirtySource interface {
	Source
	// TakeDirty returns the pages that may have been written since the
	// previous call (a superset is fine, a page missing is not) and starts
	// a new interval. A Tracker calls it before each pass; the result of
	// its first call is not used. An error means the source cannot say
	// now: the Tracker then measures in full and says why. An error that
	// wraps ErrTrackingRestarted says that the new interval did start, so
	// that the next measurement can be incremental again.
	TakeDirty(ctx context.Context) ([]PageRange, error)
}

// ErrTrackingRestarted marks a TakeDirty error after which write tracking
// runs again from now on (for example: the region moved, so the old
// pages cannot be compared, but a new interval started).
var ErrTrackingRestarted = errors.New("write tracking restarted")

// Mode says how a measurement was made: ModeFull, ModeIncremental, or a
// full pass where an incremental one was wanted, "full-fallback: " and the
// reason.
type Mode string

const (
	// ModeFull: every page was read, as there was no earlier measurement.
	ModeFull Mode = "full"
	// ModeIncremental: only the pages the source reported written were
	// read; the others kept their leaves from the previous measurement.
	ModeIncremental Mode = "incremental"
)

const fallbackPrefix = "full-fallback: "

func fallback(format string, args ...any) Mode {
	return Mode(fallbackPrefix + fmt.Sprintf(format, args...))
}

// Fallback returns the reason of a "full-fallback" mode.
func (m Mode) Fallback() (reason string, ok bool) {
	return strings.CutPrefix(string(m), fallbackPrefix)
}

// Result is one measurement made by a Tracker.
type Result struct {
	Root Digest
	Size int64
	Mode Mode
	// Rehashed is the number of pages read and hashed in this pass.
	Rehashed int64
	// Changed lists the pages whose leaf differs from the previous
	// measurement (all pages when the size changed; nil on the first).
	Changed []PageRange
}

// Tracker measures one source again and again, incrementally when the
// source is a DirtySource and it can: it keeps the Tree of the last
// measurement (32 bytes per page and a bounded cache) and re-hashes only
// the pages written since. A Tracker is not safe for concurrent use.
type Tracker struct {
	src      Source
	opts     *Options
	tree     *Tree
	anchored bool // the previous TakeDirty succeeded: its interval is valid
}

// NewTracker returns a tracker over src. opts may be nil.
func NewTracker(src Source, opts *Options) *Tracker {
	return &Tracker{src: src, opts: opts}
}

// Tree returns the tree of the last successful measurement, or nil. The
// next Measure updates it in place.
func (t *Tracker) Tree() *Tree { return t.tree }

// Measure measures the source, incrementally when it can.
func (t *Tracker) Measure(ctx context.Context) (*Result, error) {
	ds, tracks := t.src.(DirtySource)
	var dirty []PageRange
	var derr error
	if tracks {
		dirty, derr = ds.TakeDirty(ctx)
	}
	anchored := t.anchored
	t.anchored = tracks && (derr == nil || errors.Is(derr, ErrTrackingRestarted))
	size := t.src.Size()
	var mode Mode
	switch {
	case t.tree == nil:
		mode = ModeFull
	case !tracks:
		mode = fallback("the source does not track writes")
	case derr != nil:
		mode = fallback("%v", derr)
	case !anchored:
		mode = fallback("write tracking was not running since the previous measurement")
	case size != t.tree.size:
		mode = fallback("the size changed from %d to %d bytes", t.tree.size, size)
	default:
		mode = ModeIncremental
	}
	res := &Result{Size: size, Mode: mode}
	var err error
	switch {
	case mode == ModeIncremental:
		for _, r := range dirty {
			if r.First < 0 || r.First > r.Last || r.Last >= int64(len(t.tree.leaves)) {
				err = fmt.Errorf("measure: the source reported dirty %s outside its %d pages", r, len(t.tree.leaves))
				break
			}
		}
		if err == nil {
			dirty = normalize(dirty)
			for _, r := range dirty {
				res.Rehashed += r.Pages()
			}
			res.Changed, err = t.tree.Update(ctx, t.src, dirty, t.opts)
		}
	case t.tree != nil && size == t.tree.size && size > 0:
		// A full pass over the same size: update the leaves in place,
		// which also tells which pages changed.
		res.Rehashed = int64(len(t.tree.leaves))
		res.Changed, err = t.tree.Update(ctx, t.src, []PageRange{{0, int64(len(t.tree.leaves)) - 1}}, t.opts)
	default:
		var old *Tree
		old, t.tree = t.tree, nil
		t.tree, err = Measure(ctx, t.src, t.opts)
		if err == nil {
			res.Rehashed = int64(len(t.tree.leaves))
			if old != nil {
				res.Changed = Diff(old.leaves, t.tree.leaves)
			}
		}
	}
	if err != nil {
		// The pages reported dirty were consumed: only a full pass is
		// sound next time.
		t.tree = nil
		return nil, err
	}
	res.Root = t.tree.root
	return res, nil
}
