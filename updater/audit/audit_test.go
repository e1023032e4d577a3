package audit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
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
