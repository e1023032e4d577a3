package bundle

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/internal/atomicfile"
	"github.com/shoalnet/shoal/manifest"
)

// maxRootVersions bounds the root versions Create copies.
const maxRootVersions = 1024

// CreateOptions configure [Create].
type CreateOptions struct {
	// Repo is the repository: a directory or an http(s) URL.
	Repo string
	// Fetcher, if set, reads the repository instead of Repo.
	Fetcher fetch.Fetcher
	// Channel whose newest release the bundle carries.
	Channel string
	// Version, if not 0, must be the channel's newest release: a device
	// always picks the newest release the signed metadata offers, so a
	// bundle of any other one would not install. Scripts set it to make
	// sure the repository did not move on.
	Version uint64
	// From, if not 0, is a release of the channel that the target devices
	// run: its chunks are left out (its indexes stay in, so the bundle can
	// be checked on its own). Where the repository has a delta index from
	// From for an artifact, the bundle carries it and its delta objects
	// instead of the chunks they build (unless NoDeltas); such a bundle
	// serves only devices whose active slot holds From.
	From uint64
	// NoDeltas, with From, leaves out the delta indexes and delta objects
	// the repository has from release From: every chunk release From
	// lacks goes in whole, as in a bundle from before deltas.
	NoDeltas bool
	// Out is the bundle file to write; it is replaced atomically.
	Out string
	// NoLog leaves the transparency log out even when the repository has
	// one (devices that demand log proofs will refuse such a bundle).
	NoLog bool
	// Workers fetch and check chunks in parallel; 0: 2*GOMAXPROCS (at
	// least 4), which also hides HTTP latency.
	Workers int
	// Progress, if set, is called after each chunk is written with the
	// decoded bytes written so far and in all.
	Progress func(done, total int64)
}

// Result reports what Create wrote.
type Result struct {
	Info          Info
	Path          string
	Bytes         int64 // size of the bundle file
	Chunks        int   // chunk objects in the bundle
	ChunkBytes    int64 // their stored (compressed) bytes
	RawBytes      int64 // their decoded bytes
	SkippedChunks int   // chunks of the release left out because release From has them
	ReleaseChunks int   // distinct chunks of the release
	// Deltas (with From, when the repository has delta indexes from it):
	// the delta indexes and objects written, the raw bytes of the chunks
	// they build, and the chunks left out because of them.
	DeltaIndexes     int
	DeltaIndexBytes  int64
	Deltas           int
	DeltaBytes       int64
	DeltaRawBytes    int64
	ReplacedChunks   int
	ReplacedRawBytes int64
	// DeltaNotes say why an artifact with a delta target from release From
	// goes whole (the repository lists the delta index but lacks its file).
	DeltaNotes     []string
	LogTreeSize    int64 // entries of the log included (0: no log)
	LogEntry       int64 // index of the targets version's record in the log
	MetadataFiles  int
	LogFiles       int
	IndexFiles     int
	TargetsVersion int64
}

// Create writes a bundle of a channel's newest release (see
// CreateOptions). It checks what it copies as it goes: metadata files
// against the lengths and hashes their parents give, indexes against
// their signed targets, chunk objects against their IDs, log tiles
// against the checkpoint's tree. Signatures are left to [Verify], which
// needs the trusted root.
func Create(ctx context.Context, o CreateOptions) (*Result, error) {
	if !manifest.ValidName(o.Channel) {
		return nil, fmt.Errorf("bundle: channel %q is not a valid name", o.Channel)
	}
	if o.Out == "" {
		return nil, errors.New("bundle: no output file")
	}
	if o.Version != 0 && o.From >= o.Version {
		return nil, fmt.Errorf("bundle: from version %d is not below version %d", o.From, o.Version)
	}
	if o.Workers <= 0 {
		o.Workers = max(4, 2*runtime.GOMAXPROCS(0))
	}
	f := o.Fetcher
	if f == nil {
		var err error
		if f, err = fetch.New(o.Repo); err != nil {
			return nil, err
		}
	}
	res := &Result{Path: o.Out}

	set, err := manifest.CollectMetadata(ctx, f, maxRootVersions)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	files := set.Files
	targets := struct {
		version int64
		data    []byte
	}{set.TargetsVersion, set.Targets}
	res.TargetsVersion = targets.version
	rs, err := releasesOf(targets.data, o.Channel)
	if err != nil {
		return nil, fmt.Errorf("metadata/%d.targets.json: %w", targets.version, err)
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("bundle: %w: targets version %d lists no release on channel %s", manifest.ErrWrongChannel, targets.version, o.Channel)
	}
	rel := rs[0]
	if o.Version != 0 && o.Version != rel.Version {
		if find(rs, o.Version) == nil {
			return nil, fmt.Errorf("bundle: release %s/%d is not listed in targets version %d (newest: %d)", o.Channel, o.Version, targets.version, rel.Version)
		}
		return nil, fmt.Errorf("bundle: release %s/%d is not the channel's newest (%d); devices would pick %d, so only it can be bundled", o.Channel, o.Version, rel.Version, rel.Version)
	}
	var from *release
	if o.From != 0 {
		if o.From >= rel.Version {
			return nil, fmt.Errorf("bundle: from version %d is not below the release, %d", o.From, rel.Version)
		}
		if from = find(rs, o.From); from == nil {
			return nil, fmt.Errorf("bundle: release %s/%d is not listed in targets version %d (a publish keeps only the newest releases of each channel)", o.Channel, o.From, targets.version)
		}
	}

	// Indexes, and the chunks they list.
	arts := make([]artifactPlan, len(rel.Artifacts))
	for i, a := range rel.Artifacts {
		ix, b, err := fetchIndex(ctx, f, a)
		if err != nil {
			return nil, fmt.Errorf("release %s/%d artifact %s: %w", o.Channel, rel.Version, a.Name, err)
		}
		files[manifest.IndexPath(a.Index)] = b
		arts[i] = artifactPlan{ix: ix, name: a.Name}
	}
	var fromIxs []*chunker.Index
	fromByName := map[string]*chunker.Index{}
	if from != nil {
		for _, a := range from.Artifacts {
			ix, b, err := fetchIndex(ctx, f, a)
			if err != nil {
				return nil, fmt.Errorf("release %s/%d artifact %s: %w", o.Channel, from.Version, a.Name, err)
			}
			files[manifest.IndexPath(a.Index)] = b
			fromIxs = append(fromIxs, ix)
			fromByName[a.Name] = ix
		}
	}
	var deltaRefs []DeltaRef
	if from != nil && !o.NoDeltas {
		if deltaRefs, err = addDeltaIndexes(ctx, f, targets.data, rel, from, arts, fromByName, files, res); err != nil {
			return nil, err
		}
	}
	objs := planObjects(arts, fromIxs)
	res.ReleaseChunks, res.SkippedChunks, res.ReplacedChunks = objs.releaseChunks, objs.skipped, objs.replaced
	res.ReplacedRawBytes = objs.replacedRaw

	if !o.NoLog {
		lg, err := collectLog(ctx, f, targets.version, targets.data)
		if err != nil {
			return nil, err
		}
		if lg != nil {
			for p, b := range lg.files {
				files[p] = b
			}
			res.LogTreeSize, res.LogEntry = lg.tree.N, lg.index
		}
	}

	info := Info{
		Format: FormatVersion, Channel: o.Channel, Version: rel.Version, From: o.From,
		TargetsVersion: targets.version, Artifacts: refsOf(rel), Deltas: deltaRefs,
	}
	if len(deltaRefs) > 0 {
		info.Format = FormatDeltas
	}
	if from != nil {
		info.FromArtifacts = refsOf(from)
	}
	var others []string
	for p := range files {
		others = append(others, p)
		k, _, err := classify(p)
		if err != nil {
			return nil, fmt.Errorf("bundle: internal error: %v", err)
		}
		switch k {
		case kindMetadata:
			info.Counts.Metadata++
		case kindLog:
			info.Counts.Log++
		case kindIndex:
			info.Counts.Index++
		case kindDeltaIndex:
			info.Counts.DeltaIndexes++
		}
	}
	sort.Strings(others)
	objects := objs.paths()
	total := objs.rawBytes()
	info.Counts.Chunks, info.Counts.Deltas = len(objs.chunks), len(objs.deltas)
	res.Info = info
	res.MetadataFiles, res.LogFiles, res.IndexFiles = info.Counts.Metadata, info.Counts.Log, info.Counts.Index
	infoJSON, err := json.Marshal(info)
	if err != nil {
		return nil, err
	}

	err = atomicfile.Write(o.Out, 0o644, func(w io.Writer) error {
		cw := &countWriter{w: w}
		bw := bufio.NewWriterSize(cw, 1<<20)
		tw := newTarWriter(bw)
		if err := tw.add(InfoPath, infoJSON); err != nil {
			return err
		}
		// Entries go out in path order; chunks are fetched and checked in
		// parallel and merged in.
		k := 0
		flushBefore := func(p string) error {
			for ; k < len(others) && (p == "" || others[k] < p); k++ {
				if err := tw.add(others[k], files[others[k]]); err != nil {
					return err
				}
			}
			return nil
		}
		err := runOrdered(ctx, len(objects), o.Workers, func(ctx context.Context, i int) (checked, error) {
			return objs.checkObject(ctx, f, objects[i])
		}, func(i int, c checked) error {
			if err := flushBefore(objects[i]); err != nil {
				return err
			}
			if err := tw.add(objects[i], c.obj); err != nil {
				return err
			}
			if c.delta {
				res.Deltas++
				res.DeltaBytes += int64(len(c.obj))
				res.DeltaRawBytes += int64(c.raw)
			} else {
				res.Chunks++
				res.ChunkBytes += int64(len(c.obj))
				res.RawBytes += int64(c.raw)
			}
			if o.Progress != nil {
				o.Progress(res.RawBytes+res.DeltaRawBytes, total)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := flushBefore(""); err != nil {
			return err
		}
		if err := tw.close(); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		res.Bytes = cw.n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", o.Out, err)
	}
	return res, nil
}

// addDeltaIndexes finds, for each artifact of rel, the signed delta
// target from release from, fetches and checks its delta index (signed
// length and sha256, content ID, and that it joins from's index of the
// artifact to rel's), adds its bytes to files and records it in arts. A
// delta index the repository lists but does not hold (a mirror that copied
// only chunks/) leaves that artifact whole, noted in res; any other
// failure is an error, since devices would fail on the same bytes.
func addDeltaIndexes(ctx context.Context, f fetch.Fetcher, targetsJSON []byte, rel, from *release, arts []artifactPlan, fromByName map[string]*chunker.Index, files map[string][]byte, res *Result) ([]DeltaRef, error) {
	tm, err := targetsMap(targetsJSON)
	if err != nil {
		return nil, err
	}
	var refs []DeltaRef
	for i, a := range rel.Artifacts {
		dt, ok, err := manifest.LookupDeltaTarget(tm, rel.Channel, rel.Version, a.Name, from.Version)
		if err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
		if !ok {
			continue
		}
		base := fromByName[a.Name]
		if base == nil || !dt.BaseIndex.Equals(base.CID()) || !dt.Index.Equals(a.Index) {
			return nil, fmt.Errorf("bundle: delta target %s: %w: it joins index %s to %s, not release %d's index of %s to release %d's",
				dt.Path, manifest.ErrBadMetadata, dt.BaseIndex, dt.Index, from.Version, a.Name, rel.Version)
		}
		dix, b, err := deltaIndexFor(ctx, f, dt, base, arts[i].ix)
		if errors.Is(err, fetch.ErrNotFound) {
			res.DeltaNotes = append(res.DeltaNotes, fmt.Sprintf("%s: the repository does not hold %s; its chunks go whole", a.Name, manifest.DeltaIndexPath(dt.DeltaIndex)))
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("bundle: release %s/%d artifact %s: %w", rel.Channel, rel.Version, a.Name, err)
		}
		files[manifest.DeltaIndexPath(dt.DeltaIndex)] = b
		arts[i].dix = dix
		refs = append(refs, DeltaRef{Artifact: a.Name, DeltaIndex: dt.DeltaIndex.String()})
		res.DeltaIndexes++
		res.DeltaIndexBytes += int64(len(b))
	}
	return refs, nil
}

func chunkName(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

func fetchIndex(ctx context.Context, f fetch.Fetcher, a artifact) (*chunker.Index, []byte, error) {
	p := manifest.IndexPath(a.Index)
	if a.Target.Length <= 0 || a.Target.Length > manifest.DefaultLimits.Index {
		return nil, nil, fmt.Errorf("%s: %w: signed length %d (limit %d)", p, manifest.ErrTooLarge, a.Target.Length, manifest.DefaultLimits.Index)
	}
	b, err := f.Fetch(ctx, p, a.Target.Length)
	if err != nil {
		return nil, nil, err
	}
	if err := a.Target.VerifyLengthHashes(b); err != nil {
		return nil, nil, fmt.Errorf("%s: %w: %v", p, manifest.ErrIndexHash, err)
	}
	ix, err := chunker.DecodeIndex(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", p, err)
	}
	if got := ix.CID(); !got.Equals(a.Index) {
		return nil, nil, fmt.Errorf("%s: %w: content ID is %s", p, manifest.ErrIndexHash, got)
	}
	return ix, b, nil
}

// idOfChunkPath returns the ID a chunk path names.
func idOfChunkPath(p string) (cid.Cid, error) { return parseID(chunkName(p)) }
