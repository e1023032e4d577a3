package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/swarm"
	"github.com/shoalnet/shoal/swarm/announce"
)

type pubRepo struct {
	t    *testing.T
	dir  string
	keys *manifest.Keyring
	repo string
}

func newPubRepo(t *testing.T) *pubRepo {
	dir := t.TempDir()
	keys, err := manifest.InitKeys(filepath.Join(dir, "keys"), manifest.KeysOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &pubRepo{t: t, dir: dir, keys: keys, repo: filepath.Join(dir, "repo")}
}

func (p *pubRepo) publish(version uint64, hardware ...string) []byte {
	img := filepath.Join(p.dir, "img")
	b := make([]byte, 100<<10)
	rand.Read(b)
	os.WriteFile(img, b, 0o644)
	if _, err := manifest.Publish(context.Background(), manifest.PublishOptions{Repo: p.repo, Keys: p.keys, Channel: "stable",
		Version: version, Hardware: hardware, Artifacts: []manifest.ArtifactInput{{Name: "rootfs", Path: img}},
		Params: chunker.Params{Min: 1024, Avg: 4096, Max: 16384}}); err != nil {
		p.t.Fatal(err)
	}
	a, err := announce.Collect(context.Background(), fetch.Dir(p.repo), "fleet-1", "stable")
	if err != nil {
		p.t.Fatal(err)
	}
	enc, err := a.Encode()
	if err != nil {
		p.t.Fatal(err)
	}
	return enc
}

func (p *pubRepo) validator(now func() time.Time, hw string) (*validator, *[]Verdict) {
	root, err := os.ReadFile(filepath.Join(p.dir, "keys", "root.json"))
	if err != nil {
		p.t.Fatal(err)
	}
	var got []Verdict
	v, err := newValidator("fleet-1", "stable", &manifest.Trust{Root: root, State: &manifest.MemState{}}, now,
		func() manifest.Device { return manifest.Device{ID: "n1", Channel: "stable", Hardware: hw} }, nil,
		slog.New(slog.DiscardHandler), func(v Verdict) { got = append(got, v) })
	if err != nil {
		p.t.Fatal(err)
	}
	return v, &got
}

// TestValidator: forged, malformed and foreign announcements are rejected
// at the first hop; stale, replayed and not-for-us ones are ignored; only
// a verified current one is accepted and handed on.
func TestValidator(t *testing.T) {
	p := newPubRepo(t)
	ctx := context.Background()
	v1 := p.publish(1)
	v2 := p.publish(2)
	val, accepted := p.validator(time.Now, "")

	if r := val.Validate(ctx, "peer-a", v2); r != swarm.Accept {
		t.Fatalf("current announcement: %v", r)
	}
	if len(*accepted) != 1 || (*accepted)[0].Verified.Release.Version != 2 {
		t.Fatalf("accepted: %+v", *accepted)
	}
	// The same again (a re-announcement) is still the current release.
	if r := val.Validate(ctx, "peer-a", v2); r != swarm.Accept {
		t.Fatalf("re-announcement: %v", r)
	}
	// A replay of the older state is stale: ignored, not relayed.
	if r := val.Validate(ctx, "peer-b", v1); r != swarm.Ignore {
		t.Fatalf("replayed v1: %v", r)
	}
	// Forged: targets edited after signing.
	a, _ := announce.Decode(v2)
	for path, b := range a.Files {
		if strings.HasSuffix(path, ".targets.json") {
			a.Files[path] = bytes.Replace(b, []byte(`"rootfs"`), []byte(`"rootfz"`), 1)
		}
	}
	forged, _ := a.Encode()
	if r := val.Validate(ctx, "peer-c", forged); r != swarm.Reject {
		t.Fatalf("forged: %v", r)
	}
	if r := val.Validate(ctx, "peer-c", []byte("not an announcement")); r != swarm.Reject {
		t.Fatalf("garbage: %v", r)
	}
	b, _ := announce.Decode(v2)
	b.Channel = "beta"
	foreign, _ := b.Encode()
	if r := val.Validate(ctx, "peer-c", foreign); r != swarm.Reject {
		t.Fatalf("foreign channel: %v", r)
	}
	if len(*accepted) != 2 {
		t.Fatalf("only the two current announcements may pass: %d", len(*accepted))
	}
}

func TestValidatorStaleAndNotForUs(t *testing.T) {
	p := newPubRepo(t)
	ctx := context.Background()
	ann := p.publish(1, "board-a")
	// Years later, the metadata has expired: stale.
	late, _ := p.validator(func() time.Time { return time.Now().Add(20 * 365 * 24 * time.Hour) }, "board-a")
	if r := late.Validate(ctx, "peer-a", ann); r != swarm.Ignore {
		t.Fatalf("expired: %v", r)
	}
	// A release for other hardware is genuine but not ours.
	other, _ := p.validator(time.Now, "board-b")
	if r := other.Validate(ctx, "peer-a", ann); r != swarm.Ignore {
		t.Fatalf("other hardware: %v", r)
	}
}
