// Package progress draws progress bars on stderr for long runs, and only
// when stderr is a terminal, so scripts and --json output stay clean. It
// is the one place the CLI's commands set bars up: byte bars for
// transfers (Bar, Lazy) and count bars for runs and devices (Group).
package progress

import (
	"io"
	"os"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// minBytes is the smallest total a byte bar is drawn for: below it a
// command ends before a bar would say anything.
const minBytes = 32 << 20

// width is the width of every bar, so that stacked bars line up.
const width = 40

// newContainer is the one mpb setup of every bar. Whether to draw was
// decided by the caller (enabled, usually Terminal), so mpb is told to
// refresh whatever w is, rather than check for a terminal again.
func newContainer(w io.Writer) *mpb.Progress {
	return mpb.New(mpb.WithOutput(w), mpb.WithWidth(width), mpb.WithAutoRefresh())
}

// Enabled reports whether f is a terminal, i.e. whether bars will be drawn.
func Enabled(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// Terminal reports whether w is a terminal. Anything but an *os.File (a
// buffer, a pipe wrapper, a test's output) is not.
func Terminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && Enabled(f)
}

// Bar reports progress of one task in bytes. A nil *Bar is valid and does
// nothing.
type Bar struct {
	p   *mpb.Progress
	bar *mpb.Bar
}

// New starts a bar of total bytes named name on stderr, or returns nil when
// stderr is not a terminal or total is too small to be worth drawing.
func New(name string, total int64) *Bar {
	return NewOn(os.Stderr, Enabled(os.Stderr) && total >= minBytes, name, total)
}

// NewOn starts a bar on w when enabled is true.
func NewOn(w io.Writer, enabled bool, name string, total int64) *Bar {
	if !enabled {
		return nil
	}
	p := newContainer(w)
	bar := p.AddBar(total,
		mpb.PrependDecorators(decor.Name(name+" "), decor.CountersKibiByte("% .1f / % .1f")),
		mpb.AppendDecorators(decor.AverageSpeed(decor.SizeB1024(0), " % .1f"), decor.Name(" "), decor.Percentage()),
	)
	return &Bar{p: p, bar: bar}
}

// Set moves the bar to done bytes.
func (b *Bar) Set(done int64) {
	if b != nil {
		b.bar.SetCurrent(done)
	}
}

// Done completes the bar and waits for the final draw.
func (b *Bar) Done() {
	if b != nil {
		b.bar.SetTotal(-1, true)
		b.p.Wait()
	}
}

// Abort removes an unfinished bar, e.g. after an error.
func (b *Bar) Abort() {
	if b != nil {
		b.bar.Abort(true)
		b.p.Wait()
	}
}

// Lazy is a bar that appears on the first report, once the total is
// known: the one way commands show progress. A nil *Lazy does nothing.
type Lazy struct {
	name    string
	w       io.Writer
	enabled bool
	bar     *Bar
	started bool
}

// Start returns a bar named name that Report draws on stderr on demand,
// when stderr is a terminal.
func Start(name string) *Lazy { return StartOn(os.Stderr, Enabled(os.Stderr), name) }

// StartOn is Start drawing on w when enabled is true.
func StartOn(w io.Writer, enabled bool, name string) *Lazy {
	return &Lazy{name: name, w: w, enabled: enabled}
}

// Report moves the bar to done of total bytes; it fits the Progress
// callbacks of the packages. The bar is drawn only when the first
// report's total is worth it (32 MiB or more).
func (l *Lazy) Report(done, total int64) {
	if l == nil {
		return
	}
	if !l.started {
		l.bar, l.started = NewOn(l.w, l.enabled && total >= minBytes, l.name, total), true
	}
	l.bar.Set(done)
}

// End completes the bar after success, or removes it after err.
func (l *Lazy) End(err error) {
	if l == nil {
		return
	}
	if err != nil {
		l.bar.Abort()
	} else {
		l.bar.Done()
	}
}

// Group draws count bars stacked together, e.g. the runs of a sweep and
// the devices of the current run. A nil *Group does nothing, and its
// Count bars are nil.
type Group struct {
	p    *mpb.Progress
	bars []*Counter
}

// NewGroup returns a group drawing on w, or nil when w is not a terminal.
func NewGroup(w io.Writer) *Group { return NewGroupOn(w, Terminal(w)) }

// NewGroupOn returns a group drawing on w when enabled is true.
func NewGroupOn(w io.Writer, enabled bool) *Group {
	if !enabled {
		return nil
	}
	return &Group{p: newContainer(w)}
}

// Counter is a count bar of a Group: "name done / total" and a
// percentage. A nil *Counter does nothing.
type Counter struct {
	bar   *mpb.Bar
	total int64
}

// Count adds a bar of total items named name (padded, so that the names
// of a group line up when the caller pads them alike).
func (g *Group) Count(name string, total int64) *Counter {
	if g == nil || g.p == nil {
		return nil
	}
	c := &Counter{total: total, bar: g.p.AddBar(total,
		mpb.PrependDecorators(decor.Name(name+" "), decor.CountersNoUnit("%d / %d")),
		mpb.AppendDecorators(decor.Percentage()))}
	g.bars = append(g.bars, c)
	return c
}

// Set moves the bar to done items.
func (c *Counter) Set(done int64) {
	if c != nil {
		c.bar.SetCurrent(done)
	}
}

// SetTotal changes the total, for a bar reused by tasks of different
// sizes.
func (c *Counter) SetTotal(total int64) {
	if c != nil && total != c.total {
		c.bar.SetTotal(total, false)
		c.total = total
	}
}

// End completes every bar after success, or stops them where they are
// after err, and waits for the final draw. The group draws nothing after.
func (g *Group) End(err error) {
	if g == nil || g.p == nil {
		return
	}
	for _, c := range g.bars {
		if err != nil {
			// Left drawn, so the user sees how far it got.
			c.bar.Abort(false)
		} else {
			c.bar.SetTotal(-1, true)
		}
	}
	g.p.Wait()
	g.p = nil
}
