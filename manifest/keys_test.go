package manifest

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
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

// A key directory that lost its root.json still holds keys: init must not
// replace the log key or add role keys beside the old ones. Every kind of
// leftover is refused by name, and nothing is changed.
func TestInitKeysRefusesLeftoverKeys(t *testing.T) {
	src := filepath.Join(t.TempDir(), "keys")
	if _, err := InitKeys(src, KeysOptions{}); err != nil {
		t.Fatal(err)
	}
	privs, err := os.ReadDir(filepath.Join(src, "private"))
	if err != nil {
		t.Fatal(err)
	}
	var roleKey string
	for _, e := range privs {
		if filepath.Ext(e.Name()) == ".key" {
			roleKey = e.Name()
		}
	}
	if roleKey == "" {
		t.Fatal("no role key file made")
	}
	for _, leftover := range []string{
		"root.json",
		"log.pub",
		filepath.Join("private", "log.skey"),
		filepath.Join("private", roleKey),
		filepath.Join("retired", roleKey),
		filepath.Join("roots", "1.root.json"),
	} {
		t.Run(leftover, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "keys")
			os.MkdirAll(filepath.Join(dir, filepath.Dir(leftover)), 0o700)
			from := leftover
			if filepath.Dir(leftover) == "retired" {
				from = filepath.Join("private", roleKey)
			}
			b, err := os.ReadFile(filepath.Join(src, from))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, leftover), b, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = InitKeys(dir, KeysOptions{})
			if !errors.Is(err, ErrKeys) || !strings.Contains(err.Error(), leftover) {
				t.Fatalf("init beside %s: %v, want ErrKeys naming it", leftover, err)
			}
			var files []string
			filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					files = append(files, p)
				}
				return nil
			})
			if len(files) != 1 {
				t.Fatalf("init added files beside %s: %v", leftover, files)
			}
			if got, _ := os.ReadFile(filepath.Join(dir, leftover)); string(got) != string(b) {
				t.Fatalf("%s was changed", leftover)
			}
		})
	}
	// The directory made by a normal init names everything it holds.
	_, err = InitKeys(src, KeysOptions{})
	for _, want := range []string{"root.json", "log.pub", filepath.Join("private", "log.skey")} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("init over a key directory: %v, want it to name %s", err, want)
		}
	}
	// An existing directory with nothing in it but empty subdirectories is
	// fine to init.
	empty := t.TempDir()
	for _, sub := range []string{"private", "roots", "retired"} {
		os.Mkdir(filepath.Join(empty, sub), 0o700)
	}
	if _, err := InitKeys(empty, KeysOptions{}); err != nil {
		t.Fatalf("init in a directory of empty subdirectories: %v", err)
	}
}
