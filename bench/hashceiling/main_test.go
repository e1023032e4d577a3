package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// blockDigest is hashFile's digest computed the plain way: SHA-256 over the
// SHA-256 of each block, in order, one block after another.
func blockDigest(data []byte, block int) string {
	h := sha256.New()
	for off := 0; off < len(data); off += block {
		d := sha256.Sum256(data[off:min(off+block, len(data))])
		h.Write(d[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestHashFileReadsEveryByte covers sizes that are not a multiple of the
// block or of workers×block, so the last short block and idle workers are
// exercised. The data is random, so every block differs: a block skipped,
// hashed twice, read from the wrong offset or cut short changes the digest,
// and so does any changed byte.
func TestHashFileReadsEveryByte(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 1, 4095, 4096, 3*4096 + 7, 10 * 4096} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		path := filepath.Join(t.TempDir(), "f")
		// The original, then one byte changed at the start, in the middle
		// and at the end (in the last, possibly short, block).
		variants := [][]byte{data}
		if size > 0 {
			for _, at := range slices.Compact([]int{0, size / 2, size - 1}) {
				v := bytes.Clone(data)
				v[at] ^= 0x01
				variants = append(variants, v)
			}
		}
		seen := map[string]bool{}
		for _, v := range variants {
			if err := os.WriteFile(path, v, 0o644); err != nil {
				t.Fatal(err)
			}
			want := blockDigest(v, 4096)
			for _, workers := range []int{1, 3} {
				r, err := hashFile(context.Background(), path, workers, 4096)
				if err != nil {
					t.Fatalf("size %d, %d workers: %v", size, workers, err)
				}
				if r.Bytes != int64(size) || r.Digest != want {
					t.Errorf("size %d, %d workers: read %d bytes, digest %s; want %d bytes, %s", size, workers, r.Bytes, r.Digest, size, want)
				}
			}
			if seen[want] {
				t.Fatalf("size %d: a changed byte left the digest as it was", size)
			}
			seen[want] = true
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
