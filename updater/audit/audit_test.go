package audit

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoalnet/shoal/updater/fsys"
)

func clock() func() time.Time {
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return func() time.Time { t = t.Add(time.Second); return t }
}

func writeN(t *testing.T, f fsys.FS, dir string, n int) {
	t.Helper()
	l, err := Open(f, dir, clock())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if _, err := l.Append(Entry{Verdict: "offered", Version: uint64(i + 1), Reason: "r"}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAppendVerify(t *testing.T) {
	dir := t.TempDir()
	writeN(t, fsys.OS{}, dir, 5)
	// Reopen and continue the chain.
	writeN(t, fsys.OS{}, dir, 2)
	es, err := Entries(fsys.OS{}, dir)
	if err != nil || len(es) != 7 || es[6].Seq != 7 || es[6].Prev != es[5].Hash {
		t.Fatalf("%d entries, %v", len(es), err)
	}
}

func TestTamperDetected(t *testing.T) {
	dir := t.TempDir()
	writeN(t, fsys.OS{}, dir, 6)
	path := filepath.Join(dir, LogFile)
	orig, _ := os.ReadFile(path)
	lines := strings.SplitAfter(string(orig), "\n")
	lines = lines[:len(lines)-1] // trailing empty
	cases := map[string]struct {
		content string
		want    string
	}{
		"edited reason":  {strings.Join(append(append([]string{}, lines[:2]...), append([]string{strings.Replace(lines[2], `"reason":"r"`, `"reason":"x"`, 1)}, lines[3:]...)...), ""), "line 3"},
		"removed line":   {strings.Join(append(append([]string{}, lines[:2]...), lines[3:]...), ""), "line 3"},
		"reordered":      {lines[0] + lines[2] + lines[1] + strings.Join(lines[3:], ""), "line 2"},
		"cut off end":    {strings.Join(lines[:4], ""), "cut off"},
		"spaces added":   {strings.Replace(string(orig), `,"verdict"`, `, "verdict"`, 1), "line 1"},
		"unknown field":  {strings.Replace(string(orig), `{"seq":1,`, `{"x":1,"seq":1,`, 1), "line 1"},
		"garbage middle": {lines[0] + "not json\n" + strings.Join(lines[1:], ""), "line 2"},
	}
	for name, c := range cases {
		os.WriteFile(path, []byte(c.content), 0o644)
		_, err := Verify(fsys.OS{}, dir)
		if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want ErrTampered mentioning %q", name, err, c.want)
		}
		if _, err := Open(fsys.OS{}, dir, nil); !errors.Is(err, ErrTampered) {
			t.Errorf("%s: Open accepted a tampered log: %v", name, err)
		}
	}
	os.WriteFile(path, orig, 0o644)
	if n, err := Verify(fsys.OS{}, dir); err != nil || n != 6 {
		t.Fatal(n, err)
	}
}

// A power cut at every operation of a run of appends leaves a log that
// opens, verifies, holds a prefix of the appended entries, and accepts new
// ones.
func TestCrashSweep(t *testing.T) {
	const n = 4
	run := func(c *fsys.Crash) (acked int, err error) {
		l, err := Open(c, "/audit", clock())
		if err != nil {
			return 0, err
		}
		for i := 0; i < n; i++ {
			if _, err := l.Append(Entry{Verdict: "staged", Version: uint64(i + 1)}); err != nil {
				return acked, err
			}
			acked++
		}
		return acked, nil
	}
	ref := fsys.NewCrash(fsys.CrashOptions{})
	if _, err := run(ref); err != nil {
		t.Fatal(err)
	}
	points := ref.Ops()
	for k := 1; k <= points; k++ {
		for _, tear := range []bool{false, true} {
			c := fsys.NewCrash(fsys.CrashOptions{CrashAt: k, TearLastWrite: tear, Seed: uint64(k)})
			acked, err := run(c)
			if !errors.Is(err, fsys.ErrCrashed) {
				t.Fatalf("point %d: %v", k, err)
			}
			after := c.AfterCrash()
			l, err := Open(after, "/audit", clock())
			if err != nil {
				t.Fatalf("point %d tear %v: reopen: %v\n%s", k, tear, err, after.Dump())
			}
			es, err := Entries(after, "/audit")
			if err != nil {
				t.Fatalf("point %d: %v", k, err)
			}
			if len(es) < acked || len(es) > acked+1 {
				t.Fatalf("point %d: %d entries survived, %d were acknowledged", k, len(es), acked)
			}
			if _, err := l.Append(Entry{Verdict: "booted"}); err != nil {
				t.Fatalf("point %d: append after recovery: %v", k, err)
			}
			if m, err := Verify(after, "/audit"); err != nil || m != len(es)+1 {
				t.Fatalf("point %d: %d %v", k, m, err)
			}
		}
	}
	t.Logf("swept %d crash points x 2 modes", points)
}

func FuzzVerify(f *testing.F) {
	dir := f.TempDir()
	writeN(&testing.T{}, fsys.OS{}, dir, 3)
	good, _ := os.ReadFile(filepath.Join(dir, LogFile))
	f.Add(good)
	f.Add([]byte("{}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := fsys.NewCrash(fsys.CrashOptions{})
		c.WriteFile("/a/"+LogFile, b)
		es, err := Entries(c, "/a")
		if err == nil && !bytes.HasSuffix(b, []byte("\n")) && len(b) > 0 {
			t.Fatalf("accepted %d entries without final newline", len(es))
		}
	})
}

// headFailFS makes the next fails attempts to create the head file fail
// with ENOSPC, as a full disk would, and passes everything else through.
type headFailFS struct {
	fsys.FS
	fails int
}

func (h *headFailFS) OpenFile(name string, flag int, perm fs.FileMode) (fsys.File, error) {
	if h.fails > 0 && flag&os.O_CREATE != 0 && strings.Contains(filepath.Base(name), HeadFile) {
		h.fails--
		return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.ENOSPC}
	}
	return h.FS.OpenFile(name, flag, perm)
}

// A head write that fails after the line is durable: Append reports it,
// but the entry is in the log, and the next append continues the chain
// from it instead of reusing its sequence number.
func TestAppendAfterHeadWriteFails(t *testing.T) {
	dir := t.TempDir()
	hf := &headFailFS{FS: fsys.OS{}}
	l, err := Open(hf, dir, clock())
	if err != nil {
		t.Fatal(err)
	}
	e1, err := l.Append(Entry{Verdict: "offered", Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	hf.fails = 1
	e2, err := l.Append(Entry{Verdict: "staged", Version: 1})
	if !errors.Is(err, syscall.ENOSPC) || !errors.Is(err, ErrHeadNotUpdated) {
		t.Fatalf("append with a failing head write: %v", err)
	}
	if e2.Seq != 2 || e2.Prev != e1.Hash {
		t.Fatalf("entry 2 as written: %+v", e2)
	}
	e3, err := l.Append(Entry{Verdict: "flipped", Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	if e3.Seq != 3 || e3.Prev != e2.Hash {
		t.Fatalf("entry after the failed head write: seq %d, prev %s; want 3 chained to %s", e3.Seq, e3.Prev, e2.Hash)
	}
	if n, err := Verify(fsys.OS{}, dir); err != nil || n != 3 {
		t.Fatalf("verify: %d entries, %v", n, err)
	}
}

// The very first head write fails twice (disk full): entry 1 is in the
// log without a head. The next Append writes the head for entry 1 before it
// appends entry 2, so a log with two or more entries always has a head and
// a missing one can only mean tampering.
func TestFirstHeadWriteFails(t *testing.T) {
	dir := t.TempDir()
	hf := &headFailFS{FS: fsys.OS{}, fails: 2}
	l, err := Open(hf, dir, clock())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(Entry{Verdict: "offered", Version: 1}); !errors.Is(err, ErrHeadNotUpdated) {
		t.Fatalf("first append: %v", err)
	}
	// Not recorded this time, so the error must not say it was.
	if _, err := l.Append(Entry{Verdict: "staged", Version: 1}); !errors.Is(err, syscall.ENOSPC) || errors.Is(err, ErrHeadNotUpdated) {
		t.Fatalf("second append, head for entry 1 still failing: %v", err)
	}
	if n, err := Verify(fsys.OS{}, dir); err != nil || n != 1 {
		t.Fatalf("after the refused append: %d entries, %v", n, err)
	}
	e2, err := l.Append(Entry{Verdict: "staged", Version: 1})
	if err != nil || e2.Seq != 2 {
		t.Fatalf("append once the disk has room: %+v %v", e2, err)
	}
	if n, err := Verify(fsys.OS{}, dir); err != nil || n != 2 {
		t.Fatalf("verify: %d entries, %v", n, err)
	}
}

// The head is written after entry 1, so a missing head is only innocent
// for a one-entry log (a power cut between the first append and the first
// head write). With more entries it was deleted, usually to hide lines cut
// off the end.
func TestMissingHead(t *testing.T) {
	dir := t.TempDir()
	writeN(t, fsys.OS{}, dir, 1)
	os.Remove(filepath.Join(dir, HeadFile))
	if n, err := Verify(fsys.OS{}, dir); err != nil || n != 1 {
		t.Fatalf("one entry, no head: %d %v", n, err)
	}
	writeN(t, fsys.OS{}, dir, 5)
	path := filepath.Join(dir, LogFile)
	orig, _ := os.ReadFile(path)
	lines := strings.SplitAfter(string(orig), "\n")
	for _, keep := range []int{6, 4, 2} {
		os.WriteFile(path, []byte(strings.Join(lines[:keep], "")), 0o644)
		os.Remove(filepath.Join(dir, HeadFile))
		_, err := Verify(fsys.OS{}, dir)
		if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), HeadFile) {
			t.Errorf("%d entries, head deleted: got %v, want ErrTampered naming %s", keep, err, HeadFile)
		}
		if _, err := Open(fsys.OS{}, dir, nil); !errors.Is(err, ErrTampered) {
			t.Errorf("%d entries, head deleted: Open accepted it: %v", keep, err)
		}
	}
	// Two entries and a torn third line, no head: still tampering.
	os.WriteFile(path, []byte(strings.Join(lines[:2], "")+lines[2][:20]), 0o644)
	if _, err := Verify(fsys.OS{}, dir); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), HeadFile) {
		t.Errorf("two entries and a torn line, head deleted: %v", err)
	}
}

// Two power cuts in a row, at every pair of crash points of two boots
// that append one entry each: the log never looks tampered with (a torn
// last line is reported as such until Open cuts it), holds every
// acknowledged entry, and takes new entries.
func TestDoubleCrashSweep(t *testing.T) {
	boot := func(c *fsys.Crash, verdict string) int {
		l, err := Open(c, "/audit", clock())
		if err != nil {
			return 0
		}
		if _, err := l.Append(Entry{Verdict: verdict}); err != nil {
			return 0
		}
		return 1
	}
	ref := fsys.NewCrash(fsys.CrashOptions{})
	boot(ref, "offered")
	first := ref.Ops()
	boot(ref, "staged")
	second := ref.Ops() - first
	clean := func(err error) bool { return err == nil || strings.Contains(err.Error(), "torn") }
	for i := 1; i <= first; i++ {
		// A second boot after a crash may have more to do; crash points
		// past its end simply do not fire.
		for j := 1; j <= second+4; j++ {
			c := fsys.NewCrash(fsys.CrashOptions{CrashAt: i, TearLastWrite: true, Seed: uint64(i)})
			acked := boot(c, "offered")
			c = c.AfterCrash()
			c.Reset(fsys.CrashOptions{CrashAt: j, TearLastWrite: true, Seed: uint64(j)})
			acked += boot(c, "staged")
			c = c.AfterCrash()
			if _, err := Verify(c, "/audit"); !clean(err) {
				t.Fatalf("crashes at %d, %d: %v\n%s", i, j, err, c.Dump())
			}
			l, err := Open(c, "/audit", clock())
			if err != nil {
				t.Fatalf("crashes at %d, %d: reopen: %v", i, j, err)
			}
			es, err := Entries(c, "/audit")
			if err != nil || len(es) < acked || len(es) > 2 {
				t.Fatalf("crashes at %d, %d: %d entries (%d acknowledged), %v", i, j, len(es), acked, err)
			}
			if _, err := l.Append(Entry{Verdict: "booted"}); err != nil {
				t.Fatalf("crashes at %d, %d: append after recovery: %v", i, j, err)
			}
			if m, err := Verify(c, "/audit"); err != nil || m != len(es)+1 {
				t.Fatalf("crashes at %d, %d: %d %v", i, j, m, err)
			}
		}
	}
	t.Logf("swept %d x %d crash points", first, second+4)
}
