package tlog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"slices"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// seededReader is a deterministic byte stream for fuzz keys, so that seed
// corpora stay valid from run to run.
type seededReader struct{ state [32]byte }

func (r *seededReader) Read(p []byte) (int, error) {
	for i := range p {
		if i%32 == 0 {
			r.state = sha256.Sum256(r.state[:])
		}
		p[i] = r.state[i%32]
	}
	return len(p), nil
}

// fixedKey is a log key that is the same in every run.
func fixedKey(t testing.TB) testKey {
	t.Helper()
	skey, vkey, err := note.GenerateKey(&seededReader{}, "shoal.test/fuzz")
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

func FuzzVerifyCheckpoint(f *testing.F) {
	k := fixedKey(f)
	f.Add(signedText(f, k, tlog.FormatTree(tlog.Tree{N: 3})))
	f.Add([]byte("go.sum database tree\n3\nAAAA\n\n— shoal.test/fuzz AAAAAA==\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		cp, err := VerifyCheckpoint(msg, k.verifiers)
		if err != nil {
			if !errors.Is(err, ErrBadCheckpoint) {
				t.Fatalf("error %v does not wrap ErrBadCheckpoint", err)
			}
			return
		}
		if cp.Tree.N < 0 || !bytes.Equal(cp.Note, msg) {
			t.Fatalf("accepted %q as %+v", msg, cp)
		}
		n, err := note.Open(msg, k.verifiers)
		if err != nil || n.Text != string(tlog.FormatTree(cp.Tree)) {
			t.Fatalf("accepted a note whose text is not the tree: %v", err)
		}
	})
}

func FuzzDecodeBundle(f *testing.F) {
	f.Add(encodeBundle([][]byte{[]byte("a"), []byte("bc")}), 2)
	f.Add([]byte{0, 1}, 1)
	f.Fuzz(func(t *testing.T, data []byte, w int) {
		recs, err := decodeBundle(data, w)
		if err != nil {
			return
		}
		if len(recs) != w || !bytes.Equal(encodeBundle(recs), data) {
			t.Fatalf("%q decoded to %d entries that do not re-encode", data, len(recs))
		}
	})
}

func FuzzDecodeLookup(f *testing.F) {
	h := tlog.RecordHash([]byte("x"))
	f.Add(encodeLookup([]lookupEntry{{h, 1}, {h, 7}}), h[0])
	f.Fuzz(func(t *testing.T, data []byte, prefix byte) {
		es, err := decodeLookup(data, prefix)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeLookup(es), data) {
			t.Fatalf("%q does not re-encode", data)
		}
	})
}

func FuzzParseTargets(f *testing.F) {
	rec, _ := TargetsOf("stable", 3, []byte("targets")).Record()
	f.Add(rec)
	f.Fuzz(func(t *testing.T, rec []byte) {
		r, err := ParseTargets(rec)
		if err != nil {
			if !errors.Is(err, ErrMalformedRecord) {
				t.Fatalf("error %v does not wrap ErrMalformedRecord", err)
			}
			return
		}
		again, err := r.Record()
		if err != nil || !bytes.Equal(again, rec) {
			t.Fatalf("%q parsed but does not re-encode: %q, %v", rec, again, err)
		}
	})
}

// FuzzTileReader serves a real log with one file replaced by fuzz data and
// checks that proofs and reads never accept a wrong answer: an inclusion
// proof that succeeds names the true index, a record read back is the true
// record, and with the file unchanged everything succeeds.
func FuzzTileReader(f *testing.F) {
	k := fixedKey(f)
	dir := f.TempDir()
	recs := records(f, "stable", 0, 300)
	old := mustAppend(f, dir, k, recs[:260]...)
	cur := mustAppend(f, dir, k, recs[260:]...)
	files := readAll(f, dir)
	paths := keys(files)
	for i, p := range paths {
		f.Add(uint16(i), uint16(i*7), files[p])
	}
	f.Add(uint16(slices.Index(paths, "tile/8/0/001.p/44")), uint16(3), []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, which, rec uint16, data []byte) {
		p := paths[int(which)%len(paths)]
		served := make(map[string][]byte, len(files))
		for q, b := range files {
			served[q] = b
		}
		served[p] = data
		same := bytes.Equal(data, files[p])
		r := NewReader(mapFetcher(served), k.verifiers)
		ctx := context.Background()
		i := int64(rec) % cur.Tree.N

		idx, err := r.ProveInclusion(ctx, cur.Tree, recs[i])
		if err == nil && idx != i {
			t.Fatalf("%s: proved record %d at index %d", p, i, idx)
		}
		if same && err != nil {
			t.Fatalf("genuine log: %v", err)
		}
		got, err := r.Record(ctx, cur.Tree, i)
		if err == nil && !bytes.Equal(got, recs[i]) {
			t.Fatalf("%s: entry %d read back as %q", p, i, got)
		}
		if same && err != nil {
			t.Fatalf("genuine log: %v", err)
		}
		if err := r.CheckConsistency(ctx, old.Tree, cur.Tree); same && err != nil {
			t.Fatalf("genuine log: %v", err)
		}
		if _, err := r.Audit(ctx); same && err != nil {
			t.Fatalf("genuine log: %v", err)
		}
	})
}

func signedText(t testing.TB, k testKey, text []byte) []byte {
	msg, err := note.Sign(&note.Note{Text: string(text)}, k.signer)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}
