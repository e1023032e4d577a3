package progress

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// lastFrame is the last n lines drawn: the bars as they were left.
func lastFrame(out string, n int) []string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) < n {
		return lines
	}
	return lines[len(lines)-n:]
}

func TestTerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	for name, w := range map[string]io.Writer{"buffer": &bytes.Buffer{}, "file": f, "null device": null} {
		if Terminal(w) {
			t.Errorf("%s counts as a terminal", name)
		}
	}
}

// Bars that are not enabled are nil, and nil bars draw nothing.
func TestDisabledDrawsNothing(t *testing.T) {
	var buf bytes.Buffer
	b := NewOn(&buf, false, "chunk", 1<<30)
	if b != nil {
		t.Fatal("a disabled bar is not nil")
	}
	b.Set(1 << 29)
	b.Done()
	b.Abort()

	l := StartOn(&buf, false, "install")
	l.Report(1<<29, 1<<30)
	l.End(nil)

	g := NewGroupOn(&buf, false)
	if g != nil {
		t.Fatal("a disabled group is not nil")
	}
	c := g.Count("runs", 3)
	if c != nil {
		t.Fatal("a disabled group's bar is not nil")
	}
	c.SetTotal(4)
	c.Set(2)
	g.End(nil)

	var nilLazy *Lazy
	nilLazy.Report(1, 2)
	nilLazy.End(errors.New("x"))
	if buf.Len() != 0 {
		t.Fatalf("disabled bars drew %q", buf.String())
	}
}

// Start draws on stderr only when it is a terminal: with stderr a file (a
// script's 2>log, or a test) nothing is written, however large the task.
func TestStartOnStderrFile(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	saved := os.Stderr
	os.Stderr = f
	l := Start("install")
	l.Report(1<<30, 4<<30)
	l.Report(4<<30, 4<<30)
	l.End(nil)
	g := NewGroup(os.Stderr)
	g.Count("runs", 2).Set(1)
	g.End(nil)
	os.Stderr = saved
	if st, err := f.Stat(); err != nil || st.Size() != 0 {
		t.Fatalf("bars on a non-terminal stderr: %d bytes (%v)", st.Size(), err)
	}
}

// A Lazy bar draws once the first report's total is worth it, and ends at
// 100 % after success.
func TestLazyDraws(t *testing.T) {
	var small bytes.Buffer
	l := StartOn(&small, true, "verify")
	l.Report(0, 1<<20)
	l.Report(1<<20, 1<<20)
	l.End(nil)
	if small.Len() != 0 {
		t.Fatalf("a 1 MiB task drew %q", small.String())
	}

	var buf bytes.Buffer
	l = StartOn(&buf, true, "install")
	l.Report(16<<20, 64<<20)
	l.Report(64<<20, 64<<20)
	l.End(nil)
	last := lastFrame(buf.String(), 1)[0]
	if !strings.HasPrefix(last, "install ") || !strings.Contains(last, "64.0 MiB / 64.0 MiB") || !strings.HasSuffix(last, "100 %") {
		t.Fatalf("last frame %q of %q", last, buf.String())
	}
}

// After an error the bar is removed unfinished: it never claims 100 %.
func TestLazyEndAfterError(t *testing.T) {
	var buf bytes.Buffer
	l := StartOn(&buf, true, "import")
	l.Report(16<<20, 64<<20)
	l.End(errors.New("cut off"))
	if buf.Len() == 0 {
		t.Fatal("an enabled bar drew nothing")
	}
	if strings.Contains(buf.String(), "100 %") || strings.Contains(buf.String(), "64.0 MiB / 64.0 MiB") {
		t.Fatalf("a failed task drawn as complete: %q", buf.String())
	}
}

// A group's count bars stack; a total may change as a bar is reused, and
// End completes every bar.
func TestGroupCounts(t *testing.T) {
	var buf bytes.Buffer
	g := NewGroupOn(&buf, true)
	runs := g.Count("runs   ", 2)
	devs := g.Count("devices", 10)
	devs.Set(10)
	runs.Set(1)
	devs.SetTotal(20) // the second run is larger
	devs.Set(0)
	devs.Set(20)
	runs.Set(2)
	g.End(nil)
	f := lastFrame(buf.String(), 2)
	if len(f) != 2 || !strings.HasPrefix(f[0], "runs    2 / 2 ") || !strings.HasSuffix(f[0], "100 %") ||
		!strings.HasPrefix(f[1], "devices 20 / 20 ") || !strings.HasSuffix(f[1], "100 %") {
		t.Fatalf("last frame %q of %q", f, buf.String())
	}
	g.End(nil) // a second End is harmless
	if g.Count("late", 1) != nil {
		t.Fatal("a bar added after End")
	}
}

// After an error a group's bars stay where they stopped.
func TestGroupEndAfterError(t *testing.T) {
	var buf bytes.Buffer
	g := NewGroupOn(&buf, true)
	runs := g.Count("runs   ", 4)
	devs := g.Count("devices", 10)
	runs.Set(1)
	devs.Set(7)
	g.End(errors.New("canceled"))
	f := lastFrame(buf.String(), 2)
	if len(f) != 2 || !strings.HasPrefix(f[0], "runs    1 / 4 ") || !strings.HasPrefix(f[1], "devices 7 / 10 ") ||
		strings.Contains(buf.String(), "100 %") {
		t.Fatalf("last frame %q of %q", f, buf.String())
	}
}
