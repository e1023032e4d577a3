package main

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestHashFileReadsEveryByte covers sizes that are not a multiple of the
// block or of workers×block, so the last short block and idle workers are
// exercised.
func TestHashFileReadsEveryByte(t *testing.T) {
	for _, size := range []int{0, 1, 4095, 4096, 3*4096 + 7, 10 * 4096} {
		path := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(path, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, workers := range []int{1, 3} {
			r, err := hashFile(context.Background(), path, workers, 4096)
			if err != nil {
				t.Fatalf("size %d, %d workers: %v", size, workers, err)
			}
			if r.Bytes != int64(size) || r.Workers != workers || r.Block != 4096 {
				t.Errorf("size %d, %d workers: got %+v", size, workers, r)
			}
		}
	}
}

func TestHashFileMissing(t *testing.T) {
	_, err := hashFile(context.Background(), filepath.Join(t.TempDir(), "nope"), 2, 4096)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v, want a not-exist error", err)
	}
}

func TestHashFileCanceled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := hashFile(ctx, path, 2, 4096); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}
