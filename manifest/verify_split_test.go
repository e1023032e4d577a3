package manifest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoalnet/shoal/fetch"
)

// metadataOnly holds just the repository's metadata files, as a gossip
// announcement carries them.
func metadataOnly(t *testing.T, repo string) fetch.Mem {
	t.Helper()
	m := fetch.Mem{}
	es, err := os.ReadDir(filepath.Join(repo, "metadata"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		b, err := os.ReadFile(filepath.Join(repo, "metadata", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m["metadata/"+e.Name()] = b
	}
	return m
}

// TestVerifyMetadataThenIndexes: the chain and the release verify from the
// metadata alone; the indexes come later from any source and are checked
// against their signed targets.
func TestVerifyMetadataThenIndexes(t *testing.T) {
	f := newFixture(t, nil)
	f.publish("stable", 1, 1, nil)
	ctx := context.Background()
	c := f.client(0)
	meta := metadataOnly(t, f.repo)
	v, err := c.VerifyMetadata(ctx, stableDevice, []fetch.Fetcher{meta})
	if err != nil {
		t.Fatal(err)
	}
	if v.Release.Version != 1 || v.Indexes != nil {
		t.Fatalf("metadata-only verification: v%d, %d indexes", v.Release.Version, len(v.Indexes))
	}
	// From the metadata alone the indexes cannot be had.
	if err := c.FetchIndexes(ctx, v, meta); !errors.Is(err, fetch.ErrNotFound) {
		t.Fatalf("indexes from metadata only: %v", err)
	}
	// A source with a tampered index is refused; a good one after it wins.
	bad := fetch.Mem{}
	p := IndexPath(v.Release.Artifacts[0].Index)
	good, err := os.ReadFile(filepath.Join(f.repo, filepath.FromSlash(p)))
	if err != nil {
		t.Fatal(err)
	}
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-1] ^= 1
	bad[p] = tampered
	if err := c.FetchIndexes(ctx, v, bad); !errors.Is(err, ErrIndexHash) {
		t.Fatalf("tampered index: %v", err)
	}
	if err := c.FetchIndexes(ctx, v, bad, fetch.Dir(f.repo)); err != nil || len(v.Indexes) != 1 || v.Indexes[0].CID() != v.Release.Artifacts[0].Index {
		t.Fatalf("index after a bad source: %v", err)
	}
	if err := c.FetchIndexes(ctx, &Verified{Release: v.Release}, fetch.Dir(f.repo)); err == nil || !strings.Contains(err.Error(), "verified by this package") {
		t.Fatalf("a Verified made by hand: %v", err)
	}
}

// TestVerifyEvery: a client that remembers the current targets would not
// even read a forged copy served later; with VerifyEvery (a gossip
// validator vouching for the bytes it relays) every served file must
// verify itself.
func TestVerifyEvery(t *testing.T) {
	f := newFixture(t, nil)
	f.publish("stable", 1, 1, nil)
	ctx := context.Background()
	meta := metadataOnly(t, f.repo)
	forged := fetch.Mem{}
	for p, b := range meta {
		forged[p] = b
		if strings.HasSuffix(p, ".targets.json") {
			forged[p] = bytes.Replace(b, []byte(`"stable"`), []byte(`"stablE"`), 1)
		}
	}
	root, _ := os.ReadFile(filepath.Join(f.keys.Dir(), "roots", "1.root.json"))
	for _, every := range []bool{false, true} {
		state := &MemState{}
		c, err := NewClient(ClientConfig{TrustedRoot: root, State: state, Now: clock(0), VerifyEvery: every})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.VerifyMetadata(ctx, stableDevice, []fetch.Fetcher{meta}); err != nil {
			t.Fatal(err)
		}
		_, err = c.VerifyMetadata(ctx, stableDevice, []fetch.Fetcher{forged})
		if every && !errors.Is(err, ErrMixAndMatch) {
			t.Fatalf("VerifyEvery took a forged targets file: %v", err)
		}
		if !every && err != nil {
			t.Fatalf("without VerifyEvery the remembered copy is used: %v", err)
		}
	}
}
