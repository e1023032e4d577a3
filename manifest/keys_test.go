package manifest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

func TestKeysInitLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	k, err := InitKeys(dir, KeysOptions{Thresholds: map[string]int{"root": 2, "targets": 3}, Keys: map[string]int{"root": 3}})
	if err != nil {
		t.Fatal(err)
	}
	if k.Threshold("root") != 2 || k.Threshold("targets") != 3 || k.Threshold("timestamp") != 1 {
		t.Fatal("thresholds not as asked")
	}
	if n := len(k.root.Signed.Roles["root"].KeyIDs); n != 3 {
		t.Fatalf("%d root keys, want 3", n)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "private"))
	if len(ents) != 3+3+1+1+1 { // the TUF keys and the log signer key
		t.Fatalf("%d key files", len(ents))
	}
	for _, e := range ents {
		st, _ := os.Stat(filepath.Join(dir, "private", e.Name()))
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("%s has mode %v", e.Name(), st.Mode().Perm())
		}
	}
	l, err := LoadKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.keys) != 8 || l.RootVersion() != 1 {
		t.Fatalf("loaded %d keys, root v%d", len(l.keys), l.RootVersion())
	}
	if _, err := InitKeys(dir, KeysOptions{}); !errors.Is(err, ErrKeys) {
		t.Fatalf("init over existing: %v", err)
	}
	for _, bad := range []map[string]int{{"mirror": 1}, {"root": 0}, {"root": 17}} {
		if _, err := InitKeys(t.TempDir(), KeysOptions{Thresholds: bad}); !errors.Is(err, ErrKeys) {
			t.Errorf("thresholds %v: %v", bad, err)
		}
	}
	// A key file others can read is refused.
	os.Chmod(filepath.Join(dir, "private", ents[0].Name()), 0o644)
	if _, err := LoadKeys(dir); !errors.Is(err, ErrKeys) {
		t.Fatalf("world-readable key: %v", err)
	}
}

func TestRotateRootChain(t *testing.T) {
	// A device provisioned with root v1 accepts root v3 only through v2,
	// each signed by the threshold of the one before.
	f := newFixture(t, map[string]int{"root": 2})
	f.publish("stable", 1, 1, nil)
	mustAccept(t, f.client(0), stableDevice, 1)
	v1 := readMeta(t, metadata.Root(), filepath.Join(f.keys.Dir(), "roots", "1.root.json"))
	if err := f.keys.Rotate("root", KeysOptions{Now: clock(0)}); err != nil {
		t.Fatal(err)
	}
	v2 := readMeta(t, metadata.Root(), filepath.Join(f.keys.Dir(), "roots", "2.root.json"))
	if err := v1.VerifyDelegate("root", v2); err != nil {
		t.Fatalf("v2 not signed by v1's root keys: %v", err)
	}
	if err := f.keys.Rotate("targets", KeysOptions{Now: clock(0)}); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(f.keys.Dir(), "retired")); len(ents) != 3 {
		t.Fatalf("%d retired keys, want 2 root + 1 targets", len(ents))
	}
	f.publish("stable", 2, 2, nil)

	// Without 2.root.json the device cannot reach v3, and the targets
	// signed with v3's key do not verify under v1.
	md := filepath.Join(f.repo, "metadata")
	hidden := filepath.Join(f.dir, "2.root.json")
	os.Rename(filepath.Join(md, "2.root.json"), hidden)
	g := *f
	g.state = t.TempDir()
	mustReject(t, g.client(0), stableDevice, ErrThreshold)
	os.Rename(hidden, filepath.Join(md, "2.root.json"))

	v := mustAccept(t, f.client(0), stableDevice, 2)
	if v.RootVersion != 3 {
		t.Fatalf("root version %d", v.RootVersion)
	}
	// The state remembers root v3: a repository that lost its new roots
	// no longer matters to this device.
	os.Remove(filepath.Join(md, "2.root.json"))
	os.Remove(filepath.Join(md, "3.root.json"))
	mustAccept(t, f.client(0), stableDevice, 2)

	// A reloaded key directory signs with the new keys.
	k, err := LoadKeys(f.keys.Dir())
	if err != nil {
		t.Fatal(err)
	}
	f.keys = k
	f.publish("stable", 3, 3, nil)
	mustAccept(t, f.client(0), stableDevice, 3)

	// Missing a role's private keys: publish says which.
	os.RemoveAll(filepath.Join(f.keys.Dir(), "private"))
	k, _ = LoadKeys(f.keys.Dir())
	f.keys = k
	_, err = Publish(context.Background(), PublishOptions{Repo: f.repo, Keys: k, Channel: "stable", Version: 4,
		Artifacts: []ArtifactInput{{Name: "rootfs", Path: filepath.Join(f.dir, "img-stable-3")}}, Params: testParams})
	if !errors.Is(err, ErrKeys) {
		t.Fatalf("publish without keys: %v", err)
	}
}

func TestStateSurvivesAndIsUsed(t *testing.T) {
	f := newFixture(t, nil)
	f.publish("stable", 1, 1, nil)
	mustAccept(t, f.client(0), stableDevice, 1)
	// A state file that cannot be parsed is an error, not amnesia.
	write(t, filepath.Join(f.state, "root.json"), []byte("{"))
	if _, err := f.client(0).Verify(context.Background(), stableDevice); !errors.Is(err, ErrBadMetadata) {
		t.Fatalf("corrupt state: %v", err)
	}
}
