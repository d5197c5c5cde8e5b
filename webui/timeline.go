package webui

import (
	"fmt"
	"slices"

	"hvmon.dev/hvmon/attest"
	"hvmon.dev/hvmon/policy"
)

// Timeline geometry, in SVG user units.
const (
	tlLeft   = 110 // room for the host names
	tlTop    = 48  // room for the restore links and marks' labels
	tlLaneH  = 84
	tlStep   = 84
	tlRight  = 30
	tlBottom = 34
	tlMarkR  = 9
	// tlMinWidth keeps the first and last times apart on a short timeline.
	tlMinWidth = 520
)

// timeline is a VM's history laid out for the VM page's SVG: one lane per
// host, one mark per report in timeline order.
type timeline struct {
	Width, Height int
	Lanes         []lane
	Marks         []mark
	Migrations    []arrow
	Restores      []link
	Gaps          []gap
	FirstAt       string
	LastAt        string
}

type lane struct {
	Host      string
	Y, LabelY int
	X2        int
}

type mark struct {
	X, Y   int
	Status string // the CSS class of its verdict
	Hash   attest.Digest
	Title  string
	Label  string // the event, under the mark
	// Flag is "rollback", "rewind" or "fork" for a mark to highlight, with
	// FlagY the y of its label.
	Flag  string
	FlagY int
}

type arrow struct {
	X1, Y1, X2, Y2 int
	Status         string
	Title          string
}

type link struct {
	D     string // the path
	Title string
}

type gap struct {
	X1, X2, Y int
	Title     string
}

// layout lays out vm's timeline.
func layout(vm *VM) timeline {
	n := len(vm.Events)
	// At least wide enough for the two times under the axis.
	t := timeline{Width: max(tlLeft+n*tlStep+tlRight, tlMinWidth), Height: tlTop + len(vm.Hosts)*tlLaneH + tlBottom}
	laneY := map[string]int{}
	for i, h := range vm.Hosts {
		y := tlTop + i*tlLaneH + tlLaneH/2
		laneY[h] = y
		t.Lanes = append(t.Lanes, lane{Host: h, Y: y, LabelY: y + 4, X2: t.Width - tlRight})
	}
	if n > 0 {
		t.FirstAt = vm.Events[0].IssuedAt.UTC().Format("2006-01-02 15:04:05Z")
		t.LastAt = vm.Events[n-1].IssuedAt.UTC().Format("2006-01-02 15:04:05Z")
	}
	migration := map[string]policy.Status{}
	for _, f := range vm.Findings {
		if f.Check == policy.CheckChainMigration {
			migration[f.Subject] = policy.Worse(migration[f.Subject], f.Status)
		}
	}
	x := func(i int) int { return tlLeft + i*tlStep + tlStep/2 }
	lastOut, lastSnap := -1, -1
	for i, e := range vm.Events {
		m := mark{X: x(i), Y: laneY[e.Host], Status: statusClass(e.Status), Hash: e.Hash, Label: string(e.Event),
			Title: fmt.Sprintf("#%d %s on %s at %s: %s", e.N, e.Event, e.Host, e.IssuedAt.UTC().Format("15:04:05Z"), e.Status)}
		if len(e.Notes) > 0 {
			m.Title += fmt.Sprintf(" (%v)", e.Notes)
		}
		for _, flag := range []string{policy.ReasonRollback, policy.ReasonRewind, policy.ReasonFork} {
			if slices.Contains(e.Notes, flag) {
				m.Flag, m.FlagY = flag, m.Y-tlMarkR-10
				break
			}
		}
		t.Marks = append(t.Marks, m)
		if slices.Contains(e.Notes, policy.ReasonGap) {
			t.Gaps = append(t.Gaps, gap{X1: m.X - tlStep + tlMarkR + 4, X2: m.X - tlMarkR - 4, Y: m.Y,
				Title: fmt.Sprintf("gap before #%d: reports or guest evidence are missing", e.N)})
		}
		switch e.Event {
		case attest.EventMigrateOut:
			lastOut = i
		case attest.EventMigrateIn:
			if lastOut >= 0 {
				from := t.Marks[lastOut]
				st, ok := migration[e.Report]
				if !ok {
					st = e.Status
				}
				t.Migrations = append(t.Migrations, arrow{X1: from.X + tlMarkR, Y1: from.Y, X2: m.X - tlMarkR - 3, Y2: m.Y,
					Status: statusClass(st), Title: fmt.Sprintf("migration %s → %s (#%d → #%d): %s",
						vm.Events[lastOut].Host, e.Host, lastOut+1, e.N, st)})
				lastOut = -1
			}
		case attest.EventSnapshot:
			lastSnap = i
		case attest.EventRestore:
			if lastSnap >= 0 {
				from := t.Marks[lastSnap]
				top := min(from.Y, m.Y) - tlLaneH/2 + 6
				t.Restores = append(t.Restores, link{
					D:     fmt.Sprintf("M%d,%d C%d,%d %d,%d %d,%d", from.X, from.Y-tlMarkR, from.X, top, m.X, top, m.X, m.Y-tlMarkR),
					Title: fmt.Sprintf("restore #%d back to the snapshot #%d", e.N, lastSnap+1)})
			}
		}
	}
	return t
}

// driftBar is one drift row laid out: the region's pages as a bar, the
// changed ranges as rectangles over it.
type driftBar struct {
	Row    DriftRow
	Y      int
	Ranges []driftRange
}

type driftRange struct {
	X, Y, W int
	Title   string
}

// Drift view geometry.
const (
	drLeft  = 260
	drWidth = 640
	drRowH  = 30
	drBarH  = 16
)

type driftView struct {
	Width, Height, Left, BarW, BarH int
	Bars                            []driftBar
}

func layoutDrift(rows []DriftRow) driftView {
	v := driftView{Width: drLeft + drWidth + 300, Height: len(rows)*drRowH + 10, Left: drLeft, BarW: drWidth, BarH: drBarH}
	for i, r := range rows {
		b := driftBar{Row: r, Y: 5 + i*drRowH}
		for _, c := range r.Changed {
			if r.Pages <= 0 {
				break
			}
			x := int(c.First * drWidth / r.Pages)
			w := max(int((c.Last+1)*drWidth/r.Pages)-x, 2)
			b.Ranges = append(b.Ranges, driftRange{X: drLeft + x, Y: b.Y, W: w, Title: c.String()})
		}
		v.Bars = append(v.Bars, b)
	}
	return v
}

// statusClass is the CSS class of a verdict.
func statusClass(s policy.Status) string {
	switch s {
	case policy.Affirming, policy.Warning, policy.Contraindicated:
		return string(s)
	}
	return "none"
}
