package bundle

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	sumtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest/tlog"
)

// fakeLog serves a made-up log of identical records whose every tile is
// computed on demand: a hostile bundle or repository can present a tree of
// any size that proofs about one entry accept, because they touch only a
// few tiles.
type fakeLog struct {
	rec     []byte
	level   []sumtlog.Hash // level[k]: hash of a full subtree of 2^k records
	fetches int
}

func newFakeLog(rec []byte, k int) *fakeLog {
	f := &fakeLog{rec: rec, level: []sumtlog.Hash{sumtlog.RecordHash(rec)}}
	for i := 1; i <= k; i++ {
		f.level = append(f.level, sumtlog.NodeHash(f.level[i-1], f.level[i-1]))
	}
	return f
}

func (f *fakeLog) Fetch(_ context.Context, p string, max int64) ([]byte, error) {
	f.fetches++
	if !strings.HasPrefix(p, "tile/") {
		return nil, fetch.ErrNotFound
	}
	t, err := sumtlog.ParseTilePath(p)
	if err != nil {
		return nil, err
	}
	var b []byte
	for range t.W {
		if t.L < 0 {
			b = binary.BigEndian.AppendUint16(b, uint16(len(f.rec)))
			b = append(b, f.rec...)
		} else {
			h := f.level[t.L*tlog.TileHeight]
			b = append(b, h[:]...)
		}
	}
	if int64(len(b)) > max {
		return nil, fetch.ErrTooLarge
	}
	return b, nil
}

// A tree with more tiles than a bundle may hold entries cannot be sliced
// into a bundle; taking it on would walk (and allocate for) every tile of
// a tree of whatever size the checkpoint claims.
func TestSliceLogRefusesTreeTooLargeForBundle(t *testing.T) {
	defer func(n int) { maxEntries = n }(maxEntries)
	maxEntries = 16
	rec, err := targetsRecord(1, []byte("targets"))
	if err != nil {
		t.Fatal(err)
	}
	const k = 20
	f := newFakeLog(rec, k)
	tree := sumtlog.Tree{N: 1 << k, Hash: f.level[k]}
	_, err = sliceLog(context.Background(), f, tree, rec, 0)
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("got %v after %d fetches, want ErrMalformed", err, f.fetches)
	}
	if f.fetches != 0 {
		t.Fatalf("%d fetches before refusing the tree", f.fetches)
	}
}
