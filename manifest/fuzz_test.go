package manifest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/fetch"
)

// overlayFetcher serves a repository directory but replaces one file.
type overlayFetcher struct {
	fetch.Dir
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
	return o.Dir.Fetch(ctx, p, max)
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
			Mirrors:     []fetch.Fetcher{overlayFetcher{fetch.Dir(fx.repo), p, data}},
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
	// A targets metadata with a delta target (publish --delta-from).
	editImage(f, filepath.Join(fx.dir, "img-stable-1"), filepath.Join(fx.dir, "v2.img"), 7)
	if _, err := publishImage(fx, 2, filepath.Join(fx.dir, "v2.img"), func(o *PublishOptions) { o.DeltaFrom = []DeltaBase{{Version: 1}} }); err != nil {
		f.Fatal(err)
	}
	if b, err = os.ReadFile(filepath.Join(fx.repo, "metadata", "2.targets.json")); err != nil {
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
