package manifest

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/fetch"
)

// t0 is the tests' "now"; metadata expires 720h after it by default.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func clock(d time.Duration) func() time.Time { return func() time.Time { return t0.Add(d) } }

// testParams keep test images small but with many chunks.
var testParams = chunker.Params{Min: 2 << 10, Avg: 8 << 10, Max: 32 << 10}

// writeImage writes a deterministic image: random runs (incompressible)
// and repetitive runs (compressible), like a filesystem image.
func writeImage(t testing.TB, dir, name string, size int, seed uint64) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, size)
	for off := 0; off < size; {
		n := min(size-off, 4<<10+rng.IntN(64<<10))
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
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// fixture is a key directory, a repository and images.
type fixture struct {
	t     testing.TB
	keys  *Keyring
	repo  string
	dir   string
	state string
}

func newFixture(t testing.TB, th map[string]int) *fixture {
	t.Helper()
	dir := t.TempDir()
	k, err := InitKeys(filepath.Join(dir, "keys"), KeysOptions{Thresholds: th, Now: clock(0)})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, keys: k, repo: filepath.Join(dir, "repo"), dir: dir, state: filepath.Join(dir, "state")}
}

// publish publishes one artifact "rootfs" from an image with seed.
func (f *fixture) publish(channel string, version uint64, seed uint64, mod func(*PublishOptions)) *PublishResult {
	f.t.Helper()
	img := writeImage(f.t, f.dir, "img-"+channel+"-"+itoa(version), 600<<10, seed)
	o := PublishOptions{
		Repo: f.repo, Keys: f.keys, Channel: channel, Version: version,
		Artifacts: []ArtifactInput{{Name: "rootfs", Path: img}},
		Params:    testParams, Now: clock(0),
	}
	if mod != nil {
		mod(&o)
	}
	res, err := Publish(context.Background(), o)
	if err != nil {
		f.t.Fatalf("publish %s/%d: %v", channel, version, err)
	}
	return res
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }

// client is a device with the fixture's provisioned root and state.
func (f *fixture) client(now time.Duration, mirrors ...fetch.Fetcher) *Client {
	f.t.Helper()
	if len(mirrors) == 0 {
		mirrors = []fetch.Fetcher{fetch.Dir(f.repo)}
	}
	root, err := os.ReadFile(filepath.Join(f.keys.Dir(), "roots", "1.root.json"))
	if err != nil {
		f.t.Fatal(err)
	}
	c, err := NewClient(ClientConfig{TrustedRoot: root, StateDir: f.state, Mirrors: mirrors, Now: clock(now)})
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

var stableDevice = Device{ID: "dev-1", Channel: "stable"}

// copyDir copies a directory tree (a snapshot of a repository, so a test
// can serve an old one later).
func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		o, err := os.Create(out)
		if err != nil {
			return err
		}
		defer o.Close()
		_, err = io.Copy(o, in)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// roleKeys returns the private keys the key directory holds for role.
func roleKeys(t testing.TB, k *Keyring, role string) []ed25519.PrivateKey {
	t.Helper()
	var out []ed25519.PrivateKey
	for _, id := range k.root.Signed.Roles[role].KeyIDs {
		if p, ok := k.keys[id]; ok {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no %s keys", role)
	}
	return out
}

func attackerKey(t testing.TB) ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	copy(seed, "attacker's own key, not in root")
	return ed25519.NewKeyFromSeed(seed)
}

// resign replaces md's signatures with the given keys' and serializes it.
func resign[T metadata.Roles](t testing.TB, md *metadata.Metadata[T], keys ...ed25519.PrivateKey) []byte {
	t.Helper()
	md.ClearSignatures()
	for _, k := range keys {
		s, err := signature.LoadED25519Signer(k)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := md.Sign(s); err != nil {
			t.Fatal(err)
		}
	}
	b, err := md.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readMeta[T metadata.Roles](t testing.TB, md *metadata.Metadata[T], path string) *metadata.Metadata[T] {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := md.FromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// current returns the repository's current metadata.
func current(t testing.TB, repo string) (*metadata.Metadata[metadata.TimestampType], *metadata.Metadata[metadata.SnapshotType], *metadata.Metadata[metadata.TargetsType]) {
	t.Helper()
	md := filepath.Join(repo, "metadata")
	ts := readMeta(t, metadata.Timestamp(), filepath.Join(md, "timestamp.json"))
	sv := ts.Signed.Meta["snapshot.json"].Version
	sn := readMeta(t, metadata.Snapshot(), filepath.Join(md, versionedName(sv, "snapshot")))
	tv := sn.Signed.Meta["targets.json"].Version
	tg := readMeta(t, metadata.Targets(), filepath.Join(md, versionedName(tv, "targets")))
	return ts, sn, tg
}

// forgery describes metadata an attacker writes into a repository: what
// to change and which keys sign each role (nil: the role is not
// re-signed and keeps its current file, which then no longer matches).
type forgery struct {
	targets                                  func(*metadata.TargetsType)
	snapshot                                 func(*metadata.SnapshotType)
	timestamp                                func(*metadata.TimestampType)
	targetsKeys, snapshotKeys, timestampKeys []ed25519.PrivateKey
}

// forge writes new metadata into repo, signed as f says and chained by
// length and hash as a publisher would. A role with neither a change nor
// keys keeps its current file (an attacker without that key can only
// reuse it); the roles above it are re-signed to point at it.
func forge(t testing.TB, repo string, f forgery) {
	t.Helper()
	ts, sn, tg := current(t, repo)
	md := filepath.Join(repo, "metadata")
	if f.targets != nil || f.targetsKeys != nil {
		tg.Signed.Version++
		if f.targets != nil {
			f.targets(&tg.Signed)
		}
		tb := resign(t, tg, f.targetsKeys...)
		write(t, filepath.Join(md, versionedName(tg.Signed.Version, "targets")), tb)
		sn.Signed.Meta["targets.json"] = metaFileFor(tg.Signed.Version, tb)
	}
	if f.snapshot != nil || f.snapshotKeys != nil {
		sn.Signed.Version++
		if f.snapshot != nil {
			f.snapshot(&sn.Signed)
		}
		sb := resign(t, sn, f.snapshotKeys...)
		write(t, filepath.Join(md, versionedName(sn.Signed.Version, "snapshot")), sb)
		ts.Signed.Meta["snapshot.json"] = metaFileFor(sn.Signed.Version, sb)
	}
	ts.Signed.Version++
	if f.timestamp != nil {
		f.timestamp(&ts.Signed)
	}
	write(t, filepath.Join(md, "timestamp.json"), resign(t, ts, f.timestampKeys...))
}

// editCustom rewrites the custom fields of every target.
func editCustom(t testing.TB, tg *metadata.TargetsType, edit func(*targetCustom)) {
	t.Helper()
	for _, tf := range tg.Targets {
		var c targetCustom
		if err := json.Unmarshal(*tf.Custom, &c); err != nil {
			t.Fatal(err)
		}
		edit(&c)
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		raw := json.RawMessage(b)
		tf.Custom = &raw
	}
}

func write(t testing.TB, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
