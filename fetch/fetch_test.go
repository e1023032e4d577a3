package fetch

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// repoDir writes a small repository: metadata/timestamp.json (10 bytes)
// and log/checkpoint.
func repoDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for p, data := range map[string]string{
		"metadata/timestamp.json": "0123456789",
		"log/checkpoint":          "checkpoint",
		"empty":                   "",
	} {
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// conformance checks the Fetcher contract on repoDir's content.
func conformance(t *testing.T, f Fetcher) {
	t.Helper()
	ctx := testCtx(t)
	b, err := f.Fetch(ctx, "metadata/timestamp.json", 10)
	if err != nil || string(b) != "0123456789" {
		t.Fatalf("exact bound: %q, %v", b, err)
	}
	b[0] = 'X' // the caller owns the slice
	if b, _ := f.Fetch(ctx, "metadata/timestamp.json", 10); string(b) != "0123456789" {
		t.Fatalf("a caller's write showed through: %q", b)
	}
	if b, err := f.Fetch(ctx, "empty", 0); err != nil || len(b) != 0 {
		t.Fatalf("empty file: %q, %v", b, err)
	}
	if _, err := f.Fetch(ctx, "metadata/timestamp.json", 9); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("one byte over the bound: %v, want ErrTooLarge", err)
	}
	if _, err := f.Fetch(ctx, "metadata/1.root.json", 100); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "metadata/1.root.json") {
		t.Fatalf("missing file: %v, want ErrNotFound naming it", err)
	}
	for _, p := range []string{"", "/etc/passwd", "../x", "metadata/../log/checkpoint", "metadata//timestamp.json", "./empty", `metadata\timestamp.json`, "a\x00b"} {
		if _, err := f.Fetch(ctx, p, 100); err == nil {
			t.Errorf("path %q accepted", p)
		}
	}
}

func TestDirConformance(t *testing.T) {
	dir := repoDir(t)
	conformance(t, Dir(dir))
	// No directory, no file: a repository without a log has no log/.
	if _, err := Dir(filepath.Join(dir, "nolog")).Fetch(context.Background(), "checkpoint", 100); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing directory: got %v, want ErrNotFound", err)
	}
}

func TestHTTPConformance(t *testing.T) {
	srv := httptest.NewServer(http.StripPrefix("/repo", http.FileServer(http.Dir(repoDir(t)))))
	defer srv.Close()
	h, err := NewHTTP(srv.URL+"/repo/", WithClient(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	conformance(t, h)
}

func TestSubConformance(t *testing.T) {
	dir := t.TempDir()
	inner := repoDir(t)
	if err := os.Rename(inner, filepath.Join(dir, "top")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "secret"), []byte("outside"), 0o644)
	f := Sub(Dir(dir), "top")
	conformance(t, f)
	if _, err := f.Fetch(testCtx(t), "../secret", 100); err == nil {
		t.Fatal("Sub let ../ climb out")
	}
	b, err := Sub(Dir(dir), "top/log/").Fetch(testCtx(t), "checkpoint", 100)
	if err != nil || string(b) != "checkpoint" {
		t.Fatalf("Sub with trailing slash: %q, %v", b, err)
	}
}

func TestReadAll(t *testing.T) {
	for _, tc := range []struct {
		in  string
		max int64
		ok  bool
	}{{"", 0, true}, {"a", 0, false}, {"abc", 3, true}, {"abcd", 3, false}, {"abc", -1, false}} {
		b, err := ReadAll(strings.NewReader(tc.in), "x", tc.max)
		if tc.ok != (err == nil) || (tc.ok && string(b) != tc.in) || (!tc.ok && !errors.Is(err, ErrTooLarge)) {
			t.Errorf("ReadAll(%q, %d) = %q, %v", tc.in, tc.max, b, err)
		}
	}
	// The buffer never grows past max+1 however long the input.
	r := &countingReader{}
	if _, err := ReadAll(r, "zeros", 1000); !errors.Is(err, ErrTooLarge) {
		t.Fatal(err)
	}
	if r.n > 1001+512 {
		t.Fatalf("read %d bytes of an endless stream for a bound of 1000", r.n)
	}
}

type countingReader struct{ n int }

func (r *countingReader) Read(p []byte) (int, error) {
	r.n += len(p)
	return len(p), nil
}

// noBlock runs fn, failing the test (instead of hanging it) if fn blocks
// on the named pipe fifo: the pipe is then opened for writing to release
// it.
func noBlock(t *testing.T, fifo string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			w.Close()
		}
		<-done
		t.Fatal("blocked opening a named pipe")
	}
}

func mkfifo(t *testing.T, p string) {
	t.Helper()
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
}

// A named pipe where a file belongs (hostile removable media) is refused,
// and opening it does not wait for a writer.
func TestDirRefusesFIFO(t *testing.T) {
	dir := repoDir(t)
	fifo := filepath.Join(dir, "metadata", "2.root.json")
	mkfifo(t, fifo)
	noBlock(t, fifo, func() {
		_, err := Dir(dir).Fetch(context.Background(), "metadata/2.root.json", 100)
		if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), "named pipe") {
			t.Errorf("got %v, want ErrNotRegular (a named pipe)", err)
		}
	})
	noBlock(t, fifo, func() {
		if _, err := ReadFile(fifo, 100); !errors.Is(err, ErrNotRegular) {
			t.Errorf("ReadFile: got %v, want ErrNotRegular", err)
		}
		if f, err := OpenFile(fifo); !errors.Is(err, ErrNotRegular) {
			f.Close()
			t.Errorf("OpenFile: got %v, want ErrNotRegular", err)
		}
	})
	if _, err := Dir(dir).Fetch(context.Background(), "metadata", 100); !errors.Is(err, ErrNotRegular) {
		t.Errorf("directory: got %v, want ErrNotRegular", err)
	}
	if _, err := ReadFile("/dev/zero", 100); !errors.Is(err, ErrNotRegular) {
		t.Errorf("/dev/zero: got %v, want ErrNotRegular", err)
	}
}

// Symlinks inside the directory are followed; symlinks that leave it are
// refused.
func TestDirSymlinks(t *testing.T) {
	dir := repoDir(t)
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte("secret"), 0o644)
	if err := os.Symlink(outside, filepath.Join(dir, "metadata", "abs.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../"+filepath.Base(filepath.Dir(outside))+"/secret", filepath.Join(dir, "metadata", "rel.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("timestamp.json", filepath.Join(dir, "metadata", "inside.json")); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, p := range []string{"metadata/abs.json", "metadata/rel.json"} {
		b, err := Dir(dir).Fetch(ctx, p, 100)
		if err == nil || bytes.Contains(b, []byte("secret")) {
			t.Errorf("%s: read %q, %v; want refused", p, b, err)
		}
	}
	if b, err := Dir(dir).Fetch(ctx, "metadata/inside.json", 100); err != nil || string(b) != "0123456789" {
		t.Errorf("symlink inside: %q, %v", b, err)
	}
}

func TestReadFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, []byte("hello"), 0o600)
	if b, err := ReadFile(p, 5); err != nil || string(b) != "hello" {
		t.Fatalf("%q, %v", b, err)
	}
	if _, err := ReadFile(p, 4); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), p) {
		t.Fatalf("over bound: %v", err)
	}
	if _, err := ReadFile(p+".missing", 4); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing: %v, want fs.ErrNotExist", err)
	}
}

func TestNew(t *testing.T) {
	dir := repoDir(t)
	if f, err := New(dir); err != nil || f != Dir(dir) {
		t.Fatalf("New(dir) = %v, %v", f, err)
	}
	if f, err := New("https://origin.example/repo"); err != nil {
		t.Fatal(err)
	} else if h, ok := f.(*HTTP); !ok || h.URL() != "https://origin.example/repo/" {
		t.Fatalf("New(url) = %#v", f)
	}
	if _, err := New(filepath.Join(dir, "empty")); err == nil {
		t.Fatal("New(regular file) accepted")
	}
	if _, err := New(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("New(missing) = %v", err)
	}
	if _, err := New("https://x/", WithRetries(-1)); err == nil {
		t.Fatal("New passed no options through")
	}
}

func TestMemConformance(t *testing.T) {
	conformance(t, Mem{
		"metadata/timestamp.json": []byte("0123456789"),
		"log/checkpoint":          []byte("checkpoint"),
		"empty":                   {},
	})
}
