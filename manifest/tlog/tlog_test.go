package tlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/shoalnet/shoal/fetch"
)

// TestAppendProveConsistency appends batches that cross tile boundaries and
// checks, at every checkpoint, the inclusion of every record logged so far,
// the absence of later ones, consistency between every pair of
// checkpoints, and a clean audit.
func TestAppendProveConsistency(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k := newTestKey(t, "shoal.test/log")
	r := NewReader(fetch.Dir(dir), k.verifiers)

	var all [][]byte
	var cps []Checkpoint
	for _, n := range []int{1, 2, 253, 1, 256, 300, 7} {
		batch := records(t, "stable", len(all), n)
		cp := mustAppend(t, dir, k, batch...)
		all = append(all, batch...)
		if cp.Tree.N != int64(len(all)) {
			t.Fatalf("checkpoint size %d, want %d", cp.Tree.N, len(all))
		}
		got, err := r.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got.Tree != cp.Tree || !bytes.Equal(got.Note, cp.Note) {
			t.Fatalf("stored checkpoint %+v differs from returned %+v", got.Tree, cp.Tree)
		}
		cps = append(cps, cp)
		if _, err := r.Audit(ctx); err != nil {
			t.Fatalf("audit at %d entries: %v", len(all), err)
		}
	}
	for ci, cp := range cps {
		for i, rec := range all {
			idx, err := r.ProveInclusion(ctx, cp.Tree, rec)
			if int64(i) < cp.Tree.N {
				if err != nil || idx != int64(i) {
					t.Fatalf("checkpoint %d (size %d): record %d: got index %d, %v", ci, cp.Tree.N, i, idx, err)
				}
			} else if !errors.Is(err, ErrNotFound) {
				t.Fatalf("checkpoint %d (size %d): record %d proved at %d (%v), want ErrNotFound", ci, cp.Tree.N, i, idx, err)
			}
		}
		for cj, other := range cps {
			if err := r.CheckConsistency(ctx, cp.Tree, other.Tree); err != nil {
				t.Fatalf("consistency %d/%d: %v", ci, cj, err)
			}
		}
	}
	// Entries read back through the proofs are the records appended.
	last := cps[len(cps)-1].Tree
	for _, i := range []int64{0, 255, 256, 511, 512, last.N - 1} {
		rec, err := r.Record(ctx, last, i)
		if err != nil || !bytes.Equal(rec, all[i]) {
			t.Fatalf("Record(%d) = %q, %v", i, rec, err)
		}
	}
	if _, err := r.ProveInclusion(ctx, last, []byte("never logged\n")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unlogged record: %v, want ErrNotFound", err)
	}
	// A device's whole check, from nothing and from an older tree.
	for _, prev := range []tlog.Tree{{}, cps[2].Tree} {
		cp, idx, err := r.Check(ctx, prev, all[700])
		if err != nil || idx != 700 || cp.Tree != last {
			t.Fatalf("Check from %d: %d, %v", prev.N, idx, err)
		}
	}
}

func TestVerifyCheckpointRejects(t *testing.T) {
	dir := t.TempDir()
	k := newTestKey(t, "shoal.test/log")
	cp := mustAppend(t, dir, k, records(t, "stable", 0, 3)...)

	// Same name, another key: the key hash differs, so it is unknown.
	impostor := newTestKey(t, "shoal.test/log")
	forged, err := signCheckpoint(tlog.Tree{N: 3, Hash: cp.Tree.Hash}, impostor.signer)
	if err != nil {
		t.Fatal(err)
	}
	// A known key hash with another key's signature bytes.
	text, sig, _ := strings.Cut(string(cp.Note), "\n\n")
	_, isig, _ := strings.Cut(string(forged), "\n\n")
	trusted := sigBytes(t, sig)
	spliced := sigBytes(t, isig)
	copy(spliced[:4], trusted[:4])
	wrongSig := text + "\n\n" + "— shoal.test/log " + b64(spliced) + "\n"
	// The right signature over a changed tree.
	moreText := strings.Replace(text, "\n3\n", "\n4\n", 1)

	cases := map[string][]byte{
		"other key":         forged,
		"forged signature":  []byte(wrongSig),
		"edited size":       []byte(moreText + "\n\n" + sig),
		"truncated":         cp.Note[:len(cp.Note)-10],
		"no signatures":     []byte(text + "\n\n"),
		"empty":             nil,
		"garbage":           []byte("hello\n\n— shoal.test/log AAAA\n"),
		"extra tree line":   signed(t, k, string(tlog.FormatTree(cp.Tree))+"extra\n"),
		"leading zero size": signed(t, k, strings.Replace(string(tlog.FormatTree(cp.Tree)), "\n3\n", "\n03\n", 1)),
		"not a tree":        signed(t, k, "shoal checkpoint\n3\nxyz\n"),
		"oversized":         append(bytes.Repeat([]byte("a"), MaxCheckpointSize), cp.Note...),
	}
	for name, msg := range cases {
		if _, err := VerifyCheckpoint(msg, k.verifiers); !errors.Is(err, ErrBadCheckpoint) {
			t.Errorf("%s: %v, want ErrBadCheckpoint", name, err)
		}
	}
	if got, err := VerifyCheckpoint(cp.Note, k.verifiers); err != nil || got.Tree != cp.Tree {
		t.Fatalf("genuine checkpoint: %+v, %v", got, err)
	}
	// A cosignature by an unknown key does not hurt.
	cosigned, err := note.Sign(&note.Note{Text: text + "\n"}, k.signer, impostor.signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyCheckpoint(cosigned, k.verifiers); err != nil {
		t.Fatalf("cosigned: %v", err)
	}
}

// TestSplitView builds two logs under one key that agree on a prefix and
// then differ, as a publisher showing different devices different
// histories would, and checks that consistency checks catch it.
func TestSplitView(t *testing.T) {
	ctx := context.Background()
	k := newTestKey(t, "shoal.test/log")
	dirA, dirB := t.TempDir(), t.TempDir()
	shared := records(t, "stable", 0, 300)
	mustAppend(t, dirA, k, shared...)
	mustAppend(t, dirB, k, shared...)
	a5 := mustAppend(t, dirA, k, records(t, "stable", 300, 5)...)
	b3 := mustAppend(t, dirB, k, records(t, "beta", 300, 3)...)
	b5 := mustAppend(t, dirB, k, records(t, "beta", 303, 2)...)
	ra := NewReader(fetch.Dir(dirA), k.verifiers)

	if err := ra.CheckConsistency(ctx, a5.Tree, b5.Tree); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("same size, different hash: %v", err)
	}
	if err := ra.CheckConsistency(ctx, b3.Tree, a5.Tree); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("smaller tree not a prefix: %v", err)
	}
	// A device that saw B's tree refuses A's checkpoint even for a record
	// both logs hold.
	if _, _, err := ra.Check(ctx, b3.Tree, shared[0]); !errors.Is(err, ErrInconsistent) {
		t.Fatalf("Check across views: %v", err)
	}
	// A rolled-back (older but genuine) view is consistent.
	rb := NewReader(fetch.Dir(dirB), k.verifiers)
	if err := rb.CheckConsistency(ctx, b5.Tree, b3.Tree); err != nil {
		t.Fatalf("older view of the same log: %v", err)
	}
}

// TestAuditFindsEdits damages one stored file at a time and checks that
// Audit names the file and the entry, and that proofs refuse the damage.
func TestAuditFindsEdits(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k := newTestKey(t, "shoal.test/log")
	all := records(t, "stable", 0, 600)
	cp := mustAppend(t, dir, k, all[:300]...)
	cp = mustAppend(t, dir, k, all[300:]...)
	pristine := readAll(t, dir)

	flip := func(b []byte, off int) []byte {
		b = bytes.Clone(b)
		b[off] ^= 1
		return b
	}
	bundle1 := pristine["tile/8/data/001"]
	// Offset of entry 261's last byte inside bundle 1 (entries 256..511).
	off := 0
	for j := 0; j <= 5; j++ {
		n := int(bundle1[off])<<8 | int(bundle1[off+1])
		off += 2 + n
	}
	lookupPath := lookupShard(tlog.RecordHash(all[42]))
	lookupLine := []byte(strings.Split(string(pristine[lookupPath]), "\n")[0] + "\n")

	cases := []struct {
		name  string
		path  string
		data  []byte // nil: delete
		index int64
		want  error
	}{
		{"entry byte", "tile/8/data/001", flip(bundle1, off-2), 261, ErrCorrupt},
		{"leaf hash", "tile/8/0/000", flip(pristine["tile/8/0/000"], 17*32+5), 17, ErrCorrupt},
		{"level-1 hash", "tile/8/1/000.p/2", flip(pristine["tile/8/1/000.p/2"], 32+3), 256, ErrCorrupt},
		{"partial leaf tile", "tile/8/0/002.p/88", flip(pristine["tile/8/0/002.p/88"], 87*32), 599, ErrCorrupt},
		{"bundle truncated", "tile/8/data/002.p/88", pristine["tile/8/data/002.p/88"][:100], 512, ErrCorrupt},
		{"bundle missing", "tile/8/data/000", nil, 0, ErrCorrupt},
		{"lookup line removed", lookupPath, bytes.Replace(pristine[lookupPath], lookupLine, nil, 1), -2, ErrCorrupt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			files := readAll(t, dir)
			if _, ok := files[c.path]; !ok {
				t.Fatalf("no file %s in %v", c.path, keys(files))
			}
			if c.data == nil {
				delete(files, c.path)
			} else {
				files[c.path] = c.data
			}
			r := NewReader(mapFetcher(files), k.verifiers)
			_, err := r.Audit(ctx)
			var ae *AuditError
			if !errors.As(err, &ae) || !errors.Is(err, c.want) {
				t.Fatalf("audit: %v, want *AuditError wrapping %v", err, c.want)
			}
			if ae.Path != c.path || (c.index != -2 && ae.Index != c.index) {
				t.Fatalf("audit blamed %s entry %d, want %s entry %d (%v)", ae.Path, ae.Index, c.path, c.index, err)
			}
		})
	}

	// An edited tile makes proofs through it fail as corruption.
	files := readAll(t, dir)
	files["tile/8/0/000"] = flip(files["tile/8/0/000"], 3*32)
	r := NewReader(mapFetcher(files), k.verifiers)
	if _, err := r.ProveInclusion(ctx, cp.Tree, all[3]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("proof through edited tile: %v", err)
	}
	// A lookup that points at the wrong entry is caught by the proof.
	files = readAll(t, dir)
	p := lookupShard(tlog.RecordHash(all[7]))
	files[p] = encodeLookup(replaceIndex(t, files[p], tlog.RecordHash(all[7]), 8))
	r = NewReader(mapFetcher(files), k.verifiers)
	if _, err := r.ProveInclusion(ctx, cp.Tree, all[7]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("lying lookup: %v", err)
	}
	if _, err := r.Audit(ctx); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("audit with lying lookup: %v", err)
	}
}

func TestAuditEquivocationAndDuplicates(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k := newTestKey(t, "shoal.test/log")
	a, _ := TargetsOf("stable", 7, []byte("targets A")).Record()
	b, _ := TargetsOf("stable", 7, []byte("targets B")).Record()
	c, _ := TargetsOf("beta", 7, []byte("targets B")).Record()
	mustAppend(t, dir, k, a, c)
	if _, err := NewReader(fetch.Dir(dir), k.verifiers).Audit(ctx); err != nil {
		t.Fatalf("one version per channel: %v", err)
	}
	mustAppend(t, dir, k, b)
	_, err := NewReader(fetch.Dir(dir), k.verifiers).Audit(ctx)
	var ae *AuditError
	if !errors.Is(err, ErrEquivocation) || !errors.As(err, &ae) || ae.Index != 2 {
		t.Fatalf("audit: %v, want ErrEquivocation at entry 2", err)
	}
	if _, err := Append(ctx, dir, k.signer, a); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("append duplicate: %v", err)
	}
}

func TestAppendRejects(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k := newTestKey(t, "shoal.test/log")
	recs := records(t, "stable", 0, 5)
	mustAppend(t, dir, k, recs[:3]...)
	before := readAll(t, dir)

	for name, batch := range map[string][][]byte{
		"none":             nil,
		"empty record":     {recs[3], {}},
		"oversized record": {make([]byte, MaxRecordSize+1)},
		"equal in batch":   {recs[3], recs[4], recs[3]},
		"already logged":   {recs[4], recs[1]},
	} {
		if _, err := Append(ctx, dir, k.signer, batch...); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := Append(ctx, dir, newTestKey(t, "shoal.test/log").signer, recs[3]); !errors.Is(err, ErrBadCheckpoint) {
		t.Errorf("append with another key: %v", err)
	}
	// A damaged tile is found before anything is written.
	leaf := filepath.Join(dir, "tile/8/0/000.p/3")
	good, _ := os.ReadFile(leaf)
	bad := bytes.Clone(good)
	bad[40] ^= 0x80
	if err := os.WriteFile(leaf, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Append(ctx, dir, k.signer, recs[3]); !errors.Is(err, ErrCorrupt) {
		t.Errorf("append over a damaged tile: %v", err)
	}
	if err := os.WriteFile(leaf, good, 0o644); err != nil {
		t.Fatal(err)
	}
	after := readAll(t, dir)
	delete(after, lockName)
	delete(before, lockName)
	if len(after) != len(before) {
		t.Fatalf("rejected appends left files: %v vs %v", keys(after), keys(before))
	}
	for p, b := range before {
		if !bytes.Equal(after[p], b) {
			t.Fatalf("rejected append changed %s", p)
		}
	}
}

// TestAppendAfterCrash stops Append at each stage, as a crash would (after
// the journal, after each bundle, after each lookup shard, just before and
// just after the checkpoint), and checks that readers still see the last signed log, and
// that the next append, of other records, yields a log that audits clean,
// in which the lost records are found only if their checkpoint was written.
func TestAppendAfterCrash(t *testing.T) {
	ctx := context.Background()
	errCrash := errors.New("crash")
	for _, stage := range []string{"journal", "bundle", "lookup", "sign", "checkpoint"} {
		for _, nth := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s#%d", stage, nth), func(t *testing.T) {
				dir := t.TempDir()
				k := newTestKey(t, "shoal.test/log")
				r := NewReader(fetch.Dir(dir), k.verifiers)
				first := records(t, "stable", 0, 200)
				cp0 := mustAppend(t, dir, k, first...)

				seen := 0
				faultHook = func(s string) error {
					if s == stage {
						if seen++; seen == nth {
							return errCrash
						}
					}
					return nil
				}
				lost := records(t, "lost", 0, 100)
				_, err := Append(ctx, dir, k.signer, lost...)
				faultHook = nil
				if (stage == "checkpoint" || stage == "journal" || stage == "sign") && nth == 2 {
					// One journal and one checkpoint per append: it completed.
					if err != nil {
						t.Fatal(err)
					}
					return
				}
				if !errors.Is(err, errCrash) {
					t.Fatalf("append: %v, want the crash", err)
				}
				committed := stage == "checkpoint"
				cp, err := r.Audit(ctx)
				if err != nil {
					t.Fatalf("audit right after the crash: %v", err)
				}
				if !committed && cp.Tree != cp0.Tree {
					t.Fatalf("checkpoint moved to %d entries without the append finishing", cp.Tree.N)
				}

				again := records(t, "stable", 200, 10)
				cp = mustAppend(t, dir, k, again...)
				if _, err := r.Audit(ctx); err != nil {
					t.Fatalf("audit after recovery: %v", err)
				}
				want := int64(200)
				if committed {
					want += int64(len(lost))
				}
				if i, err := r.ProveInclusion(ctx, cp.Tree, again[9]); err != nil || i != want+9 {
					t.Fatalf("record after recovery: %d, %v; want %d", i, err, want+9)
				}
				_, err = r.ProveInclusion(ctx, cp.Tree, lost[0])
				if committed != (err == nil) {
					t.Fatalf("lost record after recovery: %v (committed %v)", err, committed)
				}
				if !committed {
					if !errors.Is(err, ErrNotFound) {
						t.Fatalf("lost record: %v, want ErrNotFound", err)
					}
					// Never logged, so it may be appended now.
					cp = mustAppend(t, dir, k, lost[0])
					if i, err := r.ProveInclusion(ctx, cp.Tree, lost[0]); err != nil || i != 210 {
						t.Fatalf("re-appended record: %d, %v", i, err)
					}
					if _, err := r.Audit(ctx); err != nil {
						t.Fatalf("final audit: %v", err)
					}
				}
			})
		}
	}
}

func TestConcurrentAppends(t *testing.T) {
	dir := t.TempDir()
	k := newTestKey(t, "shoal.test/log")
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Go(func() {
			for i := range 5 {
				rec := records(t, "c"+string(rune('a'+g)), i, 1)
				if _, err := Append(context.Background(), dir, k.signer, rec...); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	cp, err := NewReader(fetch.Dir(dir), k.verifiers).Audit(context.Background())
	if err != nil || cp.Tree.N != 20 {
		t.Fatalf("after concurrent appends: %d entries, %v", cp.Tree.N, err)
	}
}

// A Reader reads the log of a repository served over HTTP through
// fetch.Sub(f, RepoDir), as a device does.
func TestReaderOverHTTP(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k := newTestKey(t, "shoal.test/log")
	recs := records(t, "stable", 0, 270)
	mustAppend(t, dir, k, recs...)
	srv := httptest.NewServer(http.StripPrefix("/repo/log/", http.FileServer(http.Dir(dir))))
	defer srv.Close()
	h, err := fetch.NewHTTP(srv.URL+"/repo", fetch.WithClient(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	f := fetch.Sub(h, RepoDir)
	r := NewReader(f, k.verifiers)
	if _, i, err := r.Check(ctx, tlog.Tree{}, recs[260]); err != nil || i != 260 {
		t.Fatalf("Check over HTTP: %d, %v", i, err)
	}
	if _, err := r.Audit(ctx); err != nil {
		t.Fatalf("audit over HTTP: %v", err)
	}
	if _, err := f.Fetch(ctx, "tile/8/9/000", 100); !errors.Is(err, fetch.ErrNotFound) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := f.Fetch(ctx, "tile/8/data/000", 100); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized file: %v", err)
	}
}

func TestTargetsRecord(t *testing.T) {
	var sum [32]byte
	for i := range sum {
		sum[i] = byte(i)
	}
	const hexSum = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	for _, c := range []struct {
		tg   Targets
		want string
	}{
		{Targets{Channel: "fleet-a/canary", Version: 42, SHA256: sum}, "shoal-targets v1\nchannel fleet-a/canary\ntargets-version 42\ntargets-sha256 " + hexSum + "\n"},
		{Targets{Version: 42, SHA256: sum}, "shoal-targets v1\ntargets-version 42\ntargets-sha256 " + hexSum + "\n"},
	} {
		rec, err := c.tg.Record()
		if err != nil {
			t.Fatal(err)
		}
		if string(rec) != c.want {
			t.Fatalf("record:\n%s\nwant:\n%s", rec, c.want)
		}
		if got, err := ParseTargets(rec); err != nil || got != c.tg {
			t.Fatalf("parse: %+v, %v", got, err)
		}
	}
	want := "shoal-targets v1\nchannel fleet-a/canary\ntargets-version 42\ntargets-sha256 " + hexSum + "\n"
	bad := map[string]string{
		"no final newline": strings.TrimSuffix(want, "\n"),
		"extra line":       want + "x\n",
		"leading zero":     strings.Replace(want, " 42\n", " 042\n", 1),
		"plus sign":        strings.Replace(want, " 42\n", " +42\n", 1),
		"version zero":     strings.Replace(want, " 42\n", " 0\n", 1),
		"upper-case hex":   strings.Replace(want, "0a0b", "0A0B", 1),
		"short hash":       strings.Replace(want, "1e1f\n", "1e\n", 1),
		"long hash":        strings.Replace(want, "1e1f\n", "1e1f00\n", 1),
		"space in channel": strings.Replace(want, "fleet-a", "fleet a", 1),
		"empty channel":    strings.Replace(want, "channel fleet-a/canary", "channel ", 1),
		"other header":     strings.Replace(want, "v1", "v2", 1),
		"swapped lines":    "shoal-targets v1\ntargets-version 42\nchannel fleet-a/canary\ntargets-sha256 " + hexSum + "\n",
		"hash first":       "shoal-targets v1\ntargets-sha256 " + hexSum + "\ntargets-version 42\n",
		"CRLF":             strings.ReplaceAll(want, "\n", "\r\n"),
	}
	for name, s := range bad {
		if _, err := ParseTargets([]byte(s)); !errors.Is(err, ErrMalformedRecord) {
			t.Errorf("%s: %v, want ErrMalformedRecord", name, err)
		}
	}
	for _, tg := range []Targets{{Channel: "a b", Version: 1}, {Channel: "ok", Version: 0}, {Channel: strings.Repeat("c", MaxChannelLen+1), Version: 1}} {
		if _, err := tg.Record(); !errors.Is(err, ErrMalformedRecord) {
			t.Errorf("Record(%+v): %v", tg, err)
		}
	}
}

// TestPublisher logs targets through the hook manifest's publish calls and
// finds them again from the bytes, as a device would.
func TestPublisher(t *testing.T) {
	ctx := context.Background()
	repo := t.TempDir()
	k := newTestKey(t, "shoal.test/log")
	pub := Publisher{Signer: k.signer}
	for v := int64(1); v <= 3; v++ {
		if err := pub.Append(ctx, repo, v, fmt.Appendf(nil, "targets %d", v)); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Append(ctx, repo, 2, []byte("targets 2")); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("logging the same targets twice: %v", err)
	}
	if err := pub.Append(ctx, repo, 0, []byte("x")); !errors.Is(err, ErrMalformedRecord) {
		t.Fatalf("version 0: %v", err)
	}
	r := NewReader(fetch.Dir(filepath.Join(repo, RepoDir)), k.verifiers)
	cp, err := r.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := TargetsOf("", 2, []byte("targets 2")).Record()
	if i, err := r.ProveInclusion(ctx, cp.Tree, rec); err != nil || i != 1 {
		t.Fatalf("targets 2: %d, %v", i, err)
	}
	// Other bytes under a logged version are an equivocation.
	if err := pub.Append(ctx, repo, 2, []byte("targets 2, for one device only")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Audit(ctx); !errors.Is(err, ErrEquivocation) {
		t.Fatalf("audit: %v, want ErrEquivocation", err)
	}
}

func TestBundleAndLookupEncoding(t *testing.T) {
	recs := [][]byte{[]byte("a"), bytes.Repeat([]byte("b"), 300), []byte("c\n")}
	b := encodeBundle(recs)
	got, err := decodeBundle(b, 3)
	if err != nil || len(got) != 3 || !bytes.Equal(got[1], recs[1]) {
		t.Fatalf("bundle round trip: %q, %v", got, err)
	}
	for name, c := range map[string]struct {
		data []byte
		w    int
	}{
		"too few":        {b, 4},
		"too many":       {b, 2},
		"truncated":      {b[:len(b)-1], 3},
		"half length":    {append(bytes.Clone(b), 0), 3},
		"empty entry":    {[]byte{0, 0}, 1},
		"width zero":     {nil, 0},
		"width too big":  {b, tileWidth + 1},
		"length too big": {[]byte{0xff, 0xff, 'x'}, 1},
	} {
		if _, err := decodeBundle(c.data, c.w); err == nil {
			t.Errorf("bundle %s accepted", name)
		}
	}

	h1, h2 := tlog.RecordHash([]byte("x")), tlog.RecordHash([]byte("x"))
	h2[31] ^= 1
	es := []lookupEntry{{h2, 9}, {h1, 3}}
	enc := encodeLookup(es)
	got2, err := decodeLookup(enc, h1[0])
	if err != nil || len(got2) != 2 || got2[0].Index != 3 && got2[0].Index != 9 {
		t.Fatalf("lookup round trip: %v, %v", got2, err)
	}
	line := strings.SplitAfter(string(enc), "\n")
	for name, s := range map[string]string{
		"unsorted":     line[1] + line[0],
		"repeated":     line[0] + line[0],
		"no newline":   strings.TrimSuffix(line[0], "\n"),
		"upper hex":    strings.ToUpper(line[0][:64]) + line[0][64:],
		"index sign":   line[0][:65] + "+3\n",
		"index zero":   line[0][:65] + "03\n",
		"wrong shard":  string(encodeLookup([]lookupEntry{{tlog.Hash{h1[0] + 1}, 1}})),
		"double space": line[0][:64] + "  3\n",
	} {
		if _, err := decodeLookup([]byte(s), h1[0]); err == nil {
			t.Errorf("lookup %s accepted", name)
		}
	}
}
