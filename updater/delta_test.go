package updater

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/chunker/delta"
	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
)

// deltaRepo is a repository's deltas/ area in memory; corrupt names the
// delta IDs it serves damaged.
type deltaRepo struct {
	mu      sync.Mutex
	objects map[string][]byte
	corrupt map[string]bool
	bytes   int64
}

func (r *deltaRepo) Fetch(ctx context.Context, p string, max int64) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.objects[p]
	if !ok {
		return nil, fmt.Errorf("%s: %w", p, fetch.ErrNotFound)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: %w", p, fetch.ErrTooLarge)
	}
	b = bytes.Clone(b)
	if r.corrupt[p] {
		b[len(b)-1] ^= 0x40
	}
	r.bytes += int64(len(b))
	return b, nil
}

// planDeltas makes the delta index of the fixture's pair and a repository
// holding its objects.
func planDeltas(t *testing.T, f *fixture) (*delta.Index, *deltaRepo) {
	t.Helper()
	repo := &deltaRepo{objects: map[string][]byte{}, corrupt: map[string]bool{}}
	dix, st, err := delta.Plan(context.Background(),
		delta.Image{Index: f.oldIx, Data: bytes.NewReader(f.old)}, delta.Image{Index: f.newIx, Data: bytes.NewReader(f.new)},
		delta.Options{Objects: func(e delta.Entry, obj []byte) error {
			repo.objects[manifest.DeltaPath(f.newIx.Hash.ID(e.Digest))] = bytes.Clone(obj)
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if st.Deltas < 2 {
		t.Fatalf("the fixture's pair gives %d deltas; the tests need several", st.Deltas)
	}
	return dix, repo
}

func (f *fixture) deltaPlan(dix *delta.Index, repo fetch.Fetcher, base io.ReaderAt) *DeltaPlan {
	return &DeltaPlan{Index: dix, Base: LocalCopy{File: base, Index: f.oldIx}, Fetcher: repo, SourceName: "test deltas"}
}

func TestInstallFromDeltas(t *testing.T) {
	f := setup(t, 2<<20)
	dix, repo := planDeltas(t, f)
	src := newMemSource(f.new)
	p := f.plan(src)
	p.Deltas = f.deltaPlan(dix, repo, f.active)
	var placed int64
	p.Progress = func(done, total int64) { placed = done }
	st, err := Install(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	f.check(t)
	if st.DeltaChunks != len(dix.Entries) || st.DeltaFailed != 0 || st.DeltaBytes != repo.bytes {
		t.Fatalf("stats %+v; delta index has %d entries, repository served %d bytes", st, len(dix.Entries), repo.bytes)
	}
	// The chunks without a delta came whole, nothing else did.
	if st.FetchedBytes+st.DeltaRawBytes != f.newBytes || src.bytes != st.FetchedBytes {
		t.Fatalf("fetched %d + from deltas %d, want the new bytes %d; source served %d", st.FetchedBytes, st.DeltaRawBytes, f.newBytes, src.bytes)
	}
	if st.DeltaBytes*4 > st.DeltaRawBytes || st.DeltaRefBytes == 0 {
		t.Fatalf("deltas of %d bytes for %d bytes of chunks (%d of reference)", st.DeltaBytes, st.DeltaRawBytes, st.DeltaRefBytes)
	}
	if placed != int64(len(f.new)) {
		t.Fatalf("progress ended at %d of %d", placed, len(f.new))
	}
}

// damagedReader flips a bit in every byte range it reads.
type damagedReader struct{ r io.ReaderAt }

func (d damagedReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := d.r.ReadAt(p, off)
	for i := 0; i < n; i += 512 {
		p[i] ^= 1
	}
	return n, err
}

// Every way a delta can fail costs a whole chunk, named, never the install.
func TestInstallRefusesBadDeltas(t *testing.T) {
	cases := []struct {
		name string
		// edit returns the delta plan's base and marks damaged objects.
		edit    func(f *fixture, dix *delta.Index, repo *deltaRepo) io.ReaderAt
		refused int // -1: all
		want    error
		msg     string
	}{
		{"object corrupt", func(f *fixture, dix *delta.Index, repo *deltaRepo) io.ReaderAt {
			repo.corrupt[manifest.DeltaPath(dix.ID(dix.Entries[1]))] = true
			return f.active
		}, 1, delta.ErrCorrupt, "do not hash"},
		{"object missing", func(f *fixture, dix *delta.Index, repo *deltaRepo) io.ReaderAt {
			delete(repo.objects, manifest.DeltaPath(dix.ID(dix.Entries[0])))
			return f.active
		}, 1, fetch.ErrNotFound, ""},
		{"base bytes damaged", func(f *fixture, dix *delta.Index, repo *deltaRepo) io.ReaderAt {
			return damagedReader{f.active}
		}, -1, delta.ErrCorrupt, "hash to"},
		{"base shorter than its ranges", func(f *fixture, dix *delta.Index, repo *deltaRepo) io.ReaderAt {
			return io.NewSectionReader(f.active, 0, 1024)
		}, -1, delta.ErrBadRange, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := setup(t, 1<<20)
			dix, repo := planDeltas(t, f)
			base := c.edit(f, dix, repo)
			src := newMemSource(f.new)
			p := f.plan(src)
			p.Deltas = f.deltaPlan(dix, repo, base)
			var logged []string
			var mu sync.Mutex
			p.Log = func(format string, args ...any) {
				mu.Lock()
				logged = append(logged, fmt.Sprintf(format, args...))
				mu.Unlock()
			}
			st, err := Install(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			f.check(t)
			want := c.refused
			if want < 0 {
				want = len(dix.Entries)
			}
			if st.DeltaFailed != want || st.DeltaChunks != len(dix.Entries)-want || len(st.DeltaRefusals) != min(want, maxRefusals) {
				t.Fatalf("refused %d, built %d (%d entries): %+v", st.DeltaFailed, st.DeltaChunks, len(dix.Entries), st)
			}
			if st.FetchedBytes+st.DeltaRawBytes != f.newBytes {
				t.Fatalf("fetched %d + from deltas %d, want the new bytes %d", st.FetchedBytes, st.DeltaRawBytes, f.newBytes)
			}
			r := st.DeltaRefusals[0]
			if !strings.Contains(r, "test deltas") || !strings.Contains(r, "delta bafk") || !strings.Contains(r, c.msg) || len(logged) != want {
				t.Fatalf("refusal %q, log %q: want the delta and its source named", r, logged)
			}
		})
	}
	// The refusals wrap the sentinels (checked once, on a direct call).
	f := setup(t, 1<<20)
	dix, repo := planDeltas(t, f)
	for p := range repo.objects {
		repo.corrupt[p] = true
	}
	jobs := []deltaJob{{g: []int{int(dix.Entries[0].Pos)}, e: dix.Entries[0]}}
	p := f.plan(nil)
	p.Fetchers = 1
	p.Deltas = f.deltaPlan(dix, repo, f.active)
	var st InstallStats
	failed, err := expandDeltas(context.Background(), p, jobs, f.newIx.Offsets(), &st, func(int64) {})
	if err != nil || len(failed) != 1 || st.DeltaFailed != 1 {
		t.Fatalf("failed %v, %v, %+v", failed, err, st)
	}
}

// A delta index made for another pair is refused as a whole: every new
// chunk comes whole.
func TestInstallDeltaIndexForAnotherPair(t *testing.T) {
	f := setup(t, 1<<20)
	dix, repo := planDeltas(t, f)
	other := *dix
	other.Base[0] ^= 1
	src := newMemSource(f.new)
	p := f.plan(src)
	p.Deltas = f.deltaPlan(&other, repo, f.active)
	st, err := Install(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	f.check(t)
	if st.DeltaChunks != 0 || st.DeltaFailed != 1 || !errors.Is(dix.Check(f.oldIx, f.oldIx), delta.ErrMalformedIndex) ||
		!strings.Contains(st.DeltaRefusals[0], "base") || st.FetchedBytes != f.newBytes || repo.bytes != 0 {
		t.Fatalf("stats %+v, delta repository served %d", st, repo.bytes)
	}
}

// With a BulkSource (the swarm), deltas still build what they cover and
// the source gets the rest, refused deltas' chunks included.
func TestInstallDeltasBesideBulkSource(t *testing.T) {
	f := setup(t, 2<<20)
	dix, repo := planDeltas(t, f)
	repo.corrupt[manifest.DeltaPath(dix.ID(dix.Entries[0]))] = true
	src := &bulkSource{memSource: newMemSource(f.new)}
	p := f.plan(src)
	p.Deltas = f.deltaPlan(dix, repo, f.active)
	st, err := Install(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	f.check(t)
	if st.DeltaChunks != len(dix.Entries)-1 || st.DeltaFailed != 1 || st.FetchedBytes+st.DeltaRawBytes != f.newBytes {
		t.Fatalf("stats %+v", st)
	}
	var refusedChunk chunker.Digest = f.newIx.Chunks[dix.Entries[0].Pos].Digest
	if src.delivered[f.newIx.Hash.ID(refusedChunk)] != 1 {
		t.Fatal("the refused delta's chunk did not come from the bulk source")
	}
}

// bulkDeltaRepo is a BulkDeltas over a deltaRepo that delivers only the
// deltas not in withhold, in reverse order, and counts single fetches.
type bulkDeltaRepo struct {
	*deltaRepo
	withhold map[string]bool
	asked    []string
	singles  int
}

func (b *bulkDeltaRepo) Fetch(ctx context.Context, p string, max int64) ([]byte, error) {
	b.singles++
	return b.deltaRepo.Fetch(ctx, p, max)
}

func (b *bulkDeltaRepo) FetchDeltas(ctx context.Context, dix *delta.Index, want []cid.Cid, deliver func(cid.Cid, []byte) error) error {
	for i := len(want) - 1; i >= 0; i-- {
		p := manifest.DeltaPath(want[i])
		b.asked = append(b.asked, p)
		if b.withhold[p] {
			continue
		}
		obj, err := b.deltaRepo.Fetch(ctx, p, 1<<30)
		if err != nil {
			return err
		}
		if err := deliver(want[i], obj); err != nil {
			return err
		}
	}
	return nil
}

// A BulkDeltas (the swarm node) is handed every delta at once and never
// asked for one alone; what it does not deliver, and what it delivers
// damaged, is fetched whole.
func TestInstallFromBulkDeltas(t *testing.T) {
	f := setup(t, 2<<20)
	dix, repo := planDeltas(t, f)
	first, second := manifest.DeltaPath(dix.ID(dix.Entries[0])), manifest.DeltaPath(dix.ID(dix.Entries[1]))
	repo.corrupt[second] = true
	bd := &bulkDeltaRepo{deltaRepo: repo, withhold: map[string]bool{first: true}}
	src := newMemSource(f.new)
	p := f.plan(src)
	p.Deltas = f.deltaPlan(dix, bd, f.active)
	st, err := Install(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	f.check(t)
	if len(bd.asked) != len(dix.Entries) || bd.singles != 0 {
		t.Fatalf("asked for %d deltas in bulk (of %d) and %d alone", len(bd.asked), len(dix.Entries), bd.singles)
	}
	if st.DeltaChunks != len(dix.Entries)-2 || st.DeltaFailed != 2 || st.FetchedBytes+st.DeltaRawBytes != f.newBytes {
		t.Fatalf("stats %+v", st)
	}
	if !strings.Contains(strings.Join(st.DeltaRefusals, "\n"), "not delivered") {
		t.Fatalf("refusals do not name the undelivered delta: %q", st.DeltaRefusals)
	}
}
