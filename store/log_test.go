package store_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/store"
)

// Badger logs every table it opens and every compaction to stderr by
// default. Without WithLogger the store must print nothing.
func TestSilentByDefault(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stderr
	os.Stderr = f
	func() {
		defer func() { os.Stderr = saved }()
		dir := t.TempDir()
		for range 2 { // the second Open replays and reopens tables
			db, err := store.Open(dir)
			if err != nil {
				t.Error(err)
				return
			}
			put(t, db, chunker.SHA256, testChunks(13, 4, 4096)...)
			if _, err := db.GC(context.Background()); err != nil {
				t.Error(err)
			}
			if err := db.Close(); err != nil {
				t.Error(err)
			}
		}
	}()
	f.Close()
	if out, _ := os.ReadFile(f.Name()); len(out) > 0 {
		t.Fatalf("store wrote to stderr without a logger:\n%s", out)
	}
}

func TestWithLogger(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	dir := t.TempDir()
	db, err := store.Open(dir, store.WithLogger(l))
	if err != nil {
		t.Fatal(err)
	}
	put(t, db, chunker.SHA256, testChunks(14, 2, 4096)...)
	if _, err := db.GC(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"component=badger", "store: gc", "removed_chunks=2"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}
