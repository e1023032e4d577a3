package manifest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/shoalnet/shoal/fetch"
)

// A mirror that withholds a root rotation must not win over one that
// serves it: once the device has verified the new root, metadata signed
// only by keys that root revoked must not be trusted, however high its
// version.
func TestMirrorWithholdingRootRotation(t *testing.T) {
	f, evil := withheldRotation(t)

	v := mustAccept(t, f.client(0, fetch.Dir(evil), fetch.Dir(f.repo)), stableDevice, 2)
	if v.RootVersion != 2 || v.Mirror != 1 {
		t.Fatalf("root version %d from mirror %d, want root 2 from mirror 1", v.RootVersion, v.Mirror)
	}
	// What the device remembered is the rotated root, not the revoked keys.
	mustAccept(t, f.client(0, fetch.Dir(f.repo)), stableDevice, 2)
}

// The mirror that serves the rotation may itself be broken (here: no
// timestamp). The device has still verified the new root there, so it
// must not fall back to the withholding mirror's metadata signed by
// revoked keys: it refuses to update until a complete chain on the new
// root is available.
func TestBrokenRotationMirrorDoesNotHandBackToRevokedKeys(t *testing.T) {
	f, evil := withheldRotation(t)
	broken := filepath.Join(f.dir, "broken-mirror")
	copyDir(t, f.repo, broken)
	if err := os.Remove(filepath.Join(broken, "metadata", "timestamp.json")); err != nil {
		t.Fatal(err)
	}
	mustReject(t, f.client(0, fetch.Dir(evil), fetch.Dir(broken)), stableDevice, ErrRollback)
}

// withheldRotation publishes release 1, copies the repository to an
// attacker's mirror, then rotates the (stolen) timestamp key and publishes
// release 2. The attacker's mirror has no 2.root.json and a timestamp
// signed with the revoked key, far ahead of the real one.
func withheldRotation(t *testing.T) (*fixture, string) {
	t.Helper()
	f := newFixture(t, nil)
	f.publish("stable", 1, 1, nil)
	ts, _ := onlineKeys(t, f)
	evil := filepath.Join(f.dir, "evil-mirror")
	copyDir(t, f.repo, evil)
	if err := f.keys.Rotate(metadata.TIMESTAMP, KeysOptions{Now: clock(0)}); err != nil {
		t.Fatal(err)
	}
	f.publish("stable", 2, 2, nil)
	forge(t, evil, forgery{timestamp: func(x *metadata.TimestampType) { x.Version = 1 << 40 }, timestampKeys: ts})
	return f, evil
}
