package updater

import (
	"context"
	"fmt"
	"sync"

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

// expandDeltas builds the chunks of jobs from their delta objects with
// p.Fetchers workers: fetch the object, check its length and digest
// against the signed entry, read its reference from the base, expand
// (which checks the chunk's ID) and write it at every position of its
// group. A delta that fails any step is refused, named with its source,
// and its group returned to be fetched whole; only a failed write into
// the target (or ctx ending) is an error. Each worker holds one
// reference (at most the delta index's max_ref) and one chunk.
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
	work := make(chan deltaJob)
	for range min(p.Fetchers, len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ref, out []byte
			for j := range work {
				i := j.g[0]
				did := dix.ID(j.e)
				name := fmt.Sprintf("delta %s for chunk %d from %s", did, i, dp.SourceName)
				obj, err := dp.Fetcher.Fetch(ctx, manifest.DeltaPath(did), int64(j.e.Size))
				if err != nil {
					if ctx.Err() != nil {
						continue // drain: the cause is returned below
					}
					refuse(j, fmt.Errorf("%s: %w", name, err))
					continue
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
	for _, j := range jobs {
		select {
		case work <- j:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return failed, nil
}

func (p *InstallPlan) logf(format string, args ...any) {
	if p.Log != nil {
		p.Log(format, args...)
	}
}
