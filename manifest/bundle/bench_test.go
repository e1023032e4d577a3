package bundle

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/manifest"
)

// benchRepo publishes one 64 MiB image (default chunk sizes, about 1,000
// chunks) and returns the repository and the provisioned root.
func benchRepo(b *testing.B) (repo string, root []byte) {
	b.Helper()
	dir := b.TempDir()
	k, err := manifest.InitKeys(filepath.Join(dir, "keys"), manifest.KeysOptions{Now: clock})
	if err != nil {
		b.Fatal(err)
	}
	img := filepath.Join(dir, "rootfs.img")
	if err := os.WriteFile(img, randomImage(5, 64<<20), 0o644); err != nil {
		b.Fatal(err)
	}
	repo = filepath.Join(dir, "repo")
	if _, err := manifest.Publish(context.Background(), manifest.PublishOptions{
		Repo: repo, Keys: k, Channel: "stable", Version: 1, Now: clock, Params: chunker.DefaultParams,
		Artifacts: []manifest.ArtifactInput{{Name: "rootfs", Path: img}},
	}); err != nil {
		b.Fatal(err)
	}
	return repo, k.RootJSON()
}

// BenchmarkCreate measures writing a bundle from a repository directory
// (every chunk fetched, decoded and hashed); bytes are image bytes.
func BenchmarkCreate(b *testing.B) {
	repo, _ := benchRepo(b)
	out := filepath.Join(b.TempDir(), "b.tar")
	b.ResetTimer()
	for b.Loop() {
		res, err := Create(context.Background(), CreateOptions{Repo: repo, Channel: "stable", Out: out})
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(res.RawBytes)
	}
}

// BenchmarkVerify measures a full offline verification; bytes are image
// bytes.
func BenchmarkVerify(b *testing.B) {
	repo, root := benchRepo(b)
	out := filepath.Join(b.TempDir(), "b.tar")
	if _, err := Create(context.Background(), CreateOptions{Repo: repo, Channel: "stable", Out: out}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		res, err := Verify(context.Background(), out, VerifyOptions{Root: root, Now: clock})
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(res.RawBytes)
	}
}

// BenchmarkOpen measures parsing the headers of a bundle (one read per
// entry); reported per entry.
func BenchmarkOpen(b *testing.B) {
	repo, _ := benchRepo(b)
	out := filepath.Join(b.TempDir(), "b.tar")
	res, err := Create(context.Background(), CreateOptions{Repo: repo, Channel: "stable", Out: out})
	if err != nil {
		b.Fatal(err)
	}
	entries := res.Chunks + res.IndexFiles + res.MetadataFiles + res.LogFiles + 1
	b.ResetTimer()
	for b.Loop() {
		r, err := Open(out)
		if err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(entries), "ns/entry")
}
