package manifest

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/fetch"
)

func TestPublishVerifyDir(t *testing.T) {
	f := newFixture(t, nil)
	res := f.publish("stable", 1, 1, func(o *PublishOptions) {
		o.Hardware = []string{"rpi4"}
		o.Arch = []string{"arm64"}
	})
	if res.NewChunks == 0 || res.NewChunks != res.Chunks || res.NewBytes <= 0 || res.NewBytes >= res.Bytes {
		t.Fatalf("first publish: %+v (want every chunk new, compressed below image size)", res)
	}
	if res.TargetsVersion != 1 || res.SnapshotVersion != 1 || res.TimestampVersion != 1 {
		t.Fatalf("versions %+v", res)
	}
	dev := Device{ID: "a", Channel: "stable", Hardware: "rpi4", Arch: "arm64"}
	v, err := f.client(0).Verify(context.Background(), dev)
	if err != nil {
		t.Fatal(err)
	}
	if v.Release.Version != 1 || len(v.Indexes) != 1 || v.UpToDate {
		t.Fatalf("verified %+v", v)
	}
	a := v.Release.Artifacts[0]
	if a.Name != "rootfs" || a.Slot != "rootfs" || a.Root.String() != res.Artifacts[0].Root || a.Size != res.Bytes {
		t.Fatalf("artifact %+v, published %+v", a, res.Artifacts[0])
	}
	// The image's bytes match the verified index, and every chunk object
	// in the repository decodes to its chunk.
	img, err := os.ReadFile(filepath.Join(f.dir, "img-stable-1"))
	if err != nil {
		t.Fatal(err)
	}
	ix := v.Indexes[0]
	if err := chunker.Verify(context.Background(), strings.NewReader(string(img)), ix); err != nil {
		t.Fatal(err)
	}
	off := ix.Offsets()
	fe := fetch.Dir(f.repo)
	for i := range ix.Chunks {
		data, err := FetchChunk(context.Background(), fe, ix.ID(i), ix.Params.Max)
		if err != nil {
			t.Fatal(err)
		}
		if string(data) != string(img[off[i]:off[i+1]]) {
			t.Fatalf("chunk %d differs", i)
		}
	}
	// The state directory remembers the chain.
	for _, name := range []string{"root.json", "timestamp.json", "snapshot.json", "targets.json"} {
		if _, err := os.Stat(filepath.Join(f.state, name)); err != nil {
			t.Fatal(err)
		}
	}
	// Installed already: up to date, no error.
	dev.Installed = 1
	v, err = f.client(0).Verify(context.Background(), dev)
	if err != nil || !v.UpToDate {
		t.Fatalf("installed=1: %+v, %v", v, err)
	}
}

func TestPublishVerifyHTTP(t *testing.T) {
	f := newFixture(t, nil)
	f.publish("stable", 1, 1, nil)
	f.publish("stable", 2, 2, nil)
	srv := httptest.NewServer(Handler(f.repo))
	defer srv.Close()
	h, err := fetch.NewHTTP(srv.URL, fetch.WithClient(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	v, err := f.client(0, h).Verify(context.Background(), stableDevice)
	if err != nil {
		t.Fatal(err)
	}
	if v.Release.Version != 2 || v.TargetsVersion != 2 {
		t.Fatalf("got release %d targets %d", v.Release.Version, v.TargetsVersion)
	}
	ix := v.Indexes[0]
	if _, err := FetchChunk(context.Background(), h, ix.ID(len(ix.Chunks)-1), ix.Params.Max); err != nil {
		t.Fatal(err)
	}
}

func TestRepublishUnchangedWritesNoChunks(t *testing.T) {
	f := newFixture(t, nil)
	img := writeImage(t, f.dir, "same.img", 700<<10, 5)
	use := func(o *PublishOptions) { o.Artifacts[0].Path = img }
	first := f.publish("stable", 1, 0, use)
	again := f.publish("stable", 2, 0, use)
	if again.NewChunks != 0 || again.NewBytes != 0 {
		t.Fatalf("republish wrote %d chunks, %d bytes", again.NewChunks, again.NewBytes)
	}
	if again.Artifacts[0].Index != first.Artifacts[0].Index || again.Chunks != first.Chunks {
		t.Fatalf("index changed: %+v vs %+v", again.Artifacts[0], first.Artifacts[0])
	}
	// A changed image writes only its new chunks.
	changed := f.publish("stable", 3, 0, func(o *PublishOptions) {
		b, _ := os.ReadFile(img)
		copy(b[300<<10:], "a small change in the middle of the image")
		p := filepath.Join(f.dir, "changed.img")
		os.WriteFile(p, b, 0o644)
		o.Artifacts[0].Path = p
	})
	if changed.NewChunks == 0 || changed.NewChunks > 3 {
		t.Fatalf("one edit wrote %d new chunks", changed.NewChunks)
	}
	v, err := f.client(0).Verify(context.Background(), stableDevice)
	if err != nil || v.Release.Version != 3 {
		t.Fatalf("%+v %v", v, err)
	}
}

func TestPublishRefusesStaleVersion(t *testing.T) {
	f := newFixture(t, nil)
	f.publish("stable", 5, 1, nil)
	for _, v := range []uint64{5, 4} {
		_, err := Publish(context.Background(), PublishOptions{Repo: f.repo, Keys: f.keys, Channel: "stable", Version: v,
			Artifacts: []ArtifactInput{{Name: "rootfs", Path: filepath.Join(f.dir, "img-stable-5")}}, Params: testParams, Now: clock(0)})
		if !errors.Is(err, ErrStaleVersion) {
			t.Fatalf("version %d after 5: %v", v, err)
		}
	}
	// Another channel has its own sequence.
	f.publish("beta", 1, 1, nil)
}

func TestChannelsKeptAcrossPublishes(t *testing.T) {
	f := newFixture(t, nil)
	f.publish("stable", 1, 1, nil)
	f.publish("beta", 7, 2, nil)
	f.publish("beta", 8, 3, nil)
	v, err := f.client(0).Verify(context.Background(), stableDevice)
	if err != nil || v.Release.Version != 1 {
		t.Fatalf("stable: %+v %v", v, err)
	}
	f.state = filepath.Join(f.dir, "state-beta")
	v, err = f.client(0).Verify(context.Background(), Device{Channel: "beta"})
	if err != nil || v.Release.Version != 8 {
		t.Fatalf("beta: %+v %v", v, err)
	}
}

func TestPublishValidatesFields(t *testing.T) {
	f := newFixture(t, nil)
	img := writeImage(t, f.dir, "x.img", 10<<10, 1)
	base := PublishOptions{Repo: f.repo, Keys: f.keys, Channel: "stable", Version: 1,
		Artifacts: []ArtifactInput{{Name: "rootfs", Path: img}}, Params: testParams}
	for name, mod := range map[string]func(*PublishOptions){
		"bad channel":   func(o *PublishOptions) { o.Channel = "Stable!" },
		"zero version":  func(o *PublishOptions) { o.Version = 0 },
		"huge version":  func(o *PublishOptions) { o.Version = 1 << 63 },
		"bad hardware":  func(o *PublishOptions) { o.Hardware = []string{"a b"} },
		"float rollout": func(o *PublishOptions) { o.Rollout = []byte(`{"percent":12.5}`) },
		"rollout array": func(o *PublishOptions) { o.Rollout = []byte(`[1]`) },
		"bad sbom":      func(o *PublishOptions) { o.SBOM = "md5:abc" },
		"dup artifact": func(o *PublishOptions) {
			o.Artifacts = append(o.Artifacts, o.Artifacts[0])
		},
	} {
		o := base
		o.Artifacts = append([]ArtifactInput(nil), base.Artifacts...)
		mod(&o)
		if _, err := Publish(context.Background(), o); err == nil {
			t.Errorf("%s: publish accepted it", name)
		}
	}
	if _, err := os.Stat(filepath.Join(f.repo, "metadata", "timestamp.json")); err == nil {
		t.Fatal("a rejected publish wrote metadata")
	}
}

func TestMultipleArtifactsAndFields(t *testing.T) {
	f := newFixture(t, nil)
	boot := writeImage(t, f.dir, "boot.img", 100<<10, 9)
	res := f.publish("stable", 3, 1, func(o *PublishOptions) {
		o.Artifacts = append(o.Artifacts, ArtifactInput{Name: "boot", Slot: "bootfs", Path: boot})
		o.MinInstalled = 2
		o.Rollout = []byte(`{"percent":10}`)
		o.SBOM = "sha256:" + strings.Repeat("ab", 32)
	})
	if len(res.Artifacts) != 2 || res.Artifacts[0].Name != "boot" {
		t.Fatalf("%+v", res.Artifacts)
	}
	var seen *Release
	c := f.client(0)
	c.cfg.Rollout = func(r *Release, d Device) error { seen = r; return nil }
	v, err := c.Verify(context.Background(), Device{Channel: "stable", Installed: 2})
	if err != nil {
		t.Fatal(err)
	}
	r := v.Release
	if len(r.Artifacts) != 2 || r.Artifacts[0].Slot != "bootfs" || r.MinInstalled != 2 || string(r.Rollout) != `{"percent":10}` || seen != r || !strings.HasPrefix(r.SBOM, "sha256:abab") {
		t.Fatalf("release %+v", r)
	}
	if v.Indexes[0].Size != 100<<10 {
		t.Fatalf("indexes not in artifact order")
	}
	// Below the minimum installed version: refuse.
	if _, err := f.client(0).Verify(context.Background(), Device{Channel: "stable", Installed: 1}); !errors.Is(err, ErrMinInstalled) {
		t.Fatalf("installed 1, min 2: %v", err)
	}
	// The rollout hook can hold a device back.
	c = f.client(0)
	hold := errors.New("not in this wave")
	c.cfg.Rollout = func(*Release, Device) error { return hold }
	if _, err := c.Verify(context.Background(), Device{Channel: "stable", Installed: 2}); !errors.Is(err, hold) {
		t.Fatalf("rollout hook: %v", err)
	}
}
