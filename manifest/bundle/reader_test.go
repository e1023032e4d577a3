package bundle

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/manifest/tlog"
)

// tiny is a hand-made bundle: bundle.json, one chunk and one metadata
// file. It is not a release anyone signed; the reader does not care.
type tiny struct {
	info    Info
	chunkID cid.Cid
	chunk   []byte // the chunk object
}

func newTiny() tiny {
	data := []byte("a chunk of some release")
	id := chunker.SHA256.ID(chunker.SHA256.Sum(data))
	return tiny{
		info: Info{Format: FormatVersion, Channel: "stable", Version: 1, TargetsVersion: 1,
			Artifacts: []ArtifactRef{{Name: "rootfs", Index: id.String()}},
			Counts:    Counts{Metadata: 1, Chunks: 1}},
		chunkID: id,
		chunk:   manifest.EncodeChunk(nil, data),
	}
}

func (b tiny) infoJSON() []byte {
	j, _ := json.Marshal(b.info)
	return j
}

func (b tiny) entries() []tarEntry {
	return []tarEntry{
		{InfoPath, b.infoJSON()},
		{manifest.ChunkPath(b.chunkID), b.chunk},
		{"metadata/timestamp.json", []byte(`{"signed":{}}`)},
	}
}

// rawEntry is a hand-written header plus data padded to a block.
func rawEntry(name string, data []byte, typ byte) []byte {
	out := rawHeader(name, int64(len(data)), typ)
	out = append(out, data...)
	if r := len(data) % blockSize; r != 0 {
		out = append(out, make([]byte, blockSize-r)...)
	}
	return out
}

func rawTar(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return append(out, make([]byte, 2*blockSize)...)
}

func open(b []byte) (*Reader, error) {
	return NewReader(bytes.NewReader(b), int64(len(b)), "test.tar")
}

func TestReaderServesEntries(t *testing.T) {
	tb := newTiny()
	p := rewrite(t, tb.entries(), false)
	r, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	if got := r.Info(); got.Channel != "stable" || got.Counts.Chunks != 1 {
		t.Fatalf("info %+v", got)
	}
	if ps := r.Paths(); len(ps) != 2 || ps[0] != manifest.ChunkPath(tb.chunkID) || ps[1] != "metadata/timestamp.json" {
		t.Fatalf("paths %v", ps)
	}
	b, err := r.Fetch(ctx, "metadata/timestamp.json", 100)
	if err != nil || string(b) != `{"signed":{}}` {
		t.Fatalf("fetch: %q %v", b, err)
	}
	if _, err := r.Fetch(ctx, "metadata/timestamp.json", 5); !errors.Is(err, fetch.ErrTooLarge) {
		t.Fatalf("fetch over the bound: %v", err)
	}
	if _, err := r.Fetch(ctx, "metadata/1.snapshot.json", 100); !errors.Is(err, fetch.ErrNotFound) {
		t.Fatalf("fetch of a missing entry: %v", err)
	}
	if _, err := r.Fetch(ctx, InfoPath, 1<<20); !errors.Is(err, fetch.ErrNotFound) {
		t.Fatalf("bundle.json is not a repository file: %v", err)
	}
	if _, err := fetch.Sub(r, tlog.RepoDir).Fetch(ctx, "checkpoint", 100); !errors.Is(err, fetch.ErrNotFound) {
		t.Fatalf("log fetch of a missing file: %v", err)
	}
	data, err := manifest.FetchChunk(ctx, r, tb.chunkID, 1024)
	if err != nil || string(data) != "a chunk of some release" {
		t.Fatalf("fetch chunk: %q %v", data, err)
	}
	n := 0
	if err := r.Chunks(ctx, func(id cid.Cid, obj []byte) error {
		n++
		if !id.Equals(tb.chunkID) || !bytes.Equal(obj, tb.chunk) {
			t.Errorf("chunk %s", id)
		}
		return nil
	}); err != nil || n != 1 {
		t.Fatalf("chunks: %d %v", n, err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := r.Fetch(canceled, "metadata/timestamp.json", 100); !errors.Is(err, context.Canceled) {
		t.Fatalf("fetch with a canceled context: %v", err)
	}
}

func TestOpenRejects(t *testing.T) {
	tb := newTiny()
	info := rawEntry(InfoPath, tb.infoJSON(), '0')
	chunk := rawEntry(manifest.ChunkPath(tb.chunkID), tb.chunk, '0')
	meta := rawEntry("metadata/timestamp.json", []byte("{}"), '0')
	valid := rawTar(info, chunk, meta)
	if _, err := open(valid); err != nil {
		t.Fatalf("the hand-made bundle is valid: %v", err)
	}
	withInfo := func(mod func(*Info)) []byte {
		in := tb.info
		mod(&in)
		j, _ := json.Marshal(in)
		return rawEntry(InfoPath, j, '0')
	}
	badSum := rawEntry("metadata/timestamp.json", []byte("{}"), '0')
	badSum[101]++ // the mode field: the checksum no longer adds up
	idx := manifest.IndexPath(tb.chunkID)
	for _, tc := range []struct {
		name string
		tar  []byte
		want string
	}{
		{"empty file", nil, "no end-of-archive marker"},
		{"only the end marker", rawTar(), "no bundle.json"},
		{"parent segment", rawTar(info, chunk, rawEntry("../../etc/passwd", []byte("x"), '0')), `"../../etc/passwd"`},
		{"dot-dot inside", rawTar(info, chunk, rawEntry("metadata/../../x.json", []byte("x"), '0')), `segment ".."`},
		{"absolute path", rawTar(info, chunk, rawEntry("/etc/passwd", []byte("x"), '0')), `"/etc/passwd"`},
		{"dot file", rawTar(info, chunk, rawEntry("log/.lock", nil, '0')), `segment ".lock"`},
		{"outside the layout", rawTar(info, chunk, rawEntry("releases/x", []byte("x"), '0')), "outside metadata/"},
		{"unknown metadata name", rawTar(info, chunk, rawEntry("metadata/evil.sh", []byte("x"), '0')), "not a metadata file name"},
		{"chunk in the wrong shard", rawTar(info, rawEntry("chunks/zz/"+tb.chunkID.String(), tb.chunk, '0'), meta), "chunk belongs at"},
		{"non-canonical ID", rawTar(info, rawEntry("index/"+strings.ToUpper(tb.chunkID.String()), []byte("x"), '0'), meta), "index/"},
		{"bad tile path", rawTar(info, chunk, rawEntry("log/tile/9/0/000", make([]byte, 32), '0')), "not a tile of height 8"},
		{"symlink", rawTar(info, chunk, rawEntry("metadata/timestamp.json", nil, '2')), `type '2'`},
		{"hard link", rawTar(info, chunk, rawEntry("metadata/timestamp.json", nil, '1')), `type '1'`},
		{"directory", rawTar(info, rawEntry("chunks/", nil, '5'), chunk), `type '5'`},
		{"pax header", rawTar(info, rawEntry("PaxHeaders/x", []byte("30 path=metadata/root.json\n"), 'x'), chunk), `type 'x'`},
		{"gnu long name", rawTar(info, rawEntry("././@LongLink", []byte("x"), 'L'), chunk), `type 'L'`},
		{"duplicate entry", rawTar(info, chunk, chunk, meta), "duplicate entry " + manifest.ChunkPath(tb.chunkID)},
		{"unsorted", rawTar(info, meta, chunk), "must be sorted"},
		{"bundle.json not first", rawTar(chunk, info, meta), "want bundle.json"},
		{"second bundle.json", rawTar(info, info, chunk, meta), "a second bundle.json"},
		{"oversized index", rawTar(info, rawHeader(idx, manifest.DefaultLimits.Index+1, '0')), "more than the 268435456 allowed"},
		{"oversized chunk", rawTar(info, rawHeader(manifest.ChunkPath(tb.chunkID), manifest.MaxObjectSize(chunker.MaxChunkCeil)+1, '0')), "allowed for it"},
		{"oversized bundle.json", rawTar(rawHeader(InfoPath, maxInfoSize+1, '0')), "allowed for it"},
		{"size past the end", append(append(bytes.Clone(info), chunk...), rawHeader("metadata/timestamp.json", 5000, '0')...), "truncated: entry metadata/timestamp.json needs 5000 bytes"},
		{"bad checksum", rawTar(info, chunk, badSum), "header checksum"},
		{"not ustar", rawTar(info, chunk, func() []byte {
			b := bytes.Clone(meta)
			copy(b[257:265], "ustar  \x00")
			setChecksum(b[:blockSize])
			return b
		}()), "not a POSIX ustar header"},
		{"binary size", rawTar(info, chunk, func() []byte { b := bytes.Clone(meta); b[124] = 0x80; setChecksum(b[:blockSize]); return b }()), "binary size"},
		{"counts disagree", rawTar(info, chunk), "counts"},
		{"unknown format", rawTar(withInfo(func(i *Info) { i.Format = 2 }), chunk, meta), "format 2"},
		{"unknown field", rawTar(rawEntry(InfoPath, append(tb.infoJSON()[:len(tb.infoJSON())-1], []byte(`,"x":1}`)...), '0'), chunk, meta), `unknown field "x"`},
		{"from not below version", rawTar(withInfo(func(i *Info) { i.From = 1 }), chunk, meta), "version 1 from 1"},
		{"data after the end", append(valid, 'x'), "after the end-of-archive marker"},
		{"too much padding", append(valid, make([]byte, 20000)...), "after the end-of-archive marker"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := open(tc.tar)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %v naming %q", err, ErrMalformed, tc.want)
			}
		})
	}
}

// Every strict prefix of a bundle is rejected, wherever the cut falls.
func TestOpenRejectsEveryTruncation(t *testing.T) {
	tb := newTiny()
	var buf bytes.Buffer
	tw := newTarWriter(&buf)
	for _, e := range tb.entries() {
		if err := tw.add(e.name, e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.close(); err != nil {
		t.Fatal(err)
	}
	full := buf.Bytes()
	if _, err := open(full); err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(full); n++ {
		if _, err := open(full[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("cut at %d of %d bytes: %v", n, len(full), err)
		}
	}
}

func TestOpenBoundsEntryCount(t *testing.T) {
	defer func(n int) { maxEntries = n }(maxEntries)
	maxEntries = 2
	tb := newTiny()
	info := rawEntry(InfoPath, tb.infoJSON(), '0')
	_, err := open(rawTar(info, rawEntry(manifest.ChunkPath(tb.chunkID), tb.chunk, '0'), rawEntry("metadata/timestamp.json", nil, '0'), rawEntry("metadata/x.root.json", nil, '0')))
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "more than 2 entries") {
		t.Fatalf("got %v", err)
	}
}

// The bundle of a real repository opens; fetch.Sub serves its log to
// manifest/tlog as the log directory.
func TestReaderLog(t *testing.T) {
	f := newFixture(t, true)
	path, _ := f.create(t, 0)
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	vs, err := tlog.NewVerifiers(f.logKey)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := tlog.NewReader(fetch.Sub(r, tlog.RepoDir), vs).Checkpoint(context.Background())
	if err != nil || cp.Tree.N != 2 {
		t.Fatalf("checkpoint through the bundle: %+v %v", cp.Tree, err)
	}
	n := 0
	err = r.Indexes(context.Background(), func(id cid.Cid, ix *chunker.Index) error {
		n++
		if !ix.CID().Equals(id) {
			t.Errorf("index %s decodes to %s", id, ix.CID())
		}
		return nil
	})
	if err != nil || n != 2 {
		t.Fatalf("indexes: %d %v", n, err)
	}
	// The bundle unpacks into a repository directory that serves the same
	// release: it is a slice of the repository.
	dir := t.TempDir()
	for _, p := range r.Paths() {
		b, err := r.Fetch(context.Background(), p, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		fp := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(fp), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(fp, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	again := filepath.Join(t.TempDir(), "again.tar")
	if _, err := Create(context.Background(), CreateOptions{Repo: dir, Channel: "stable", Out: again}); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(path)
	b, _ := os.ReadFile(again)
	if !bytes.Equal(a, b) {
		t.Fatal("a bundle of the unpacked bundle differs from the bundle")
	}
}
