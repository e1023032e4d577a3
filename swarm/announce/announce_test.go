package announce_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/swarm/announce"
)

// repo publishes releases 1..n on stable and returns the repository and
// the provisioned root.
func repo(t testing.TB, n int) (string, []byte) {
	t.Helper()
	r, keys := logRepo(t, n, false)
	return r, keys.RootJSON()
}

// logRepo publishes releases 1..n on stable, appending each targets
// version to the repository's transparency log when logged, and returns
// the repository and the keys.
func logRepo(t testing.TB, n int, logged bool) (string, *manifest.Keyring) {
	t.Helper()
	dir := t.TempDir()
	keys, err := manifest.InitKeys(filepath.Join(dir, "keys"), manifest.KeysOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := filepath.Join(dir, "repo")
	for v := 1; v <= n; v++ {
		publish(t, r, keys, uint64(v), logged)
	}
	return r, keys
}

func publish(t testing.TB, r string, keys *manifest.Keyring, version uint64, logged bool) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "img")
	b := make([]byte, 200<<10)
	rand.Read(b)
	os.WriteFile(img, b, 0o644)
	o := manifest.PublishOptions{Repo: r, Keys: keys, Channel: "stable",
		Version: version, Artifacts: []manifest.ArtifactInput{{Name: "rootfs", Path: img}},
		Params: chunker.Params{Min: 1024, Avg: 4096, Max: 16384}}
	if logged {
		o.Log = keys.TargetsLog()
	}
	if _, err := manifest.Publish(context.Background(), o); err != nil {
		t.Fatal(err)
	}
}

// TestAnnouncementVerifies: a node with only the announcement (no route to
// the repository) verifies the newest release from it; the indexes then
// come from elsewhere.
func TestAnnouncementVerifies(t *testing.T) {
	r, root := repo(t, 2)
	ctx := context.Background()
	a, err := announce.Collect(ctx, fetch.Dir(r), "fleet-1", "stable")
	if err != nil {
		t.Fatal(err)
	}
	b, err := a.Encode()
	if err != nil {
		t.Fatal(err)
	}
	again, _ := a.Encode()
	if !bytes.Equal(b, again) {
		t.Fatal("encoding is not deterministic")
	}
	got, err := announce.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	c, err := manifest.NewClient(manifest.ClientConfig{TrustedRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.VerifyMetadata(ctx, manifest.Device{ID: "d", Channel: "stable"}, []fetch.Fetcher{got.Fetcher()})
	if err != nil {
		t.Fatal(err)
	}
	if v.Release.Version != 2 {
		t.Fatalf("verified v%d, want 2", v.Release.Version)
	}
	if err := c.FetchIndexes(ctx, v, fetch.Dir(r)); err != nil {
		t.Fatal(err)
	}
}

// TestForgedAnnouncement: a well-formed announcement whose targets were
// edited does not verify.
func TestForgedAnnouncement(t *testing.T) {
	r, root := repo(t, 1)
	ctx := context.Background()
	a, err := announce.Collect(ctx, fetch.Dir(r), "fleet-1", "stable")
	if err != nil {
		t.Fatal(err)
	}
	for p, b := range a.Files {
		if strings.HasSuffix(p, ".targets.json") {
			a.Files[p] = bytes.Replace(b, []byte(`"stable"`), []byte(`"stablE"`), 1)
		}
	}
	c, _ := manifest.NewClient(manifest.ClientConfig{TrustedRoot: root})
	if _, err := c.VerifyMetadata(ctx, manifest.Device{ID: "d", Channel: "stable"}, []fetch.Fetcher{a.Fetcher()}); err == nil {
		t.Fatal("a forged announcement verified")
	}
}

func TestDecodeRefuses(t *testing.T) {
	good := `{"v":1,"fleet":"f","channel":"stable","files":{"metadata/timestamp.json":"e30="}}`
	if _, err := announce.Decode([]byte(good)); err != nil {
		t.Fatalf("good: %v", err)
	}
	for name, b := range map[string]string{
		"empty":         ``,
		"not json":      `hello`,
		"version":       `{"v":2,"fleet":"f","channel":"stable","files":{"metadata/timestamp.json":"e30="}}`,
		"unknown field": `{"v":1,"fleet":"f","channel":"stable","files":{"metadata/timestamp.json":"e30="},"x":1}`,
		"trailing":      good + `{}`,
		"no timestamp":  `{"v":1,"fleet":"f","channel":"stable","files":{"metadata/1.root.json":"e30="}}`,
		"escape":        `{"v":1,"fleet":"f","channel":"stable","files":{"metadata/timestamp.json":"e30=","../x.json":"e30="}}`,
		"index":         `{"v":1,"fleet":"f","channel":"stable","files":{"metadata/timestamp.json":"e30=","index/x":"e30="}}`,
		"zero version":  `{"v":1,"fleet":"f","channel":"stable","files":{"metadata/timestamp.json":"e30=","metadata/0.root.json":"e30="}}`,
		"bad channel":   `{"v":1,"fleet":"f","channel":"a/b","files":{"metadata/timestamp.json":"e30="}}`,
		"no fleet":      `{"v":1,"fleet":"","channel":"stable","files":{"metadata/timestamp.json":"e30="}}`,
		"bad base64":    `{"v":1,"fleet":"f","channel":"stable","files":{"metadata/timestamp.json":"!!"}}`,
		"too large":     `{"v":1,"fleet":"f","channel":"stable","files":{"metadata/timestamp.json":"` + strings.Repeat("A", announce.MaxSize) + `"}}`,
	} {
		if _, err := announce.Decode([]byte(b)); !errors.Is(err, announce.ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"v":1,"fleet":"f","channel":"stable","files":{"metadata/timestamp.json":"e30="}}`))
	f.Add([]byte(`{"v":1,"fleet":"f","channel":"stable","files":{"metadata/1.root.json":"e30=","metadata/timestamp.json":"e30=","metadata/3.snapshot.json":"e30=","metadata/4.targets.json":"e30="}}`))
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`{"v":1,"fleet":"f","channel":"stable","files":{"log/checkpoint":"e30=","log/lookup/00":"","log/tile/8/0/000.p/1":"","metadata/timestamp.json":"e30=","metadata/4.targets.json":"e30="}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := announce.Decode(b)
		if err != nil {
			if !errors.Is(err, announce.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		// What decodes re-encodes and decodes to the same.
		enc, err := a.Encode()
		if err != nil {
			t.Fatalf("decoded announcement does not encode: %v", err)
		}
		back, err := announce.Decode(enc)
		if err != nil || back.Fleet != a.Fleet || back.Channel != a.Channel || len(back.Files) != len(a.Files) {
			t.Fatalf("round trip: %v", err)
		}
		for p, data := range a.Files {
			if !bytes.Equal(back.Files[p], data) {
				t.Fatalf("round trip changed %s", p)
			}
		}
		// The log files, checked against the targets it carries, are
		// the slice or an ErrBadLog.
		if v, targets, ok := a.Targets(); ok {
			if err := a.CheckLog(context.Background(), v, targets); err != nil && !errors.Is(err, announce.ErrBadLog) {
				t.Fatalf("CheckLog: %v does not wrap ErrBadLog", err)
			}
		}
	})
}
