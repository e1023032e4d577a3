package manifest

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/chunker/delta"
	"github.com/shoalnet/shoal/fetch"
)

// editImage writes a copy of the image at src with a few small regions
// rewritten, as a package upgrade changes a filesystem image.
func editImage(t testing.TB, src, dst string, salt byte) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range []int{len(b) / 5, len(b) / 2, 4 * len(b) / 5} {
		for i := range 300 {
			b[at+i] ^= salt + byte(i)
		}
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// publishPair publishes v1 from seed 1 and returns the fixture and the
// path of an edited v2 image (not yet published).
func publishPair(t *testing.T) (*fixture, string, string) {
	f := newFixture(t, nil)
	f.publish("stable", 1, 1, nil)
	v1 := filepath.Join(f.dir, "img-stable-1")
	return f, v1, editImage(t, v1, filepath.Join(f.dir, "v2.img"), 0x5a)
}

func publishImage(f *fixture, version uint64, img string, mod func(*PublishOptions)) (*PublishResult, error) {
	o := PublishOptions{Repo: f.repo, Keys: f.keys, Channel: "stable", Version: version,
		Artifacts: []ArtifactInput{{Name: "rootfs", Path: img}}, Params: testParams, Now: clock(0)}
	if mod != nil {
		mod(&o)
	}
	return Publish(context.Background(), o)
}

func TestPublishDeltas(t *testing.T) {
	f, v1, v2 := publishPair(t)
	res, err := publishImage(f, 2, v2, func(o *PublishOptions) { o.DeltaFrom = []DeltaBase{{Version: 1}} })
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Deltas) != 1 {
		t.Fatalf("deltas: %+v", res.Deltas)
	}
	pd := res.Deltas[0]
	if !pd.Rebuilt || pd.Target != DeltaTargetPath("stable", 2, "rootfs", 1) || pd.Stats.Deltas == 0 || pd.NewObjects != pd.Stats.Deltas {
		t.Fatalf("delta report %+v", pd)
	}
	// The point of it: far fewer bytes than the new chunks' objects.
	if pd.Stats.DeltaBytes*4 > pd.Stats.WholeBytes {
		t.Fatalf("delta bytes %d against whole objects %d", pd.Stats.DeltaBytes, pd.Stats.WholeBytes)
	}

	// A device verifies the release and finds the delta target; the
	// delta index it names is in the repository, signed, and fits the
	// pair of indexes.
	fe := fetch.Dir(f.repo)
	c := f.client(0, fe)
	v, err := c.Verify(context.Background(), Device{ID: "d", Channel: "stable", Installed: 1})
	if err != nil {
		t.Fatal(err)
	}
	dt, ok := v.Delta("rootfs", 1)
	if !ok || dt.DeltaIndex.String() != pd.DeltaIndex || dt.BaseVersion != 1 || !dt.Index.Equals(v.Release.Artifacts[0].Index) {
		t.Fatalf("delta target %+v, %v", dt, ok)
	}
	if _, ok := v.Delta("rootfs", 2); ok {
		t.Fatal("a delta from 2 to 2")
	}
	dix, err := FetchDeltaIndex(context.Background(), fe, dt, 0)
	if err != nil {
		t.Fatal(err)
	}
	base := splitFile(t, v1)
	if err := dix.Check(base, v.Indexes[0]); err != nil {
		t.Fatal(err)
	}
	// Every delta object is where the index says, and expands against v1.
	baseImg, err := os.Open(v1)
	if err != nil {
		t.Fatal(err)
	}
	defer baseImg.Close()
	for _, e := range dix.Entries {
		obj, err := fe.Fetch(context.Background(), DeltaPath(dix.ID(e)), int64(e.Size))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := delta.ExpandFrom(nil, nil, v.Indexes[0].ID(int(e.Pos)), obj, baseImg, dix.Limits()); err != nil {
			t.Fatal(err)
		}
	}
	// The stock TUF client's file of the delta target is the delta index.
	_, _, tg := current(t, f.repo)
	tf := tg.Signed.Targets[dt.Path]
	if !sameFile(t, filepath.Join(f.repo, filepath.FromSlash(TargetFilePath(dt.Path, tf.Hashes["sha256"]))), filepath.Join(f.repo, filepath.FromSlash(DeltaIndexPath(dt.DeltaIndex)))) {
		t.Fatal("the delta target's file is not the delta index")
	}

	// v3 against both, v2's image given: v2's delta target stays listed.
	v3 := editImage(t, v2, filepath.Join(f.dir, "v3.img"), 0x33)
	res, err = publishImage(f, 3, v3, func(o *PublishOptions) {
		o.DeltaFrom = []DeltaBase{{Version: 1}, {Version: 2, Images: map[string]string{"rootfs": v2}}}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Deltas) != 2 || !res.Deltas[0].Rebuilt || res.Deltas[1].Rebuilt {
		t.Fatalf("v3 deltas %+v", res.Deltas)
	}
	_, _, tg = current(t, f.repo)
	for _, p := range []string{DeltaTargetPath("stable", 2, "rootfs", 1), DeltaTargetPath("stable", 3, "rootfs", 1), DeltaTargetPath("stable", 3, "rootfs", 2)} {
		if tg.Signed.Targets[p] == nil {
			t.Errorf("targets lack %s", p)
		}
	}
	// A publish without deltas keeps the earlier ones too.
	f.publish("stable", 4, 4, nil)
	_, _, tg = current(t, f.repo)
	if tg.Signed.Targets[DeltaTargetPath("stable", 3, "rootfs", 2)] == nil {
		t.Error("a plain publish dropped v3's delta target")
	}
}

func splitFile(t *testing.T, p string) *chunker.Index {
	t.Helper()
	fh, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	ix, err := chunker.Split(context.Background(), fh, chunker.Options{Params: testParams})
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func TestPublishDeltasRefused(t *testing.T) {
	f, v1, v2 := publishPair(t)
	other := writeImage(t, f.dir, "other.img", 600<<10, 99)
	short := filepath.Join(f.dir, "short.img")
	b, _ := os.ReadFile(v1)
	os.WriteFile(short, b[:len(b)-1], 0o644)
	cases := []struct {
		name string
		from []DeltaBase
		want error
		msg  string
	}{
		{"base above the release", []DeltaBase{{Version: 7}}, nil, "base version 7"},
		{"base twice", []DeltaBase{{Version: 1}, {Version: 1}}, nil, "given twice"},
		{"base not in the repository", nil, ErrNoBase, "beta/1"},
		{"base image of another size", []DeltaBase{{Version: 1, Images: map[string]string{"rootfs": short}}}, delta.ErrImageMismatch, "short.img"},
		{"base image of other bytes", []DeltaBase{{Version: 1, Images: map[string]string{"rootfs": other}}}, chunker.ErrMismatch, "base image"},
		{"base image for an unknown artifact", []DeltaBase{{Version: 1, Images: map[string]string{"boot": v1}}}, nil, "no such artifact"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			from := c.from
			version := uint64(2)
			if from == nil {
				// Version 1 exists; ask for 1 on a channel that lacks it.
				from = []DeltaBase{{Version: 1}}
				_, err := Publish(context.Background(), PublishOptions{Repo: f.repo, Keys: f.keys, Channel: "beta", Version: 2,
					Artifacts: []ArtifactInput{{Name: "rootfs", Path: v2}}, Params: testParams, Now: clock(0), DeltaFrom: from})
				if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
					t.Fatalf("got %v, want %v mentioning %q", err, c.want, c.msg)
				}
				return
			}
			_, err := publishImage(f, version, v2, func(o *PublishOptions) { o.DeltaFrom = from })
			if err == nil || (c.want != nil && !errors.Is(err, c.want)) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("got %v, want %v mentioning %q", err, c.want, c.msg)
			}
		})
	}
	// Nothing of the refused publishes is listed: v2 publishes afterwards.
	if _, err := publishImage(f, 2, v2, nil); err != nil {
		t.Fatal(err)
	}
}

// A base rebuilt from a repository whose chunk object was damaged stops
// the publish, naming the chunk.
func TestPublishDeltasCorruptBaseChunk(t *testing.T) {
	f, _, v2 := publishPair(t)
	var victim string
	filepath.WalkDir(filepath.Join(f.repo, "chunks"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && victim == "" {
			victim = p
		}
		return nil
	})
	b, _ := os.ReadFile(victim)
	b[len(b)/2] ^= 1
	os.WriteFile(victim, b, 0o644)
	_, err := publishImage(f, 2, v2, func(o *PublishOptions) { o.DeltaFrom = []DeltaBase{{Version: 1}} })
	if !errors.Is(err, ErrChunkCorrupt) || !strings.Contains(err.Error(), filepath.Base(victim)) {
		t.Fatalf("got %v", err)
	}
}

// Two publishes with deltas into one repository at once: the lock lets
// one through, the other fails cleanly, and what is published verifies.
func TestPublishDeltasConcurrent(t *testing.T) {
	f, _, v2 := publishPair(t)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = publishImage(f, uint64(2+i), v2, func(o *PublishOptions) { o.DeltaFrom = []DeltaBase{{Version: 1}} })
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else if !strings.Contains(err.Error(), "locked") && !errors.Is(err, ErrStaleVersion) {
			t.Fatalf("unexpected error %v", err)
		}
	}
	if ok == 0 {
		t.Fatal("neither publish went through")
	}
	v, err := f.client(0, fetch.Dir(f.repo)).Verify(context.Background(), Device{ID: "d", Channel: "stable", Installed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := v.Delta("rootfs", 1); !ok {
		t.Fatal("no delta target after the concurrent publishes")
	}
}

// A delta index file that is not the signed one is refused.
func TestFetchDeltaIndexTampered(t *testing.T) {
	f, _, v2 := publishPair(t)
	if _, err := publishImage(f, 2, v2, func(o *PublishOptions) { o.DeltaFrom = []DeltaBase{{Version: 1}} }); err != nil {
		t.Fatal(err)
	}
	fe := fetch.Dir(f.repo)
	v, err := f.client(0, fe).Verify(context.Background(), Device{ID: "d", Channel: "stable", Installed: 1})
	if err != nil {
		t.Fatal(err)
	}
	dt, _ := v.Delta("rootfs", 1)
	p := filepath.Join(f.repo, filepath.FromSlash(DeltaIndexPath(dt.DeltaIndex)))
	b, _ := os.ReadFile(p)
	os.Remove(p) // a fresh inode: the stock client's hard link keeps the original
	b[len(b)-1] ^= 1
	os.WriteFile(p, b, 0o644)
	if _, err := FetchDeltaIndex(context.Background(), fe, dt, 0); !errors.Is(err, ErrIndexHash) {
		t.Fatalf("tampered delta index: %v", err)
	}
	if _, err := FetchDeltaIndex(context.Background(), fe, dt, 10); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("delta index above the limit: %v", err)
	}
}

// FuzzDeltaTarget parses arbitrary delta targets: no panic, every error
// wraps ErrBadMetadata, and what parses signs back to a target that
// parses to the same.
func FuzzDeltaTarget(f *testing.F) {
	dt := DeltaTarget{Path: DeltaTargetPath("stable", 2, "rootfs", 1), Channel: "stable", Version: 2, Artifact: "rootfs",
		Index: chunker.SHA256.ID(chunker.SHA256.Sum([]byte("v2"))), BaseVersion: 1,
		BaseIndex: chunker.SHA256.ID(chunker.SHA256.Sum([]byte("v1"))), DeltaIndex: chunker.SHA256.ID(chunker.SHA256.Sum([]byte("d"))),
		Deltas: 3, DeltaBytes: 999, Length: 200, sha256: make([]byte, 32)}
	tf, err := dt.targetFile()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(dt.Path, []byte(*tf.Custom), int64(200))
	f.Add("releases/stable/2/rootfs.delta/2", []byte(*tf.Custom), int64(1))
	f.Add(dt.Path, []byte(`{"delta":{"channel":"stable","version":2,"extra":1}}`), int64(5))
	f.Fuzz(func(t *testing.T, path string, custom []byte, length int64) {
		raw := json.RawMessage(custom)
		in := &metadata.TargetFiles{Length: length, Hashes: metadata.Hashes{"sha256": make([]byte, 32)}, Path: path, Custom: &raw}
		got, err := parseDeltaTarget(path, in)
		if err != nil {
			if !errors.Is(err, ErrBadMetadata) {
				t.Fatalf("error without ErrBadMetadata: %v", err)
			}
			return
		}
		if !isDeltaTargetPath(path) {
			t.Fatalf("%q parsed as a delta target", path)
		}
		out, err := got.targetFile()
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseDeltaTarget(path, out)
		if err != nil || again.Path != got.Path || !again.DeltaIndex.Equals(got.DeltaIndex) || again.BaseVersion != got.BaseVersion {
			t.Fatalf("round trip: %+v, %v", again, err)
		}
	})
}
