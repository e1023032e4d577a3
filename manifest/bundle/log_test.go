package bundle

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/manifest/tlog"
)

// With the log's keys, bundle verify checks the log as a device that
// requires it does (manifest.LogWitness): the checkpoint is remembered in
// the state directory, and a bundle whose log forked from the remembered
// one is refused.
func TestVerifyLogWitnessState(t *testing.T) {
	f := newFixture(t, true)
	full, _ := f.create(t, 0)
	ctx := context.Background()
	state := filepath.Join(t.TempDir(), "state")
	o := f.verifyOptions()
	o.StateDir = state
	v, err := Verify(ctx, full, o)
	if err != nil {
		t.Fatal(err)
	}
	if v.Log == nil || !v.Log.Signed || v.Log.TreeSize != 2 {
		t.Fatalf("log proof %+v", v.Log)
	}
	if _, err := os.Stat(filepath.Join(state, manifest.LogStateFile)); err != nil {
		t.Fatalf("checkpoint not remembered: %v", err)
	}

	// Another device remembers a log of two other entries, signed by the
	// same key: the bundle's log is a split view for it.
	other := filepath.Join(t.TempDir(), "other")
	cp, err := tlog.Append(ctx, other, f.logSigner, []byte("one\n"), []byte("two\n"))
	if err != nil {
		t.Fatal(err)
	}
	forked := filepath.Join(t.TempDir(), "state")
	os.MkdirAll(forked, 0o700)
	os.WriteFile(filepath.Join(forked, manifest.LogStateFile), cp.Note, 0o644)
	o.StateDir = forked
	if _, err := Verify(ctx, full, o); !errors.Is(err, tlog.ErrInconsistent) {
		t.Fatalf("bundle against a forked remembered log: %v", err)
	}
}
