package bundle

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/manifest"
)

// fuzzSeeds are small bundles, valid and not: the hand-made one, and
// variants that stop at each check of the reader.
func fuzzSeeds() [][]byte {
	tb := newTiny()
	info := rawEntry(InfoPath, tb.infoJSON(), '0')
	chunk := rawEntry(manifest.ChunkPath(tb.chunkID), tb.chunk, '0')
	meta := rawEntry("metadata/timestamp.json", []byte(`{"signed":{}}`), '0')
	tile := rawEntry("log/tile/8/0/000.p/1", make([]byte, 32), '0')
	in := tb.info
	in.Counts.Log = 1
	j, _ := json.Marshal(in)
	// Format 2: a delta index and a delta object beside the chunk.
	din := tb.info
	din.Format, din.From = FormatDeltas, 1
	din.Version = 2
	din.FromArtifacts = din.Artifacts
	dataID := chunker.SHA256.ID(chunker.SHA256.Sum([]byte("delta bytes")))
	din.Deltas = []DeltaRef{{Artifact: "rootfs", DeltaIndex: tb.chunkID.String()}}
	din.Counts.DeltaIndexes, din.Counts.Deltas = 1, 1
	dj, _ := json.Marshal(din)
	deltaEntries := []tarEntry{
		{manifest.DeltaIndexPath(tb.chunkID), []byte("SHOALDLT")},
		{manifest.DeltaPath(dataID), []byte{3, 1, 0, 0, 0, 1}},
	}
	sort.Slice(deltaEntries, func(i, j int) bool { return deltaEntries[i].name < deltaEntries[j].name })
	withDeltas := [][]byte{rawEntry(InfoPath, dj, '0'), chunk}
	for _, e := range deltaEntries {
		withDeltas = append(withDeltas, rawEntry(e.name, e.data, '0'))
	}
	withDeltas = append(withDeltas, meta)
	return [][]byte{
		rawTar(withDeltas...),
		rawTar(rawEntry(InfoPath, dj, '0'), chunk, meta), // counts say deltas, none there
		rawTar(info, chunk, meta),
		rawTar(rawEntry(InfoPath, j, '0'), chunk, tile, meta),
		rawTar(info, chunk),
		rawTar(info, rawEntry("../x", nil, '0')),
		rawTar(info, chunk, chunk, meta),
		append(append(bytes.Clone(info), chunk...), rawHeader("metadata/timestamp.json", 5000, '0')...),
	}
}

// FuzzOpen feeds arbitrary bytes to the bundle reader: it must never
// panic, every rejection must wrap ErrMalformed, and an accepted bundle
// must serve exactly the entries it listed, each within its kind's bound.
func FuzzOpen(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := open(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("rejection without ErrMalformed: %v", err)
			}
			return
		}
		ctx := context.Background()
		ps := r.Paths()
		if !sort.StringsAreSorted(ps) {
			t.Fatalf("paths not sorted: %v", ps)
		}
		for i, p := range ps {
			if i > 0 && ps[i-1] == p {
				t.Fatalf("duplicate path %s", p)
			}
			_, limit, err := classify(p)
			if err != nil {
				t.Fatalf("accepted path %s: %v", p, err)
			}
			b, err := r.Fetch(ctx, p, limit)
			if err != nil {
				t.Fatalf("fetch %s: %v", p, err)
			}
			if n, ok := r.Has(p); !ok || int64(len(b)) != n {
				t.Fatalf("fetch %s: %d bytes, Has says %d %v", p, len(b), n, ok)
			}
		}
		_ = r.Chunks(ctx, func(id cid.Cid, obj []byte) error {
			_, err := manifest.DecodeChunk(id, obj, chunker.MaxChunkCeil)
			_ = err
			return nil
		})
		_ = r.Indexes(ctx, func(cid.Cid, *chunker.Index) error { return nil })
		// An accepted bundle.json keeps the delta invariants Verify and
		// Import rely on.
		in := r.Info()
		if (in.Format == FormatDeltas) != (len(in.Deltas) > 0) || (len(in.Deltas) > 0 && in.From == 0) {
			t.Fatalf("accepted info: format %d, from %d, %d delta indexes", in.Format, in.From, len(in.Deltas))
		}
		_ = r.Importable()
	})
}

// TestWriteFuzzSeeds refreshes testdata/fuzz/FuzzOpen from fuzzSeeds when
// SHOAL_WRITE_SEEDS is set.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("SHOAL_WRITE_SEEDS") == "" {
		t.Skip("set SHOAL_WRITE_SEEDS=1 to rewrite the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzOpen")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range fuzzSeeds() {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
