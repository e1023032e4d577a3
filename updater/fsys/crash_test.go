package fsys

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"
)

func mustWrite(t *testing.T, c FS, name string, data []byte, sync bool) {
	t.Helper()
	f, err := c.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
}

func TestCrashDurability(t *testing.T) {
	c := NewCrash(CrashOptions{})
	if err := c.MkdirAll("/d", 0o755); err != nil {
		t.Fatal(err)
	}
	c.SyncDir("/")
	mustWrite(t, c, "/d/synced", []byte("one"), true)
	mustWrite(t, c, "/d/unsynced", []byte("two"), false)
	c.SyncDir("/d")
	// Data written after the directory sync but never fsynced is lost.
	f, _ := c.OpenFile("/d/synced", os.O_RDWR, 0)
	f.WriteAt([]byte("XXX"), 0)
	f.Close()
	// A file created after the last directory sync is lost entirely.
	mustWrite(t, c, "/d/late", []byte("three"), true)
	// A rename without a directory sync is lost.
	c.Rename("/d/synced", "/d/renamed")

	a := c.AfterCrash()
	if b, err := a.ReadFile("/d/synced"); err != nil || string(b) != "one" {
		t.Fatalf("synced: %q %v", b, err)
	}
	if b, err := a.ReadFile("/d/unsynced"); err != nil || len(b) != 0 {
		t.Fatalf("unsynced data should be lost, entry kept: %q %v", b, err)
	}
	for _, p := range []string{"/d/late", "/d/renamed"} {
		if _, err := a.ReadFile(p); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s survived: %v", p, err)
		}
	}
}

func TestCrashUnsyncedDirectoryLosesContent(t *testing.T) {
	c := NewCrash(CrashOptions{})
	c.MkdirAll("/a/b", 0o755)
	mustWrite(t, c, "/a/b/f", []byte("x"), true)
	c.SyncDir("/a/b")
	// Neither /a nor /a/b is durable in its parent.
	if got := c.AfterCrash().Files(); len(got) != 0 {
		t.Fatalf("files under non-durable dirs survived: %v", got)
	}
	c.SyncDir("/")
	c.SyncDir("/a")
	if got := c.AfterCrash().Files(); len(got) != 1 {
		t.Fatalf("got %v", got)
	}
}

func TestCrashPointStopsEverything(t *testing.T) {
	run := func(c *Crash) error {
		if err := c.MkdirAll("/s", 0o755); err != nil {
			return err
		}
		for i := 0; i < 3; i++ {
			if err := WriteFileAtomic(c, "/s/state", []byte{byte('a' + i)}, 0o644); err != nil {
				return err
			}
		}
		return nil
	}
	clean := NewCrash(CrashOptions{})
	if err := run(clean); err != nil {
		t.Fatal(err)
	}
	n := clean.Ops()
	if n < 10 {
		t.Fatalf("only %d ops", n)
	}
	for k := 1; k <= n; k++ {
		c := NewCrash(CrashOptions{CrashAt: k})
		err := run(c)
		if !errors.Is(err, ErrCrashed) || !c.Crashed() {
			t.Fatalf("crash at %d: %v", k, err)
		}
		if _, err := c.ReadFile("/s/state"); !errors.Is(err, ErrCrashed) {
			t.Fatalf("read after crash: %v", err)
		}
		// After any crash, state is absent or one of the complete values.
		b, err := c.AfterCrash().ReadFile("/s/state")
		if err == nil && !(len(b) == 1 && b[0] >= 'a' && b[0] <= 'c') {
			t.Fatalf("crash at %d: torn state %q", k, b)
		}
	}
}

func TestCrashTearsLastWrite(t *testing.T) {
	seen := map[int]bool{}
	for seed := uint64(0); seed < 40; seed++ {
		c := NewCrash(CrashOptions{TearLastWrite: true, Seed: seed})
		c.WriteFile("/slot", make([]byte, 4096))
		f, _ := c.OpenFile("/slot", os.O_RDWR, 0)
		if _, err := f.WriteAt(bytes.Repeat([]byte{1}, 4096), 0); err != nil {
			t.Fatal(err)
		}
		b, _ := c.AfterCrash().ReadFile("/slot")
		n := bytes.Count(b, []byte{1})
		if n%512 != 0 || !bytes.Equal(b[:n], bytes.Repeat([]byte{1}, n)) {
			t.Fatalf("tear is not a sector-aligned prefix: %d", n)
		}
		seen[n] = true
	}
	if len(seen) < 3 {
		t.Fatalf("tearing never varies: %v", seen)
	}
}

func TestOSWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/x"
	for _, s := range []string{"first", "second"} {
		if err := WriteFileAtomic(OS{}, p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(p); string(b) != s {
			t.Fatal(string(b))
		}
	}
	if err := AppendSync(OS{}, dir+"/log", []byte("a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	AppendSync(OS{}, dir+"/log", []byte("b\n"), 0o600)
	if b, _ := os.ReadFile(dir + "/log"); string(b) != "a\nb\n" {
		t.Fatal(string(b))
	}
}

// TestReadDir runs the same operations on the real filesystem and on the
// simulator: both list the entries directly in a directory, sorted by
// name, files and subdirectories told apart, and fail on a missing one.
func TestReadDir(t *testing.T) {
	for name, setup := range map[string]func(t *testing.T) (FS, string){
		"OS": func(t *testing.T) (FS, string) { return OS{}, t.TempDir() },
		"Crash": func(t *testing.T) (FS, string) {
			c := NewCrash(CrashOptions{})
			return c, "/root"
		},
	} {
		t.Run(name, func(t *testing.T) {
			f, root := setup(t)
			if err := f.MkdirAll(root+"/d/sub/deeper", 0o755); err != nil {
				t.Fatal(err)
			}
			for _, n := range []string{"zeta", "alpha", "Mid", "b.conf"} {
				mustWrite(t, f, root+"/d/"+n, []byte(n), true)
			}
			mustWrite(t, f, root+"/d/sub/inner", nil, false)
			if err := f.Rename(root+"/d/b.conf", root+"/d/b+1.conf"); err != nil {
				t.Fatal(err)
			}
			des, err := f.ReadDir(root + "/d")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, de := range des {
				kind := "f"
				if de.IsDir() {
					kind = "d"
				}
				if de.IsDir() != de.Type().IsDir() || de.Type().IsRegular() == de.IsDir() {
					t.Errorf("%s: IsDir %v but type %v", de.Name(), de.IsDir(), de.Type())
				}
				got = append(got, kind+":"+de.Name())
			}
			want := []string{"f:Mid", "f:alpha", "f:b+1.conf", "d:sub", "f:zeta"}
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Fatalf("ReadDir = %v, want %v", got, want)
			}
			if des, err := f.ReadDir(root + "/d/sub/deeper"); err != nil || len(des) != 0 {
				t.Fatalf("empty dir: %v %v", des, err)
			}
			if _, err := f.ReadDir(root + "/missing"); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("missing dir: %v", err)
			}
			if _, err := f.ReadDir(root + "/d/alpha"); err == nil {
				t.Fatal("ReadDir of a file succeeded")
			}
		})
	}
}

// TestCrashReadDirAfterCrash: after a power cut the listing is the durable
// namespace; once crashed, ReadDir fails like every other call.
func TestCrashReadDirAfterCrash(t *testing.T) {
	c := NewCrash(CrashOptions{})
	if err := MkdirAllDurable(c, "/e", 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, c, "/e/one", []byte("1"), true)
	mustWrite(t, c, "/e/two", []byte("2"), true)
	if err := c.SyncDir("/e"); err != nil {
		t.Fatal(err)
	}
	// Not durable: a rename and a new file without a directory sync.
	if err := c.Rename("/e/one", "/e/uno"); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, c, "/e/three", []byte("3"), true)
	names := func(f FS) string {
		des, err := f.ReadDir("/e")
		if err != nil {
			t.Fatal(err)
		}
		var n []string
		for _, de := range des {
			n = append(n, de.Name())
		}
		return strings.Join(n, " ")
	}
	if got := names(c); got != "three two uno" {
		t.Fatalf("before the crash: %q", got)
	}
	if got := names(c.AfterCrash()); got != "one two" {
		t.Fatalf("after the crash: %q", got)
	}
	c.Reset(CrashOptions{CrashAt: 1})
	if err := c.Remove("/e/two"); !errors.Is(err, ErrCrashed) {
		t.Fatalf("crash point: %v", err)
	}
	if _, err := c.ReadDir("/e"); !errors.Is(err, ErrCrashed) {
		t.Fatalf("ReadDir after the crash: %v", err)
	}
}

// Only the write that the power cut interrupted (or the last one before
// it) may be torn. A write issued after the cut, as a concurrent writer
// would, never reaches the disk and must not displace that candidate.
func TestCrashTearIgnoresWritesAfterTheCut(t *testing.T) {
	torn := 0
	for seed := uint64(0); seed < 40; seed++ {
		c := NewCrash(CrashOptions{CrashAt: 1, TearLastWrite: true, Seed: seed})
		c.WriteFile("/a", make([]byte, 4096))
		c.WriteFile("/b", make([]byte, 4096))
		fa, err := c.OpenFile("/a", os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		fb, err := c.OpenFile("/b", os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fa.WriteAt(bytes.Repeat([]byte{1}, 4096), 0); !errors.Is(err, ErrCrashed) {
			t.Fatalf("write at the crash point: %v", err)
		}
		if _, err := fb.WriteAt(bytes.Repeat([]byte{2}, 4096), 0); !errors.Is(err, ErrCrashed) {
			t.Fatalf("write after the crash: %v", err)
		}
		after := c.AfterCrash()
		if b, _ := after.ReadFile("/b"); bytes.Count(b, []byte{0}) != 4096 {
			t.Fatalf("seed %d: a write issued after the power cut reached the disk: %d bytes", seed, 4096-bytes.Count(b, []byte{0}))
		}
		a, _ := after.ReadFile("/a")
		if n := bytes.Count(a, []byte{1}); n > 0 {
			torn++
			if n%512 != 0 || !bytes.Equal(a[:n], bytes.Repeat([]byte{1}, n)) {
				t.Fatalf("seed %d: tear is not a sector-aligned prefix: %d", seed, n)
			}
		}
	}
	if torn == 0 {
		t.Fatal("the interrupted write was never torn")
	}
}

// AfterCrash is a view: it leaves the crashed filesystem as it was, so
// calling it again shows the same power-on state rather than tearing the
// same write into the original a second time.
func TestAfterCrashIsRepeatable(t *testing.T) {
	for seed := uint64(0); seed < 20; seed++ {
		c := NewCrash(CrashOptions{CrashAt: 2, TearLastWrite: true, Seed: seed})
		c.WriteFile("/slot", make([]byte, 8192))
		f, _ := c.OpenFile("/slot", os.O_RDWR, 0)
		if _, err := f.WriteAt(bytes.Repeat([]byte{1}, 8192), 0); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); !errors.Is(err, ErrCrashed) {
			t.Fatalf("sync at the crash point: %v", err)
		}
		first, _ := c.AfterCrash().ReadFile("/slot")
		for i := 0; i < 8; i++ {
			again, _ := c.AfterCrash().ReadFile("/slot")
			if !bytes.Equal(again, first) {
				t.Fatalf("seed %d call %d: %d torn bytes, first call had %d", seed, i+2, bytes.Count(again, []byte{1}), bytes.Count(first, []byte{1}))
			}
		}
		c.mu.Lock()
		durable := c.durable["/slot"].durable
		c.mu.Unlock()
		if !bytes.Equal(durable, make([]byte, 8192)) {
			t.Fatalf("seed %d: AfterCrash changed the crashed filesystem's durable bytes (%d torn in)", seed, bytes.Count(durable, []byte{1}))
		}
	}
}
