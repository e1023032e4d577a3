package delta

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/shoalnet/shoal/chunker"
)

// TestRealPair plans deltas for a pair of images on disk, for measuring
// reference choices and levels: SHOAL_DELTA_PAIR=OLD.idx,OLD_IMAGE,NEW.idx,NEW_IMAGE
// (bench/delta.sh builds such pairs); SHOAL_DELTA_LEVEL (1-4) and
// SHOAL_DELTA_MAXREF (bytes) override the defaults. Skipped without it.
func TestRealPair(t *testing.T) {
	spec := os.Getenv("SHOAL_DELTA_PAIR")
	if spec == "" {
		t.Skip("SHOAL_DELTA_PAIR not set")
	}
	f := strings.Split(spec, ",")
	if len(f) != 4 {
		t.Fatal("SHOAL_DELTA_PAIR: want OLD.idx,OLD_IMAGE,NEW.idx,NEW_IMAGE")
	}
	load := func(idx, img string) Image {
		b, err := os.ReadFile(idx)
		if err != nil {
			t.Fatal(err)
		}
		ix, err := chunker.DecodeIndex(b)
		if err != nil {
			t.Fatal(err)
		}
		fh, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { fh.Close() })
		return Image{Index: ix, Data: fh}
	}
	base, target := load(f[0], f[1]), load(f[2], f[3])
	var o Options
	if v := os.Getenv("SHOAL_DELTA_LEVEL"); v != "" {
		n, _ := strconv.Atoi(v)
		o.Level = zstd.EncoderLevel(n)
	}
	if v := os.Getenv("SHOAL_DELTA_MAXREF"); v != "" {
		o.MaxRef, _ = strconv.Atoi(v)
	}
	objs := map[int64][]byte{}
	o.Objects = func(e Entry, obj []byte) error {
		objs[e.Pos] = append([]byte(nil), obj...)
		return nil
	}
	start := time.Now()
	ix, st, err := Plan(context.Background(), base, target, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%v: %+v; delta index %d bytes", time.Since(start), st, len(ix.Encode()))
	// Every delta expands from the base image to its chunk (Expand checks
	// the chunk ID), references of the full cap included.
	start = time.Now()
	var out int64
	dst, ref := make([]byte, ix.MaxChunk), make([]byte, ix.MaxRef)
	for _, e := range ix.Entries {
		got, err := ExpandFrom(dst, ref, target.Index.ID(int(e.Pos)), objs[e.Pos], base.Data, ix.Limits())
		if err != nil {
			t.Fatal(err)
		}
		out += int64(len(got))
	}
	t.Logf("expanded %d deltas to %d bytes in %v, reference reads included", len(ix.Entries), out, time.Since(start))
}
