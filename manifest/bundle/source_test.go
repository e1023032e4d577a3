package bundle

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoalnet/shoal/fetch"
)

// A named pipe given as a bundle (`bundle verify FIFO`, `bundle import
// FIFO`, `update apply --source FIFO`) is refused at once: opening it does
// not wait for a writer.
func TestOpenRefusesFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "b.tar")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	f := newFixture(t, false)
	for name, open := range map[string]func() error{
		"Open": func() error { _, err := Open(fifo); return err },
		"Verify": func() error {
			_, err := Verify(context.Background(), fifo, f.verifyOptions())
			return err
		},
		"OpenSource": func() error { _, _, err := OpenSource(fifo); return err },
	} {
		done := make(chan error, 1)
		go func() { done <- open() }()
		select {
		case err := <-done:
			if !errors.Is(err, fetch.ErrNotRegular) || !strings.Contains(err.Error(), fifo) {
				t.Errorf("%s: got %v, want fetch.ErrNotRegular naming %s", name, err, fifo)
			}
		case <-time.After(5 * time.Second):
			// Release the blocked open, then fail.
			if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
				w.Close()
			}
			<-done
			t.Fatalf("%s blocked on a named pipe", name)
		}
	}
	if _, err := Open("/dev/zero"); !errors.Is(err, fetch.ErrNotRegular) {
		t.Errorf("Open(/dev/zero): %v, want fetch.ErrNotRegular", err)
	}
}

func TestOpenSource(t *testing.T) {
	f := newFixture(t, false)
	path, _ := f.create(t, 0)
	ctx := context.Background()

	src, closer, err := OpenSource(path)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := src.(*Reader)
	if !ok {
		t.Fatalf("a file opened as %T, want a bundle", src)
	}
	if err := closer.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Fetch(ctx, "metadata/timestamp.json", 1<<20); err == nil {
		t.Fatal("read from a closed bundle")
	}

	src, closer, err = OpenSource(f.repo)
	if err != nil || src != fetch.Dir(f.repo) || closer == nil {
		t.Fatalf("directory: %#v, %v, %v", src, closer, err)
	}
	if _, err := src.Fetch(ctx, "metadata/timestamp.json", 1<<20); err != nil {
		t.Fatal(err)
	}
	closer.Close()

	src, closer, err = OpenSource("https://origin.example/repo", fetch.WithRetries(0))
	if h, ok := src.(*fetch.HTTP); err != nil || !ok || h.URL() != "https://origin.example/repo/" || closer == nil {
		t.Fatalf("URL: %#v, %v", src, err)
	}
	if _, _, err := OpenSource("https://x/", fetch.WithRetries(-1)); err == nil {
		t.Fatal("options not passed on")
	}
	if _, _, err := OpenSource(filepath.Join(f.dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
	garbage := filepath.Join(t.TempDir(), "not-a-bundle")
	os.WriteFile(garbage, []byte("hello"), 0o644)
	if _, _, err := OpenSource(garbage); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a file that is no bundle: %v", err)
	}
}
