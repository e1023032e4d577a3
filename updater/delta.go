package updater

import (
	"context"
	"fmt"
	"sync"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/chunker/delta"
	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
)

// DeltaPlan lets Install build new chunks from delta objects against the
// base release the device holds (docs/deltas.md) instead of fetching
// them whole.
type DeltaPlan struct {
	// Index is the delta index of (Base.Index, InstallPlan.Index), already
	// checked against its signed target. Install runs Index.Check against
	// both indexes before it uses an entry.
	Index *delta.Index
	// Base is the base image: the active slot and the index its bytes
	// were verified against when it was installed. Expansion reads the
	// deltas' reference ranges from it; every expanded chunk is checked
	// against its ID, so damaged base bytes cost a whole chunk, never a
	// bad install.
	Base LocalCopy
	// Fetcher serves the repository's delta objects (deltas/SHARD/CID):
	// a directory, an HTTP origin, a bundle.
	Fetcher fetch.Fetcher
	// SourceName names Fetcher in messages.
	SourceName string
}

// maxRefusals is how many refused deltas InstallStats.DeltaRefusals
// quotes; the count (DeltaFailed) covers them all.
const maxRefusals = 8

type deltaJob struct {
	g []int // positions of the target holding the chunk
	e delta.Entry
}

// splitDeltas takes out of remote the groups whose chunk has a delta in
// p.Deltas and returns them as jobs. A delta index that does not fit the
// pair of indexes is refused as a whole (noted in st, logged) and every
// chunk stays remote.
func splitDeltas(p *InstallPlan, remote [][]int, st *InstallStats) ([][]int, []deltaJob) {
	dp := p.Deltas
	if dp == nil || len(remote) == 0 {
		return remote, nil
	}
	ix := p.Index
	if err := dp.Index.Check(dp.Base.Index, ix); err != nil {
		st.noteDelta(fmt.Errorf("delta index from %s refused: %w", dp.SourceName, err))
		p.logf("%v; fetching whole chunks", err)
		return remote, nil
	}
	byDigest := make(map[chunker.Digest]delta.Entry, len(dp.Index.Entries))
	for _, e := range dp.Index.Entries {
		byDigest[ix.Chunks[e.Pos].Digest] = e
	}
	var whole [][]int
	var jobs []deltaJob
	for _, g := range remote {
		if e, ok := byDigest[ix.Chunks[g[0]].Digest]; ok {
			jobs = append(jobs, deltaJob{g, e})
		} else {
			whole = append(whole, g)
		}
	}
	return whole, jobs
}

// noteDelta counts a refused or failed delta and quotes the first few.
func (st *InstallStats) noteDelta(err error) {
	st.DeltaFailed++
	if len(st.DeltaRefusals) < maxRefusals {
		st.DeltaRefusals = append(st.DeltaRefusals, err.Error())
	}
}

// BulkDeltas is a delta Fetcher that delivers many delta objects at
// once, in the order it chooses: the swarm node, which trades them with
// its peers like chunks (have-bitmaps over the delta index, provider
// records per delta index). Install hands it the checked delta index and
// every delta it needs. FetchDeltas calls deliver for wanted objects as
// they arrive, from one goroutine at a time, with bytes it checked
// against their IDs (the buffer is the installer's after the call). It
// returns when each was delivered once, when deliver fails, or when ctx
// ends; a delta it did not deliver is fetched as a whole chunk.
type BulkDeltas interface {
	fetch.Fetcher
	FetchDeltas(ctx context.Context, ix *delta.Index, want []cid.Cid, deliver func(id cid.Cid, obj []byte) error) error
}

// deltaWork is one delta job for a worker, with its object when a
// BulkDeltas delivered it (nil: the worker fetches it).
type deltaWork struct {
	j   deltaJob
	obj []byte
}

// expandDeltas builds the chunks of jobs from their delta objects with
// p.Fetchers workers: fetch the object (or take it from a BulkDeltas),
// check its length and digest against the signed entry, read its
// reference from the base, expand (which checks the chunk's ID) and
// write it at every position of its group. A delta that fails any step
// is refused, named with its source, and its group returned to be fetched
// whole; only a failed write into the target (or ctx ending) is an error.
// Each worker holds one reference (at most the delta index's max_ref)
// and one chunk.
func expandDeltas(ctx context.Context, p InstallPlan, jobs []deltaJob, off []int64, st *InstallStats, report func(int64)) ([][]int, error) {
	if len(jobs) == 0 {
		return nil, nil
	}
	dp := p.Deltas
	dix, ix := dp.Index, p.Index
	lim := dix.Limits()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu     sync.Mutex
		failed [][]int
		wg     sync.WaitGroup
	)
	refuse := func(j deltaJob, err error) {
		mu.Lock()
		failed = append(failed, j.g)
		st.noteDelta(err)
		mu.Unlock()
		p.logf("%v; fetching the whole chunk instead", err)
	}
	work := make(chan deltaWork)
	for range min(p.Fetchers, len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ref, out []byte
			for w := range work {
				j, obj := w.j, w.obj
				i := j.g[0]
				did := dix.ID(j.e)
				name := fmt.Sprintf("delta %s for chunk %d from %s", did, i, dp.SourceName)
				if obj == nil {
					var err error
					obj, err = dp.Fetcher.Fetch(ctx, manifest.DeltaPath(did), int64(j.e.Size))
					if err != nil {
						if ctx.Err() != nil {
							continue // drain: the cause is returned below
						}
						refuse(j, fmt.Errorf("%s: %w", name, err))
						continue
					}
				}
				mu.Lock()
				st.DeltaBytes += int64(len(obj))
				mu.Unlock()
				if len(obj) != j.e.Size || dix.Hash.Sum(obj) != j.e.Digest {
					refuse(j, fmt.Errorf("%s: %w: %d bytes that do not hash to its ID (%d signed)", name, delta.ErrCorrupt, len(obj), j.e.Size))
					continue
				}
				h, _, err := delta.ParseHeader(obj, lim)
				if err == nil {
					ref, err = delta.ReadReference(ref, dp.Base.File, h.Ranges)
				}
				if err == nil {
					out, err = delta.Expand(out, ix.ID(i), obj, ref, lim)
				}
				if err != nil {
					refuse(j, fmt.Errorf("%s: %w", name, err))
					continue
				}
				for _, k := range j.g {
					if _, err := p.Target.WriteAt(out, off[k]); err != nil {
						cancel(fmt.Errorf("write chunk %d at offset %d of %s: %w", k, off[k], p.Target.Name(), err))
						break
					}
				}
				if ctx.Err() != nil {
					continue
				}
				mu.Lock()
				st.DeltaChunks++
				st.DeltaRawBytes += int64(len(out))
				st.DeltaRefBytes += int64(len(ref))
				mu.Unlock()
				report(int64(len(out)) * int64(len(j.g)))
				p.placed(j.g)
			}
		}()
	}
	if bulk, ok := dp.Fetcher.(BulkDeltas); ok {
		bulkDeltas(ctx, bulk, p, jobs, work, refuse)
	} else {
		for _, j := range jobs {
			select {
			case work <- deltaWork{j: j}:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				break
			}
		}
	}
	close(work)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return failed, nil
}

// bulkDeltas has bulk deliver the objects of jobs to the workers; the
// jobs it did not deliver are refused (fetched whole).
func bulkDeltas(ctx context.Context, bulk BulkDeltas, p InstallPlan, jobs []deltaJob, work chan<- deltaWork, refuse func(deltaJob, error)) {
	dix := p.Deltas.Index
	byID := make(map[cid.Cid]deltaJob, len(jobs))
	want := make([]cid.Cid, 0, len(jobs))
	for _, j := range jobs {
		id := dix.ID(j.e)
		if _, dup := byID[id]; dup {
			// Two chunks never share a delta (a delta builds one chunk),
			// but a hostile index could say so: the second goes whole.
			refuse(j, fmt.Errorf("delta %s for chunk %d: listed for a second chunk", id, j.g[0]))
			continue
		}
		byID[id] = j
		want = append(want, id)
	}
	err := bulk.FetchDeltas(ctx, dix, want, func(id cid.Cid, obj []byte) error {
		j, ok := byID[id]
		if !ok {
			return fmt.Errorf("delta %s was not asked for", id)
		}
		delete(byID, id)
		select {
		case work <- deltaWork{j: j, obj: obj}:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	})
	if ctx.Err() != nil {
		return
	}
	if err == nil {
		err = fmt.Errorf("not delivered")
	}
	for _, id := range want {
		j, ok := byID[id]
		if !ok {
			continue
		}
		refuse(j, fmt.Errorf("delta %s for chunk %d from %s: %w", dix.ID(j.e), j.g[0], p.Deltas.SourceName, err))
	}
}

func (p *InstallPlan) logf(format string, args ...any) {
	if p.Log != nil {
		p.Log(format, args...)
	}
}
