package tlog

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/shoalnet/shoal/fetch"
)

// countingFetcher counts the fetches it passes on.
type countingFetcher struct {
	fetch.Fetcher
	n int
}

func (c *countingFetcher) Fetch(ctx context.Context, p string, max int64) ([]byte, error) {
	c.n++
	return c.Fetcher.Fetch(ctx, p, max)
}

// TestSliceAloneProves: the files of a slice, served with nothing else,
// let a reader that remembers any older tree run the device's whole
// check (consistency from that tree, inclusion of the record); no file of
// the log outside the slice is needed, and the slice holds no other.
func TestSliceAloneProves(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k := newTestKey(t, "shoal.test/log")
	var all [][]byte
	var trees []tlog.Tree
	for _, n := range []int{1, 199, 100, 300} { // partial tiles of older trees keep their names
		batch := records(t, "", len(all), n)
		trees = append(trees, mustAppend(t, dir, k, batch...).Tree)
		all = append(all, batch...)
	}
	last := trees[len(trees)-1]
	for _, i := range []int64{0, 250, 599} {
		s, err := ReadSlice(ctx, fetch.Dir(dir), last, all[i], 1<<16)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if s.Index != i || s.Tree != last {
			t.Fatalf("record %d: slice at %d of %d", i, s.Index, s.Tree.N)
		}
		want := slicePaths(last, all[i], i)
		got := keys(s.Files)
		if !slices.Equal(got, want) {
			t.Fatalf("record %d: files %v, want %v", i, got, want)
		}
		for p, b := range s.Files {
			if limit, err := PathLimit(p); err != nil || int64(len(b)) > limit {
				t.Fatalf("%s: %d bytes, limit %d, %v", p, len(b), limit, err)
			}
		}
		r := NewReader(mapFetcher(s.Files), k.verifiers)
		for _, prev := range append([]tlog.Tree{{}}, trees...) {
			cp, idx, err := r.Check(ctx, prev, all[i])
			if err != nil || idx != i || cp.Tree != last {
				t.Fatalf("record %d: check from a tree of %d entries: %d, %v", i, prev.N, idx, err)
			}
		}
	}
}

func TestReadSliceRefuses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k := newTestKey(t, "shoal.test/log")
	recs := records(t, "", 0, 300)
	old := mustAppend(t, dir, k, recs[:10]...).Tree
	tree := mustAppend(t, dir, k, recs[10:]...).Tree
	files := readAll(t, dir)

	// A tree above the bound is refused before anything is read.
	c := &countingFetcher{Fetcher: mapFetcher(files)}
	if _, err := ReadSlice(ctx, c, tree, recs[5], 299); !errors.Is(err, ErrTooLarge) || c.n != 0 {
		t.Fatalf("tree above the bound: %v after %d fetches", err, c.n)
	}
	// A record the tree does not hold.
	if _, err := ReadSlice(ctx, mapFetcher(files), tree, []byte("never logged\n"), 1<<16); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unlogged record: %v", err)
	}
	// The checkpoint states another tree than the one asked about.
	if _, err := ReadSlice(ctx, mapFetcher(files), old, recs[5], 1<<16); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("checkpoint of another tree: %v", err)
	}
	// A tile the proof of this record does not read is damaged: found
	// all the same, since the slice vouches for every tile.
	bad := maps.Clone(files)
	tile := bad["tile/8/0/001.p/44"]
	bad["tile/8/0/001.p/44"] = append([]byte{tile[0] ^ 1}, tile[1:]...)
	if _, err := ReadSlice(ctx, mapFetcher(bad), tree, recs[5], 1<<16); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("damaged tile: %v", err)
	}
	// A missing tile is a missing file, not a damaged one.
	gone := maps.Clone(files)
	delete(gone, "tile/8/0/001.p/44")
	if _, err := ReadSlice(ctx, mapFetcher(gone), tree, recs[5], 1<<16); !errors.Is(err, fetch.ErrNotFound) {
		t.Fatalf("missing tile: %v", err)
	}
}

func TestPathLimit(t *testing.T) {
	for p, want := range map[string]int64{
		"checkpoint":            MaxCheckpointSize,
		"lookup/0a":             MaxLookupShardSize,
		"tile/8/0/000":          256 * 32,
		"tile/8/1/x001/002.p/3": 3 * 32,
		"tile/8/data/000.p/2":   2 * (2 + MaxRecordSize),
	} {
		if got, err := PathLimit(p); err != nil || got != want {
			t.Errorf("%s: %d, %v; want %d", p, got, err, want)
		}
	}
	for _, p := range []string{"", ".lock", ".append", "checkpoint.tmp", "lookup/0A", "lookup/0", "lookup/000",
		"tile/9/0/000", "tile/8/0/0", "tile/8/0/000.p/256", "tile/8/0/000.p/0", "tile/8/0/x000/001", "tile/8/-1/000", "other"} {
		if _, err := PathLimit(p); err == nil {
			t.Errorf("%q accepted", p)
		}
	}
}
