package manifest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	sumtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest/tlog"
)

// FuzzLogWitness serves arbitrary bytes to a device requiring the log in
// place of one log file it reads from outside: the checkpoint, the hash
// tile, or the lookup shard. Nothing may panic, and whenever the witness
// accepts, it must have proven the truth: the real record at its real
// index in the real signed tree.
func FuzzLogWitness(f *testing.F) {
	fx := newFixture(f, nil)
	fx.publish("stable", 1, 1, fx.logged)
	fx.publish("stable", 2, 2, fx.logged)
	targets, err := os.ReadFile(filepath.Join(fx.repo, "metadata", "2.targets.json"))
	if err != nil {
		f.Fatal(err)
	}
	rec, _ := logRecord(2, targets)
	h := sumtlog.RecordHash(rec)
	files := []string{"log/checkpoint", "log/tile/8/0/000.p/2", fmt.Sprintf("log/lookup/%02x", h[0])}
	orig := map[string][]byte{}
	for i, p := range files {
		b, err := os.ReadFile(filepath.Join(fx.repo, filepath.FromSlash(p)))
		if err != nil {
			f.Fatal(err)
		}
		orig[p] = b
		f.Add(uint8(i), b)
		f.Add(uint8(i), b[:len(b)/2])
	}
	real, err := UnverifiedCheckpoint(orig["log/checkpoint"])
	if err != nil {
		f.Fatal(err)
	}
	vkey := fx.keys.LogVerifierKey()
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		p := files[int(which)%len(files)]
		w, err := NewLogWitness([]string{vkey}, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = w.Witness(context.Background(), overlayFetcher{fetch.Dir(fx.repo), p, data}, 2, targets)
		if err != nil {
			return
		}
		got, ok := w.Proof(2, targets)
		if !ok || got.Tree != real || got.Entry != 1 {
			t.Fatalf("%s replaced by %q: accepted with proof %+v, want entry 1 of %+v", p, data, got, real)
		}
		if p != files[2] && !bytes.Equal(data, orig[p]) {
			// Only the lookup shard is a hint that other bytes may fill.
			t.Fatalf("%s replaced by %q: accepted", p, data)
		}
	})
}

// FuzzUnverifiedCheckpoint: no panic, and an accepted note's text is
// exactly the tree it returns.
func FuzzUnverifiedCheckpoint(f *testing.F) {
	f.Add([]byte("go.sum database tree\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— a.test/log AAAAAQ==\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, msg []byte) {
		tree, err := UnverifiedCheckpoint(msg)
		if err != nil {
			return
		}
		if !bytes.HasPrefix(msg, append(sumtlog.FormatTree(tree), '\n')) || len(msg) > tlog.MaxCheckpointSize {
			t.Fatalf("accepted %q as %+v", msg, tree)
		}
	})
}
