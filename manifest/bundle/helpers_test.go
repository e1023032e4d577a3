package bundle

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"golang.org/x/mod/sumdb/note"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/manifest/tlog"
)

// t0 is the tests' clock; metadata expires 720h after it.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func clock() time.Time { return t0 }

// testParams keep images small but with hundreds of chunks.
var testParams = chunker.Params{Min: 2 << 10, Avg: 8 << 10, Max: 32 << 10}

// fixture is a key directory, a log key and a repository with two
// releases on channel "stable": version 1 and version 2, whose rootfs
// differs from 1's in a few places and whose boot image is the same. The
// root is rotated between them, so the repository holds two root versions.
type fixture struct {
	dir, repo string
	keys      *manifest.Keyring
	root      []byte // root version 1, as devices were provisioned
	logKey    string // verifier key of the log
	images    map[uint64]map[string][]byte
	afterV1   string // copy of the repository after release 1
	published map[uint64]*manifest.PublishResult
	logSigner note.Signer
	useLog    bool
	deltas    bool // release 2 is published with deltas from release 1
}

func newFixture(t testing.TB, withLog bool) *fixture { return newFixtureWith(t, withLog, false) }

// newFixtureWith is newFixture, with release 2 published with deltas
// from release 1 (publish --delta-from 1) when deltas is set: rootfs then
// has a delta target, boot (unchanged) none.
func newFixtureWith(t testing.TB, withLog, deltas bool) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{dir: dir, repo: filepath.Join(dir, "repo"), images: map[uint64]map[string][]byte{},
		published: map[uint64]*manifest.PublishResult{}, useLog: withLog, deltas: deltas}
	var err error
	if f.keys, err = manifest.InitKeys(filepath.Join(dir, "keys"), manifest.KeysOptions{Now: clock}); err != nil {
		t.Fatal(err)
	}
	f.root = f.keys.RootJSON()
	if withLog {
		skey, vkey, err := tlog.GenerateKey("shoal.test/log")
		if err != nil {
			t.Fatal(err)
		}
		if f.logSigner, err = note.NewSigner(skey); err != nil {
			t.Fatal(err)
		}
		f.logKey = vkey
	}
	rootfs1 := randomImage(1, 1200<<10)
	boot := randomImage(2, 300<<10)
	f.publish(t, 1, map[string][]byte{"rootfs": rootfs1, "boot": boot})
	f.afterV1 = filepath.Join(dir, "repo-v1")
	copyTree(t, f.repo, f.afterV1)
	if err := f.keys.Rotate(metadata.ROOT, manifest.KeysOptions{Now: clock}); err != nil {
		t.Fatal(err)
	}
	rootfs2 := bytes.Clone(rootfs1)
	rng := rand.New(rand.NewPCG(3, 3))
	for _, off := range []int{100 << 10, 600 << 10, 1100 << 10} {
		for i := range 20 << 10 {
			rootfs2[off+i] = byte(rng.Uint32())
		}
	}
	f.publish(t, 2, map[string][]byte{"rootfs": rootfs2, "boot": boot})
	return f
}

func (f *fixture) publish(t testing.TB, version uint64, imgs map[string][]byte) {
	t.Helper()
	o := manifest.PublishOptions{
		Repo: f.repo, Keys: f.keys, Channel: "stable", Version: version,
		Hardware: []string{"rpi4"}, Arch: []string{"arm64"},
		Params: testParams, Now: clock, Workers: 2,
	}
	if f.useLog {
		o.Log = tlog.Publisher{Signer: f.logSigner}
	}
	if f.deltas && version == 2 {
		o.DeltaFrom = []manifest.DeltaBase{{Version: 1}}
	}
	names := make([]string, 0, len(imgs))
	for n := range imgs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := filepath.Join(f.dir, n+"-"+strconv.FormatUint(version, 10)+".img")
		if err := os.WriteFile(p, imgs[n], 0o644); err != nil {
			t.Fatal(err)
		}
		o.Artifacts = append(o.Artifacts, manifest.ArtifactInput{Name: n, Path: p})
	}
	res, err := manifest.Publish(context.Background(), o)
	if err != nil {
		t.Fatalf("publish %d: %v", version, err)
	}
	f.images[version] = imgs
	f.published[version] = res
}

// create writes a bundle and returns its path.
func (f *fixture) create(t testing.TB, from uint64) (string, *Result) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "b.tar")
	res, err := Create(context.Background(), CreateOptions{Repo: f.repo, Channel: "stable", From: from, Out: out})
	if err != nil {
		t.Fatalf("create from %d: %v", from, err)
	}
	return out, res
}

func (f *fixture) verifyOptions() VerifyOptions {
	o := VerifyOptions{Root: f.root, Now: func() time.Time { return t0.Add(time.Hour) }}
	if f.logKey != "" {
		o.LogKeys = []string{f.logKey}
	}
	return o
}

// indexChunks returns the chunk paths the release's indexes list, read
// straight from the repository directory.
func (f *fixture) indexChunks(t testing.TB, version uint64) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, a := range f.published[version].Artifacts {
		id, err := parseID(a.Index)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(f.repo, manifest.IndexPath(id)))
		if err != nil {
			t.Fatal(err)
		}
		ix, err := chunker.DecodeIndex(b)
		if err != nil {
			t.Fatal(err)
		}
		for i := range ix.Chunks {
			out[manifest.ChunkPath(ix.ID(i))] = true
		}
	}
	return out
}

// randomImage is a deterministic image: random runs and repetitive runs,
// like a filesystem image.
func randomImage(seed uint64, size int) []byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, size)
	for off := 0; off < size; {
		n := min(size-off, 4<<10+rng.IntN(32<<10))
		if rng.IntN(3) == 0 {
			pat := byte(rng.IntN(256))
			for i := range n {
				b[off+i] = pat ^ byte(i%17)
			}
		} else {
			for i := range n {
				b[off+i] = byte(rng.Uint32())
			}
		}
		off += n
	}
	return b
}

func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// tarEntry is one entry of a bundle read back with archive/tar.
type tarEntry struct {
	name string
	data []byte
}

// readEntries reads every entry of a bundle with the standard library's
// tar reader, as an independent check of the format.
func readEntries(t testing.TB, path string) []tarEntry {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	tr := tar.NewReader(fh)
	var out []tarEntry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarEntry{h.Name, b})
	}
}

// rewrite writes entries as a bundle (deterministic headers) to a new
// file. With fixCounts, bundle.json's counts are recomputed, as an
// attacker who edits a bundle would.
func rewrite(t testing.TB, es []tarEntry, fixCounts bool) string {
	t.Helper()
	if fixCounts {
		var c Counts
		for _, e := range es[1:] {
			k, _, err := classify(e.name)
			if err != nil {
				t.Fatalf("classify %s: %v", e.name, err)
			}
			switch k {
			case kindMetadata:
				c.Metadata++
			case kindLog:
				c.Log++
			case kindIndex:
				c.Index++
			case kindChunk:
				c.Chunks++
			case kindDeltaIndex:
				c.DeltaIndexes++
			case kindDelta:
				c.Deltas++
			}
		}
		var info Info
		if err := json.Unmarshal(es[0].data, &info); err != nil {
			t.Fatal(err)
		}
		info.Counts = c
		b, err := json.Marshal(info)
		if err != nil {
			t.Fatal(err)
		}
		es = append([]tarEntry{{InfoPath, b}}, es[1:]...)
	}
	var buf bytes.Buffer
	tw := newTarWriter(&buf)
	for _, e := range es {
		if err := tw.add(e.name, e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "edited.tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// sortEntries sorts entries after bundle.json by path.
func sortEntries(es []tarEntry) {
	rest := es[1:]
	sort.Slice(rest, func(i, j int) bool { return rest[i].name < rest[j].name })
}

// rawHeader builds a ustar header block by hand, so tests can write what
// archive/tar refuses to (sizes without data, odd types).
func rawHeader(name string, size int64, typ byte) []byte {
	b := make([]byte, blockSize)
	copy(b[0:100], name)
	copy(b[100:108], "0000644\x00")
	copy(b[108:116], "0000000\x00")
	copy(b[116:124], "0000000\x00")
	copy(b[124:136], padOctal(size, 11)+"\x00")
	copy(b[136:148], "00000000000\x00")
	b[156] = typ
	copy(b[257:263], "ustar\x00")
	copy(b[263:265], "00")
	setChecksum(b)
	return b
}

func setChecksum(b []byte) {
	copy(b[148:156], "        ")
	var sum int64
	for _, c := range b {
		sum += int64(c)
	}
	copy(b[148:156], padOctal(sum, 6)+"\x00 ")
}

func padOctal(v int64, n int) string {
	s := strconv.FormatInt(v, 8)
	for len(s) < n {
		s = "0" + s
	}
	return s
}
