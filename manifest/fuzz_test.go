package manifest

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/shoalnet/shoal/chunker"
)

// overlayFetcher serves a repository directory but replaces one file.
type overlayFetcher struct {
	DirFetcher
	path string
	data []byte
}

func (o overlayFetcher) Fetch(ctx context.Context, p string, max int64) ([]byte, error) {
	if p == o.path {
		if int64(len(o.data)) > max {
			return nil, ErrTooLarge
		}
		return bytes.Clone(o.data), nil
	}
	return o.DirFetcher.Fetch(ctx, p, max)
}

// FuzzVerifyMetadata feeds arbitrary bytes to the client in place of one
// of the files it reads from outside: timestamp, snapshot, targets, the
// next root, or the index. Nothing may panic, and whatever passes must be
// the release that was really published.
func FuzzVerifyMetadata(f *testing.F) {
	fx := newFixture(f, nil)
	res := fx.publish("stable", 1, 1, nil)
	files := []string{
		"metadata/timestamp.json", "metadata/1.snapshot.json", "metadata/1.targets.json",
		"metadata/2.root.json", "index/" + res.Artifacts[0].Index,
	}
	for i, p := range files {
		b, err := os.ReadFile(filepath.Join(fx.repo, p))
		if err != nil {
			b = []byte(`{"signed":{"_type":"root","version":2},"signatures":[]}`)
		}
		f.Add(uint8(i), b)
		f.Add(uint8(i), b[:len(b)/2])
	}
	root, err := os.ReadFile(filepath.Join(fx.repo, "metadata", "1.root.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		p := files[int(which)%len(files)]
		c, err := NewClient(ClientConfig{
			TrustedRoot: root,
			Mirrors:     []Fetcher{overlayFetcher{DirFetcher{fx.repo}, p, data}},
			Now:         clock(0),
		})
		if err != nil {
			t.Fatal(err)
		}
		v, err := c.Verify(context.Background(), stableDevice)
		if err != nil {
			return
		}
		if v.Release.Version != 1 || v.Release.Artifacts[0].Root.String() != res.Artifacts[0].Root {
			t.Fatalf("forged %s accepted: %+v", p, v.Release)
		}
	})
}

// FuzzReleasesIn parses arbitrary targets metadata into releases, as the
// client does after the signature check.
func FuzzReleasesIn(f *testing.F) {
	fx := newFixture(f, nil)
	fx.publish("stable", 1, 1, func(o *PublishOptions) {
		o.Hardware, o.Rollout = []string{"rpi4"}, []byte(`{"percent":5}`)
	})
	b, err := os.ReadFile(filepath.Join(fx.repo, "metadata", "1.targets.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		md, err := metadata.Targets().FromBytes(data)
		if err != nil {
			return
		}
		rs, err := releasesIn(&md.Signed)
		if err != nil {
			if !errors.Is(err, ErrBadMetadata) {
				t.Fatalf("error without ErrBadMetadata: %v", err)
			}
			return
		}
		for _, list := range rs {
			for _, r := range list {
				if err := r.validate(); err != nil {
					t.Fatalf("returned an invalid release: %v", err)
				}
			}
		}
	})
}

// FuzzDecodeChunk decodes arbitrary stored objects.
func FuzzDecodeChunk(f *testing.F) {
	data := bytes.Repeat([]byte("chunk "), 2000)
	id := chunker.SHA256.ID(chunker.SHA256.Sum(data))
	f.Add(EncodeChunk(nil, data))
	f.Add(append([]byte{KindRaw}, data...))
	f.Add([]byte{KindZstd, 0x28, 0xb5, 0x2f, 0xfd})
	f.Fuzz(func(t *testing.T, obj []byte) {
		out, err := DecodeChunk(id, obj, 64<<10)
		if err != nil {
			return
		}
		if !bytes.Equal(out, data) {
			t.Fatal("accepted bytes that are not the chunk")
		}
	})
}

// FuzzHTTPFetch serves arbitrary bodies with arbitrary declared lengths:
// the fetcher never returns more than its bound, and whatever it returns
// is the body.
func FuzzHTTPFetch(f *testing.F) {
	var (
		mu       sync.Mutex
		body     []byte
		declared string
		status   int
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		b, d, s := body, declared, status
		mu.Unlock()
		if d != "" {
			w.Header().Set("Content-Length", d)
		}
		w.WriteHeader(s)
		w.Write(b)
	}))
	f.Cleanup(srv.Close)
	h, err := NewHTTPFetcher(srv.URL, srv.Client())
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("hello"), int64(5), int64(10), uint16(200))
	f.Add([]byte("hello world"), int64(-1), int64(4), uint16(200))
	f.Add([]byte("x"), int64(1<<40), int64(4), uint16(200))
	f.Add([]byte("gone"), int64(4), int64(10), uint16(404))
	f.Fuzz(func(t *testing.T, b []byte, decl, max int64, st uint16) {
		if max < 0 || max > 1<<20 {
			return
		}
		mu.Lock()
		body, declared, status = b, "", 200+int(st%300)
		if decl >= 0 {
			declared = strconv.FormatInt(decl, 10)
		}
		mu.Unlock()
		got, err := h.Fetch(context.Background(), "metadata/timestamp.json", max)
		if err != nil {
			return
		}
		if int64(len(got)) > max {
			t.Fatalf("returned %d bytes, bound %d", len(got), max)
		}
		want := b
		if decl >= 0 && decl < int64(len(b)) {
			want = b[:decl] // the server cuts the body at what it declared
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("returned bytes that differ from the body")
		}
	})
}
