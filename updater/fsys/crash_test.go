package fsys

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
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
