package tlog

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/shoalnet/shoal/fetch"
)

// testKey is a log key made once per test binary.
type testKey struct {
	skey, vkey string
	signer     note.Signer
	verifiers  note.Verifiers
}

func newTestKey(t testing.TB, name string) testKey {
	t.Helper()
	skey, vkey, err := GenerateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	vs, err := NewVerifiers(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{skey: skey, vkey: vkey, signer: s, verifiers: vs}
}

// records returns n distinct release records numbered from first.
func records(t testing.TB, channel string, first, n int) [][]byte {
	t.Helper()
	out := make([][]byte, n)
	for i := range out {
		v := int64(first + i + 1)
		rec, err := TargetsOf(channel, v, fmt.Appendf(nil, `{"signed":{"version":%d}}`, v)).Record()
		if err != nil {
			t.Fatal(err)
		}
		out[i] = rec
	}
	return out
}

func mustAppend(t testing.TB, dir string, k testKey, recs ...[]byte) Checkpoint {
	t.Helper()
	cp, err := Append(context.Background(), dir, k.signer, recs...)
	if err != nil {
		t.Fatalf("append %d records: %v", len(recs), err)
	}
	return cp
}

// readAll loads every file of a log directory into a map keyed by its
// slash path, for fetchers that tamper with one file.
func readAll(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b, err := os.ReadFile(p)
		files[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// mapFetcher serves files from memory.
type mapFetcher map[string][]byte

func (m mapFetcher) Fetch(ctx context.Context, p string, max int64) ([]byte, error) {
	b, ok := m[p]
	if !ok {
		return nil, fmt.Errorf("map %s: %w", p, fetch.ErrNotFound)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("map %s: %w", p, fetch.ErrTooLarge)
	}
	return b, nil
}

func treeOf(cp Checkpoint) tlog.Tree { return cp.Tree }
