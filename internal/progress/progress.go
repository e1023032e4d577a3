// Package progress draws a progress bar on stderr for long runs, and only
// when stderr is a terminal, so scripts and --json output stay clean.
package progress

import (
	"io"
	"os"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// Bar reports progress of one task. A nil *Bar is valid and does nothing.
type Bar struct {
	p   *mpb.Progress
	bar *mpb.Bar
}

// Enabled reports whether f is a terminal, i.e. whether bars will be drawn.
func Enabled(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// New starts a bar of total bytes named name on stderr, or returns nil when
// stderr is not a terminal or total is too small to be worth drawing.
func New(name string, total int64) *Bar {
	return NewOn(os.Stderr, Enabled(os.Stderr) && total >= 32<<20, name, total)
}

// NewOn starts a bar on w when enabled is true.
func NewOn(w io.Writer, enabled bool, name string, total int64) *Bar {
	if !enabled {
		return nil
	}
	p := mpb.New(mpb.WithOutput(w), mpb.WithWidth(40))
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
	bar     *Bar
	started bool
}

// Start returns a bar named name that Report draws on demand.
func Start(name string) *Lazy { return &Lazy{name: name} }

// Report moves the bar to done of total bytes; it fits the Progress
// callbacks of the packages.
func (l *Lazy) Report(done, total int64) {
	if l == nil {
		return
	}
	if !l.started {
		l.bar, l.started = New(l.name, total), true
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
