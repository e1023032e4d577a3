package bundle

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/manifest/tlog"
)

func TestCreateFullBundle(t *testing.T) {
	f := newFixture(t, true)
	path, res := f.create(t, 0)

	want := f.indexChunks(t, 2)
	if res.Chunks != len(want) || res.ReleaseChunks != len(want) || res.SkippedChunks != 0 {
		t.Fatalf("result: %d chunks (%d in release, %d skipped), want %d", res.Chunks, res.ReleaseChunks, res.SkippedChunks, len(want))
	}
	st, err := os.Stat(path)
	if err != nil || st.Size() != res.Bytes {
		t.Fatalf("bundle size %v, result says %d (%v)", st.Size(), res.Bytes, err)
	}

	// An independent tar reader sees bundle.json first, then the
	// repository's files byte for byte, sorted.
	es := readEntries(t, path)
	if es[0].name != InfoPath {
		t.Fatalf("first entry %s", es[0].name)
	}
	var metas, logs, indexes []string
	chunks := map[string]bool{}
	for i, e := range es[1:] {
		if i > 0 && es[i].name >= e.name {
			t.Fatalf("entries out of order: %s then %s", es[i].name, e.name)
		}
		disk, err := os.ReadFile(filepath.Join(f.repo, filepath.FromSlash(e.name)))
		if err != nil || !bytes.Equal(disk, e.data) {
			t.Fatalf("entry %s differs from the repository file (%v)", e.name, err)
		}
		switch {
		case strings.HasPrefix(e.name, "metadata/"):
			metas = append(metas, e.name)
		case strings.HasPrefix(e.name, "log/"):
			logs = append(logs, e.name)
		case strings.HasPrefix(e.name, "index/"):
			indexes = append(indexes, e.name)
		case strings.HasPrefix(e.name, "chunks/"):
			chunks[e.name] = true
		}
	}
	wantMeta := []string{"metadata/1.root.json", "metadata/2.root.json", "metadata/2.snapshot.json",
		"metadata/2.targets.json", "metadata/root.json", "metadata/timestamp.json"}
	if strings.Join(metas, " ") != strings.Join(wantMeta, " ") {
		t.Errorf("metadata entries %v, want %v", metas, wantMeta)
	}
	if len(indexes) != 2 {
		t.Errorf("index entries %v, want rootfs and boot of release 2", indexes)
	}
	if len(chunks) != len(want) {
		t.Errorf("%d chunk entries, want %d", len(chunks), len(want))
	}
	for p := range want {
		if !chunks[p] {
			t.Fatalf("chunk %s missing", p)
		}
	}
	// Two publishes: a log of two entries fits in one partial tile.
	wantLog := []string{"log/checkpoint", "log/lookup/", "log/tile/8/0/000.p/2", "log/tile/8/data/000.p/2"}
	if len(logs) != 4 || logs[0] != wantLog[0] || !strings.HasPrefix(logs[1], wantLog[1]) || logs[2] != wantLog[2] || logs[3] != wantLog[3] {
		t.Errorf("log entries %v, want %v", logs, wantLog)
	}
	if res.LogTreeSize != 2 || res.LogEntry != 1 {
		t.Errorf("log tree %d, entry %d; want 2, 1", res.LogTreeSize, res.LogEntry)
	}

	info := res.Info
	if info.Channel != "stable" || info.Version != 2 || info.From != 0 || info.TargetsVersion != 2 ||
		len(info.Artifacts) != 2 || info.Artifacts[0].Name != "boot" || info.Artifacts[1].Name != "rootfs" {
		t.Errorf("info %+v", info)
	}

	// Offline: the repository is gone.
	if err := os.RemoveAll(f.repo); err != nil {
		t.Fatal(err)
	}
	v, err := Verify(context.Background(), path, f.verifyOptions())
	if err != nil {
		t.Fatal(err)
	}
	if v.Chunks != len(want) || v.RawBytes != res.RawBytes || v.ChunkBytes != res.ChunkBytes {
		t.Errorf("verify: %d chunks %d/%d bytes, create: %d chunks %d/%d bytes", v.Chunks, v.ChunkBytes, v.RawBytes, res.Chunks, res.ChunkBytes, res.RawBytes)
	}
	if v.Log == nil || !v.Log.Signed || v.Log.TreeSize != 2 || v.Log.Entry != 1 {
		t.Errorf("log proof %+v", v.Log)
	}
	if v.Device.Hardware != "rpi4" || v.Device.Arch != "arm64" || v.Device.Channel != "stable" {
		t.Errorf("device %+v", v.Device)
	}
	if v.Verified.RootVersion != 2 || v.Verified.Release.Version != 2 {
		t.Errorf("verified root v%d release %d", v.Verified.RootVersion, v.Verified.Release.Version)
	}
}

func TestCreateFromBundle(t *testing.T) {
	f := newFixture(t, true)
	full, fullRes := f.create(t, 0)
	path, res := f.create(t, 1)

	v1, v2 := f.indexChunks(t, 1), f.indexChunks(t, 2)
	want := map[string]bool{}
	for p := range v2 {
		if !v1[p] {
			want[p] = true
		}
	}
	if len(want) == 0 || len(want) == len(v2) {
		t.Fatalf("fixture: %d of %d chunks new; want some shared and some new", len(want), len(v2))
	}
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := map[string]bool{}
	for _, p := range r.Paths() {
		if strings.HasPrefix(p, "chunks/") {
			got[p] = true
		}
	}
	if len(got) != len(want) {
		t.Fatalf("--from bundle holds %d chunks, release 2 has %d that release 1 lacks", len(got), len(want))
	}
	for p := range want {
		if !got[p] {
			t.Fatalf("missing %s", p)
		}
	}
	if res.SkippedChunks != len(v2)-len(want) || res.ReleaseChunks != len(v2) {
		t.Errorf("skipped %d of %d, want %d of %d", res.SkippedChunks, res.ReleaseChunks, len(v2)-len(want), len(v2))
	}
	// Release 1's indexes ride along (boot's is release 2's too).
	if res.IndexFiles != 3 || len(r.Info().FromArtifacts) != 2 || r.Info().From != 1 {
		t.Errorf("index files %d, info %+v", res.IndexFiles, r.Info())
	}
	if res.Bytes >= fullRes.Bytes {
		t.Errorf("--from bundle %d bytes, full %d", res.Bytes, fullRes.Bytes)
	}
	v, err := r.Verify(context.Background(), f.verifyOptions())
	if err != nil {
		t.Fatal(err)
	}
	if v.Chunks != len(want) || v.SkippedChunks != len(v2)-len(want) || v.Device.Installed != 1 {
		t.Errorf("verify: %d chunks, %d skipped, installed %d", v.Chunks, v.SkippedChunks, v.Device.Installed)
	}

	// A full bundle is not a --from bundle: its extra chunks are refused
	// when checked as one... and a --from bundle checked as full lacks
	// chunks. Both are named.
	o := f.verifyOptions()
	o.Device.Installed = 1
	if _, err := Verify(context.Background(), full, o); err != nil {
		t.Fatalf("a full bundle serves a device running release 1 too: %v", err)
	}
}

// A device reads the bundle through fetch.Fetcher exactly as it reads
// a mirror, and assembles release 2 from it: from the bundle alone for a
// full bundle; from its release 1 images plus the bundle for a --from one.
func TestDeviceInstallsFromBundle(t *testing.T) {
	f := newFixture(t, false)
	for _, from := range []uint64{0, 1} {
		path, _ := f.create(t, from)
		r, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		c, err := manifest.NewClient(manifest.ClientConfig{TrustedRoot: f.root, StateDir: t.TempDir(),
			Mirrors: []fetch.Fetcher{r}, Now: f.verifyOptions().Now})
		if err != nil {
			t.Fatal(err)
		}
		v, err := c.Verify(context.Background(), manifest.Device{Channel: "stable", Hardware: "rpi4", Arch: "arm64", Installed: from})
		if err != nil {
			t.Fatalf("from %d: %v", from, err)
		}
		// What the device holds: release 1's images, chunked as published.
		local := map[string][]byte{}
		if from == 1 {
			local = chunksOf(t, f.images[1])
		}
		fetched := 0
		for i, a := range v.Release.Artifacts {
			ix := v.Indexes[i]
			var img []byte
			for j := range ix.Chunks {
				id := ix.ID(j)
				data, ok := local[id.String()]
				if !ok {
					if data, err = manifest.FetchChunk(context.Background(), r, id, ix.Params.Max); err != nil {
						t.Fatalf("from %d: %s chunk %d: %v", from, a.Name, j, err)
					}
					fetched++
				}
				img = append(img, data...)
			}
			if !bytes.Equal(img, f.images[2][a.Name]) {
				t.Fatalf("from %d: assembled %s differs from the published image", from, a.Name)
			}
		}
		if fetched == 0 {
			t.Fatalf("from %d: nothing came from the bundle", from)
		}
		r.Close()
	}
}

func TestCreateIsDeterministic(t *testing.T) {
	f := newFixture(t, true)
	a, _ := f.create(t, 1)
	b, _ := f.create(t, 1)
	// Over HTTP, through the repository handler, too.
	srv := httptest.NewServer(manifest.Handler(f.repo))
	defer srv.Close()
	c := filepath.Join(t.TempDir(), "http.tar")
	if _, err := Create(context.Background(), CreateOptions{Repo: srv.URL + "/", Channel: "stable", From: 1, Out: c, Workers: 3}); err != nil {
		t.Fatal(err)
	}
	ab, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	cb, _ := os.ReadFile(c)
	if len(ab) == 0 || !bytes.Equal(ab, bb) || !bytes.Equal(ab, cb) {
		t.Fatalf("bundles differ: %d, %d and %d bytes", len(ab), len(bb), len(cb))
	}
}

func TestCreateOptions(t *testing.T) {
	f := newFixture(t, false)
	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "b.tar")
	for _, tc := range []struct {
		name string
		o    CreateOptions
		want string
	}{
		{"older version", CreateOptions{Version: 1}, "not the channel's newest (2)"},
		{"unknown version", CreateOptions{Version: 7}, "not listed"},
		{"from not below", CreateOptions{Version: 2, From: 2}, "not below"},
		{"from unknown", CreateOptions{From: 9}, "not below the release"},
		{"bad channel", CreateOptions{Channel: "Stable!"}, "not a valid name"},
		{"other channel", CreateOptions{Channel: "beta"}, "no release on channel beta"},
		{"no repository", CreateOptions{Repo: filepath.Join(f.dir, "nope")}, "no such file"},
		{"not a repository", CreateOptions{Repo: f.dir}, "is this a shoal repository"},
	} {
		o := tc.o
		if o.Repo == "" {
			o.Repo = f.repo
		}
		if o.Channel == "" {
			o.Channel = "stable"
		}
		o.Out = out
		_, err := Create(ctx, o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		if _, serr := os.Stat(out); !errors.Is(serr, fs.ErrNotExist) {
			t.Fatalf("%s: a failed create left %s", tc.name, out)
		}
	}
	if _, err := Create(ctx, CreateOptions{Repo: f.repo, Channel: "stable", Version: 2, Out: out}); err != nil {
		t.Fatal(err)
	}

	// A corrupt chunk in the repository stops Create, and the previous
	// bundle stays.
	prev, _ := os.ReadFile(out)
	var victim string
	for p := range f.indexChunks(t, 2) {
		victim = p
		break
	}
	fp := filepath.Join(f.repo, filepath.FromSlash(victim))
	b, _ := os.ReadFile(fp)
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(fp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Create(ctx, CreateOptions{Repo: f.repo, Channel: "stable", Out: out})
	if !errors.Is(err, manifest.ErrChunkCorrupt) || !strings.Contains(err.Error(), victim) {
		t.Fatalf("create from a repository with a corrupt chunk: %v", err)
	}
	if now, _ := os.ReadFile(out); !bytes.Equal(now, prev) {
		t.Fatal("failed create replaced the previous bundle")
	}
}

// edit reads a bundle's entries, applies fn, and writes them back as a
// new bundle with bundle.json's counts fixed up.
func edit(t *testing.T, path string, fn func(es []tarEntry) []tarEntry) string {
	t.Helper()
	es := fn(readEntries(t, path))
	sortEntries(es)
	return rewrite(t, es, true)
}

func firstWith(es []tarEntry, prefix string) int {
	for i, e := range es {
		if strings.HasPrefix(e.name, prefix) {
			return i
		}
	}
	return -1
}

func TestVerifyRejects(t *testing.T) {
	f := newFixture(t, true)
	full, _ := f.create(t, 0)
	fromOne, _ := f.create(t, 1)
	oldTimestamp, err := os.ReadFile(filepath.Join(f.afterV1, "metadata", "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	oldSnapshot, err := os.ReadFile(filepath.Join(f.afterV1, "metadata", "1.snapshot.json"))
	if err != nil {
		t.Fatal(err)
	}
	var chunkPath string // first chunk entry of the full bundle
	var v1Only string    // a chunk object release 1 has and release 2 does not
	v2 := f.indexChunks(t, 2)
	for p := range f.indexChunks(t, 1) {
		if !v2[p] {
			v1Only = p
			break
		}
	}
	v1OnlyObj, err := os.ReadFile(filepath.Join(f.repo, filepath.FromSlash(v1Only)))
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		bundle string
		fn     func(es []tarEntry) []tarEntry
		opts   func(*VerifyOptions)
		is     error
		names  string // the message must name this
	}{
		{name: "corrupt chunk", bundle: full, fn: func(es []tarEntry) []tarEntry {
			i := firstWith(es, "chunks/")
			chunkPath = es[i].name
			es[i].data = bytes.Clone(es[i].data)
			es[i].data[len(es[i].data)-3] ^= 1
			return es
		}, is: manifest.ErrChunkCorrupt, names: "chunks/"},
		{name: "chunk removed", bundle: full, fn: func(es []tarEntry) []tarEntry {
			i := firstWith(es, "chunks/")
			return append(es[:i], es[i+1:]...)
		}, is: ErrMissing, names: "chunks/"},
		{name: "chunk of the from release added", bundle: fromOne, fn: func(es []tarEntry) []tarEntry {
			return append(es, tarEntry{v1Only, v1OnlyObj})
		}, is: ErrExtra, names: v1Only},
		{name: "old targets added", bundle: full, fn: func(es []tarEntry) []tarEntry {
			b, _ := os.ReadFile(filepath.Join(f.repo, "metadata", "1.targets.json"))
			return append(es, tarEntry{"metadata/1.targets.json", b})
		}, is: ErrExtra, names: "metadata/1.targets.json"},
		{name: "timestamp replaced by an older signed one", bundle: full, fn: func(es []tarEntry) []tarEntry {
			es[firstWith(es, "metadata/timestamp.json")].data = oldTimestamp
			return es
		}, is: fetch.ErrNotFound, names: "metadata/1.snapshot.json"},
		{name: "snapshot replaced by an older signed one", bundle: full, fn: func(es []tarEntry) []tarEntry {
			es[firstWith(es, "metadata/2.snapshot.json")].data = oldSnapshot
			return es
		}, is: manifest.ErrMixAndMatch, names: "metadata/2.snapshot.json"},
		{name: "index removed", bundle: full, fn: func(es []tarEntry) []tarEntry {
			i := firstWith(es, "index/")
			return append(es[:i], es[i+1:]...)
		}, is: fetch.ErrNotFound, names: "index/"},
		{name: "from index removed", bundle: fromOne, fn: func(es []tarEntry) []tarEntry {
			for i, e := range es {
				if e.name == "index/"+f.published[1].Artifacts[1].Index { // release 1's rootfs
					return append(es[:i], es[i+1:]...)
				}
			}
			t.Fatal("no index of release 1")
			return nil
		}, is: ErrMissing, names: "index/" + f.published[1].Artifacts[1].Index},
		{name: "bundle.json names another version", bundle: full, fn: func(es []tarEntry) []tarEntry {
			es[0].data = bytes.Replace(es[0].data, []byte(`"version":2`), []byte(`"version":3`), 1)
			return es
		}, is: ErrMalformed, names: "release stable/3"},
		{name: "log tile corrupted", bundle: full, fn: func(es []tarEntry) []tarEntry {
			i := firstWith(es, "log/tile/8/0/")
			es[i].data = bytes.Clone(es[i].data)
			es[i].data[0] ^= 1
			return es
		}, is: tlog.ErrCorrupt},
		{name: "log lookup removed", bundle: full, fn: func(es []tarEntry) []tarEntry {
			i := firstWith(es, "log/lookup/")
			return append(es[:i], es[i+1:]...)
		}, is: tlog.ErrNotFound, names: "lookup"},
		{name: "log entry bundle removed", bundle: full, fn: func(es []tarEntry) []tarEntry {
			i := firstWith(es, "log/tile/8/data/")
			return append(es[:i], es[i+1:]...)
		}, is: ErrMissing, names: "log/tile/8/data/000.p/2"},
		{name: "log checked against another key", bundle: full, opts: func(o *VerifyOptions) {
			_, vkey, _ := tlog.GenerateKey("other.test/log")
			o.LogKeys = []string{vkey}
		}, is: tlog.ErrBadCheckpoint, names: "log/checkpoint"},
		{name: "log removed but required", bundle: full, fn: func(es []tarEntry) []tarEntry {
			var out []tarEntry
			for _, e := range es {
				if !strings.HasPrefix(e.name, "log/") {
					out = append(out, e)
				}
			}
			return out
		}, opts: func(o *VerifyOptions) { o.RequireLog = true }, is: ErrMissing, names: "log/checkpoint"},
		{name: "device on another channel", bundle: full, opts: func(o *VerifyOptions) { o.Device.Channel = "beta" }, is: manifest.ErrWrongChannel},
		{name: "metadata expired", bundle: full, opts: func(o *VerifyOptions) {
			o.Now = func() time.Time { return t0.Add(800 * time.Hour) }
		}, is: manifest.ErrExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.bundle
			if tc.fn != nil {
				p = edit(t, tc.bundle, tc.fn)
			}
			o := f.verifyOptions()
			if tc.opts != nil {
				tc.opts(&o)
			}
			_, err := Verify(context.Background(), p, o)
			if !errors.Is(err, tc.is) {
				t.Fatalf("got %v, want %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.names) {
				t.Fatalf("error %q does not name %q", err, tc.names)
			}
			if tc.name == "corrupt chunk" && !strings.Contains(err.Error(), chunkPath) {
				t.Fatalf("error %q does not name the corrupt entry %s", err, chunkPath)
			}
		})
	}
}

// chunksOf is every chunk of images, by ID: what a device holding them
// has locally.
func chunksOf(t *testing.T, images map[string][]byte) map[string][]byte {
	t.Helper()
	local := map[string][]byte{}
	var mu sync.Mutex
	for _, img := range images {
		if _, err := chunker.Split(context.Background(), bytes.NewReader(img), chunker.Options{
			Params: testParams, Hash: chunker.SHA256,
			Work: func(ch chunker.Chunk, data []byte) error { // runs on several goroutines
				mu.Lock()
				defer mu.Unlock()
				local[chunker.SHA256.ID(ch.Digest).String()] = bytes.Clone(data)
				return nil
			},
		}); err != nil {
			t.Fatal(err)
		}
	}
	return local
}
