package manifest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/fetch"
)

// BenchmarkPublish publishes a 256 MiB generated image into an empty
// repository per iteration (default chunk sizes, zstd, every core,
// fsync included). Compare with casync make on the same image and chunk
// sizes (casync make --store=S x.caibx IMG --chunk-size=16384:65536:262144).
func BenchmarkPublish(b *testing.B) {
	f := newFixture(b, nil)
	img := writeImage(b, f.dir, "bench.img", 256<<20, 42)
	b.SetBytes(256 << 20)
	b.ResetTimer()
	for i := range b.N {
		res, err := Publish(context.Background(), PublishOptions{
			Repo: filepath.Join(f.dir, "repo-"+itoa(uint64(i))), Keys: f.keys, Channel: "stable", Version: 1,
			Artifacts: []ArtifactInput{{Name: "rootfs", Path: img}},
		})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(res.NewChunks), "chunks")
		b.ReportMetric(float64(res.NewBytes)/float64(res.Bytes), "stored/raw")
	}
}

// BenchmarkRepublishUnchanged publishes the same 256 MiB image again: no
// chunk is written, so this is chunking and hashing plus existence checks.
func BenchmarkRepublishUnchanged(b *testing.B) {
	f := newFixture(b, nil)
	img := writeImage(b, f.dir, "bench.img", 256<<20, 42)
	o := PublishOptions{Repo: f.repo, Keys: f.keys, Channel: "stable", Version: 1, Artifacts: []ArtifactInput{{Name: "rootfs", Path: img}}}
	if _, err := Publish(context.Background(), o); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(256 << 20)
	b.ResetTimer()
	for i := range b.N {
		o.Version = uint64(i + 2)
		res, err := Publish(context.Background(), o)
		if err != nil {
			b.Fatal(err)
		}
		if res.NewChunks != 0 {
			b.Fatalf("wrote %d chunks", res.NewChunks)
		}
	}
}

// syntheticRelease writes a signed release whose one artifact has an index
// of n chunks (random digests; no chunk objects), as a 4 GiB image would.
func syntheticRelease(tb testing.TB, f *fixture, n int) *chunker.Index {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	ix := &chunker.Index{Params: chunker.DefaultParams, Hash: chunker.SHA256, Chunks: make([]chunker.Entry, n)}
	for i := range ix.Chunks {
		size := uint32(16<<10 + rng.IntN(240<<10))
		var seed [8]byte
		binary.LittleEndian.PutUint64(seed[:], rng.Uint64())
		ix.Chunks[i] = chunker.Entry{Size: size, Digest: sha256.Sum256(seed[:])}
		ix.Size += int64(size)
	}
	enc := ix.Encode()
	for _, d := range []string{"index", "metadata"} {
		os.MkdirAll(filepath.Join(f.repo, d), 0o755)
	}
	write(tb, filepath.Join(f.repo, IndexPath(ix.CID())), enc)
	sum := sha256.Sum256(enc)
	rel := &Release{Channel: "stable", Version: 1, Artifacts: []Artifact{{
		Name: "rootfs", Slot: "rootfs", Size: ix.Size, Root: ix.Root(), Hash: ix.Hash, Params: ix.Params,
		Chunks: n, Index: ix.CID(), IndexLength: int64(len(enc)), indexSHA256: sum[:],
	}}}
	targets, err := rel.targetFiles()
	if err != nil {
		tb.Fatal(err)
	}
	set, err := buildSet(f.keys, nil, targets, expiry(t0, 720*time.Hour), 0)
	if err != nil {
		tb.Fatal(err)
	}
	if err := writeRoots(f.repo, f.keys); err != nil {
		tb.Fatal(err)
	}
	md := filepath.Join(f.repo, metaDir)
	write(tb, filepath.Join(md, versionedName(1, metadata.TARGETS)), set.targets)
	write(tb, filepath.Join(md, versionedName(1, metadata.SNAPSHOT)), set.snapshot)
	write(tb, filepath.Join(md, timestampName), set.timestamp)
	return ix
}

// BenchmarkVerify65000 is a device's whole check of a release whose index
// has 65,000 chunks (a 4 GiB image at 64 KiB average): TUF chain from a
// fresh state, index fetch from a directory, hash, decode, Merkle root.
// Target: well under 1 s per op.
func BenchmarkVerify65000(b *testing.B) {
	f := newFixture(b, nil)
	ix := syntheticRelease(b, f, 65000)
	root, _ := os.ReadFile(filepath.Join(f.repo, "metadata", "1.root.json"))
	b.ResetTimer()
	for range b.N {
		c, err := NewClient(ClientConfig{TrustedRoot: root, StateDir: b.TempDir(), Mirrors: []fetch.Fetcher{fetch.Dir(f.repo)}, Now: clock(0)})
		if err != nil {
			b.Fatal(err)
		}
		v, err := c.Verify(context.Background(), stableDevice)
		if err != nil {
			b.Fatal(err)
		}
		if len(v.Indexes[0].Chunks) != len(ix.Chunks) {
			b.Fatal("wrong index")
		}
	}
}

// TestSyntheticReleaseVerifies keeps the benchmark's fixture honest.
func TestSyntheticReleaseVerifies(t *testing.T) {
	f := newFixture(t, nil)
	ix := syntheticRelease(t, f, 1000)
	v := mustAccept(t, f.client(0), stableDevice, 1)
	if v.Indexes[0].Root() != ix.Root() {
		t.Fatal("root differs")
	}
}
