package bundle

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"time"

	sumtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/manifest/tlog"
)

// VerifyOptions configure [Verify].
type VerifyOptions struct {
	// Root is the trusted root.json devices are provisioned with.
	Root []byte
	// State is a device's trust state (see manifest.ClientConfig); nil:
	// none, as for a device that was just provisioned.
	State manifest.StateStore
	// StateDir, if State is nil, sets it to manifest.DirState(StateDir).
	StateDir string
	// Device is the device to check for. Empty fields are filled in: the
	// bundle's channel; the first hardware and arch the release names; as
	// installed version, release From (or, for a full bundle, the
	// release's minimum installed version).
	Device manifest.Device
	// LogKeys are the transparency log's verifier keys. With them, a
	// bundle that carries a log is checked by manifest.LogWitness, as a
	// device requiring the log checks it: the checkpoint must be signed by
	// one of them and consistent with the checkpoint remembered in
	// State (which is then updated). Without, the log is checked for
	// consistency only.
	LogKeys []string
	// RequireLog makes a bundle without a log (or a targets version not in
	// it) an error; it needs LogKeys.
	RequireLog bool
	// Witness is passed to manifest.Client (the hook a device's log check
	// plugs into), after the LogKeys witness when both are set.
	Witness manifest.TargetsWitness
	// Now is the clock for metadata expiry; nil: time.Now.
	Now func() time.Time
	// Workers decode chunks in parallel; 0: GOMAXPROCS.
	Workers int
	// Progress, if set, is called after each chunk is checked with the
	// decoded bytes checked so far and in all.
	Progress func(done, total int64)
}

// VerifyResult reports a verified bundle.
type VerifyResult struct {
	Info     Info
	Verified *manifest.Verified // the release as manifest.Client verified it
	Device   manifest.Device    // the device it was checked for
	Entries  int                // entries after bundle.json
	// Chunks the bundle holds, all checked; SkippedChunks are the
	// release's chunks a device holding release From has.
	Chunks        int
	SkippedChunks int
	ChunkBytes    int64
	RawBytes      int64
	// Deltas the bundle holds, each checked against its signed entry;
	// DeltaRawBytes the chunks they build; ReplacedChunks the chunks left
	// out because of them.
	Deltas         int
	DeltaBytes     int64
	DeltaRawBytes  int64
	ReplacedChunks int
	// Log is set when the bundle carries a transparency log.
	Log *LogProof
}

// LogProof reports the log check.
type LogProof struct {
	TreeSize int64 // entries in the checkpoint's tree
	Entry    int64 // the targets record's index
	Signed   bool  // the checkpoint was checked against LogKeys
}

// Verify checks the bundle at path completely and without network (see
// [Reader.Verify]).
func Verify(ctx context.Context, path string, o VerifyOptions) (*VerifyResult, error) {
	r, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return r.Verify(ctx, o)
}

// Verify checks the bundle the way a device would use it, and more:
//
//  1. manifest.Client verifies the TUF chain from o.Root through the
//     bundle's metadata, picks the channel's newest release, checks it
//     against the device and fetches and checks its indexes;
//  2. bundle.json must describe that release and that targets version;
//  3. release From's indexes must be in the bundle and match the signed
//     targets, and so must each delta index bundle.json names (the signed
//     delta target from release From of its artifact, joining the two
//     indexes);
//  4. every chunk of the release that release From lacks and no delta
//     replaces must be in the bundle, every delta object those delta
//     indexes list for such a chunk too, and nothing else may be: no extra
//     metadata, index, chunk, delta or log file;
//  5. with a log: the targets record is proven in the checkpoint's tree
//     (with LogKeys by manifest.LogWitness inside step 1, exactly as a
//     device requiring the log proves it), its entry bundle holds it, and
//     every tile is authentic;
//  6. every chunk object decodes and hashes to its ID; every delta object
//     hashes to its signed entry and has a header within its delta
//     index's limits (expanding it needs release From's image, which only
//     a device holds; the device checks each chunk it builds).
//
// A bundle made with From is checked for a device running release From
// (the default); for any other device it fails with ErrNeedsFrom.
//
// The first problem found is returned, naming the entry.
func (r *Reader) Verify(ctx context.Context, o VerifyOptions) (*VerifyResult, error) {
	if len(o.Root) == 0 {
		return nil, errors.New("bundle verify: no trusted root")
	}
	if o.RequireLog && len(o.LogKeys) == 0 {
		return nil, errors.New("bundle verify: requiring the log needs the log's verifier keys")
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.State != nil && o.StateDir != "" {
		return nil, errors.New("bundle verify: both State and StateDir set")
	}
	state := o.State
	if state == nil {
		state = manifest.StateIn(o.StateDir)
	}
	info := r.info
	fail := func(err error) (*VerifyResult, error) {
		return nil, fmt.Errorf("bundle %s: %w", r.name, err)
	}
	dev := r.device(ctx, o.Device)
	if info.From != 0 && dev.Installed != info.From {
		// The bundle lacks the chunks release From holds (and, with
		// deltas, those its deltas build): that device could not install
		// it, whatever else checks.
		return fail(fmt.Errorf("%w: the bundle was made with --from %d, for devices running release %d; the device checked for runs %d and would miss chunks (a full bundle serves it)",
			ErrNeedsFrom, info.From, info.From, dev.Installed))
	}
	cpPath := logPrefix + tlog.CheckpointPath
	_, hasLog := r.entries[cpPath]
	if o.RequireLog && !hasLog {
		return fail(fmt.Errorf("%w: %s: the transparency log is required", ErrMissing, cpPath))
	}
	// With the log's keys the log is checked the way a device checks it,
	// inside the client, before any metadata is trusted.
	var lw *manifest.LogWitness
	ws := witnesses{}
	if hasLog && len(o.LogKeys) > 0 {
		w, err := manifest.NewLogWitness(o.LogKeys, state)
		if err != nil {
			return nil, err
		}
		lw = w
		ws = append(ws, lw)
	}
	if o.Witness != nil {
		ws = append(ws, o.Witness)
	}
	var witness manifest.TargetsWitness
	if len(ws) > 0 {
		witness = ws
	}
	client, err := manifest.NewClient(manifest.ClientConfig{
		TrustedRoot: o.Root, State: state, Mirrors: []fetch.Fetcher{r},
		Now: o.Now, Witness: witness,
	})
	if err != nil {
		return nil, err
	}
	v, err := client.Verify(ctx, dev)
	if err != nil {
		return fail(err)
	}
	res := &VerifyResult{Info: info, Verified: v, Device: dev, Entries: len(r.paths)}

	// bundle.json against the signed release.
	rel := v.Release
	switch {
	case rel.Channel != info.Channel || rel.Version != info.Version:
		return fail(fmt.Errorf("%w: %s names release %s/%d, the signed metadata offers %s/%d", ErrMalformed, InfoPath, info.Channel, info.Version, rel.Channel, rel.Version))
	case v.TargetsVersion != info.TargetsVersion:
		return fail(fmt.Errorf("%w: %s names targets version %d, the bundle's metadata is at %d", ErrMalformed, InfoPath, info.TargetsVersion, v.TargetsVersion))
	}
	rs, err := releasesOf(v.Targets, rel.Channel)
	if err != nil {
		return fail(err)
	}
	if err := sameRefs("artifacts", info.Artifacts, find(rs, rel.Version)); err != nil {
		return fail(err)
	}

	expected := map[string]bool{}
	for k := int64(1); k <= v.RootVersion; k++ {
		expected["metadata/"+strconv.FormatInt(k, 10)+".root.json"] = true
	}
	expected["metadata/root.json"] = true
	expected["metadata/timestamp.json"] = true
	expected["metadata/"+strconv.FormatInt(v.SnapshotVersion, 10)+".snapshot.json"] = true
	expected["metadata/"+strconv.FormatInt(v.TargetsVersion, 10)+".targets.json"] = true
	if err := r.checkRootCopy(ctx, v.RootVersion); err != nil {
		return fail(err)
	}

	arts := make([]artifactPlan, len(v.Indexes))
	for i, ix := range v.Indexes {
		expected[manifest.IndexPath(rel.Artifacts[i].Index)] = true
		arts[i] = artifactPlan{ix: ix, name: rel.Artifacts[i].Name}
	}
	var fromIxs []*chunker.Index
	fromByName := map[string]*chunker.Index{}
	if info.From != 0 {
		from := find(rs, info.From)
		if from == nil {
			return fail(fmt.Errorf("%w: %s names release %s/%d as from, which targets version %d does not list", ErrMalformed, InfoPath, info.Channel, info.From, v.TargetsVersion))
		}
		if err := sameRefs("from_artifacts", info.FromArtifacts, from); err != nil {
			return fail(err)
		}
		for _, a := range from.Artifacts {
			ix, _, err := fetchIndex(ctx, r, a)
			if errors.Is(err, fetch.ErrNotFound) {
				err = fmt.Errorf("%w: %s (index of %s in release %d)", ErrMissing, manifest.IndexPath(a.Index), a.Name, from.Version)
			}
			if err != nil {
				return fail(err)
			}
			expected[manifest.IndexPath(a.Index)] = true
			fromIxs = append(fromIxs, ix)
			fromByName[a.Name] = ix
		}
	}
	if err := r.verifyDeltaIndexes(ctx, v, arts, fromByName, expected); err != nil {
		return fail(err)
	}
	objs := planObjects(arts, fromIxs)
	res.SkippedChunks, res.ReplacedChunks = objs.skipped, objs.replaced
	objects := objs.paths()
	total := objs.rawBytes()
	for _, p := range objects {
		expected[p] = true
		if _, ok := r.entries[p]; ok {
			continue
		}
		if _, isDelta := objs.deltas[p]; isDelta {
			return fail(fmt.Errorf("%w: %s, a delta object of release %s/%d from %d", ErrMissing, p, rel.Channel, rel.Version, info.From))
		}
		return fail(fmt.Errorf("%w: %s, a chunk of release %s/%d%s", ErrMissing, p, rel.Channel, rel.Version, fromNote(info.From)))
	}

	// The log: the inclusion proof (the witness made it when it had the
	// keys), then what a bundle must carry beyond it.
	if hasLog {
		record, err := targetsRecord(v.TargetsVersion, v.Targets)
		if err != nil {
			return fail(err)
		}
		lf := fetch.Sub(r, tlog.RepoDir)
		var (
			tree sumtlog.Tree
			idx  int64
		)
		if lw != nil {
			p, ok := lw.Proof(v.TargetsVersion, v.Targets)
			if !ok {
				return fail(fmt.Errorf("transparency log: targets version %d: %w: the witness holds no proof", v.TargetsVersion, tlog.ErrNotFound))
			}
			tree, idx = p.Tree, p.Entry
		} else {
			msg, err := r.Fetch(ctx, cpPath, tlog.MaxCheckpointSize)
			if err != nil {
				return fail(err)
			}
			tree, idx, err = proveUnsigned(ctx, lf, msg, record)
			if err != nil {
				return fail(logErr(v.TargetsVersion, err))
			}
		}
		ls, err := sliceLog(ctx, lf, tree, record, idx)
		if err != nil {
			return fail(logErr(v.TargetsVersion, err))
		}
		for p := range ls.files {
			expected[p] = true
		}
		res.Log = &LogProof{TreeSize: ls.tree.N, Entry: ls.index, Signed: lw != nil}
	}

	for _, p := range r.paths {
		if !expected[p] {
			return fail(fmt.Errorf("%w: %s: not needed by release %s/%d%s", ErrExtra, p, rel.Channel, rel.Version, fromNote(info.From)))
		}
	}

	// Every chunk, decoded and hashed; every delta object hashed against
	// its signed entry.
	err = runOrdered(ctx, len(objects), o.Workers, func(ctx context.Context, i int) (checked, error) {
		c, err := objs.checkObject(ctx, r, objects[i])
		c.obj = nil // only its length is reported; do not queue the bytes
		return c, err
	}, func(i int, c checked) error {
		if c.delta {
			res.Deltas++
			res.DeltaRawBytes += int64(c.raw)
			n, _ := r.Has(objects[i])
			res.DeltaBytes += n
		} else {
			res.Chunks++
			n, _ := r.Has(objects[i])
			res.ChunkBytes += n
			res.RawBytes += int64(c.raw)
		}
		if o.Progress != nil {
			o.Progress(res.RawBytes+res.DeltaRawBytes, total)
		}
		return nil
	})
	if err != nil {
		return fail(err)
	}
	return res, nil
}

// verifyDeltaIndexes checks the delta indexes bundle.json names against
// the verified release: each must be the signed delta target of its
// artifact from release From, join From's index to the release's, and
// hash to its signed sha256 (a damaged one is named). It records them in
// arts and marks their paths expected.
func (r *Reader) verifyDeltaIndexes(ctx context.Context, v *manifest.Verified, arts []artifactPlan, fromByName map[string]*chunker.Index, expected map[string]bool) error {
	info := r.info
	for _, d := range info.Deltas {
		i := -1
		for k := range arts {
			if arts[k].name == d.Artifact {
				i = k
			}
		}
		dt, ok := v.Delta(d.Artifact, info.From)
		switch {
		case i < 0:
			return fmt.Errorf("%w: %s names a delta index for %s, which release %d does not have", ErrMalformed, InfoPath, d.Artifact, info.Version)
		case !ok:
			return fmt.Errorf("%w: %s names a delta index for %s from release %d; the signed targets list none", ErrMalformed, InfoPath, d.Artifact, info.From)
		case dt.DeltaIndex.String() != d.DeltaIndex:
			return fmt.Errorf("%w: %s names delta index %s for %s, the signed target %s names %s", ErrMalformed, InfoPath, d.DeltaIndex, d.Artifact, dt.Path, dt.DeltaIndex)
		}
		base := fromByName[d.Artifact]
		if base == nil || !dt.BaseIndex.Equals(base.CID()) {
			return fmt.Errorf("delta target %s: %w: base index %s is not release %d's index of %s", dt.Path, manifest.ErrBadMetadata, dt.BaseIndex, info.From, d.Artifact)
		}
		dix, _, err := deltaIndexFor(ctx, r, dt, base, arts[i].ix)
		if errors.Is(err, fetch.ErrNotFound) {
			err = fmt.Errorf("%w: %s (delta index of %s from release %d)", ErrMissing, manifest.DeltaIndexPath(dt.DeltaIndex), d.Artifact, info.From)
		}
		if err != nil {
			return err
		}
		arts[i].dix = dix
		expected[manifest.DeltaIndexPath(dt.DeltaIndex)] = true
	}
	return nil
}

// logErr names the targets version in a log error; a log file the
// bundle lacks is a missing entry.
func logErr(version int64, err error) error {
	if errors.Is(err, fetch.ErrNotFound) {
		err = fmt.Errorf("%w: %w", ErrMissing, err)
	}
	return fmt.Errorf("transparency log: targets version %d: %w", version, err)
}

// witnesses runs several TargetsWitnesses in turn; the first error wins.
type witnesses []manifest.TargetsWitness

func (ws witnesses) Witness(ctx context.Context, f fetch.Fetcher, version int64, targets []byte) error {
	for _, w := range ws {
		if err := w.Witness(ctx, f, version, targets); err != nil {
			return err
		}
	}
	return nil
}

func fromNote(from uint64) string {
	if from == 0 {
		return ""
	}
	return " from " + strconv.FormatUint(from, 10)
}

// device fills in the device to check for (see VerifyOptions.Device)
// from the bundle's own, not yet verified, targets: the fields only pick
// which device is simulated; the client then checks the signed release
// against it.
func (r *Reader) device(ctx context.Context, d manifest.Device) manifest.Device {
	if d.Channel == "" {
		d.Channel = r.info.Channel
	}
	b, err := r.Fetch(ctx, "metadata/"+strconv.FormatInt(r.info.TargetsVersion, 10)+".targets.json", manifest.DefaultLimits.Metadata)
	if err != nil {
		return d
	}
	rs, err := releasesOf(b, d.Channel)
	if err != nil {
		return d
	}
	rel := find(rs, r.info.Version)
	if rel == nil && len(rs) > 0 {
		rel = rs[0] // bundle.json is wrong; the client will pick this one
	}
	if rel == nil {
		return d
	}
	if d.Hardware == "" && len(rel.Hardware) > 0 {
		d.Hardware = rel.Hardware[0]
	}
	if d.Arch == "" && len(rel.Arch) > 0 {
		d.Arch = rel.Arch[0]
	}
	if d.Installed == 0 {
		d.Installed = r.info.From
		if d.Installed == 0 {
			d.Installed = rel.MinInstalled
		}
	}
	return d
}

// sameRefs checks that bundle.json's artifacts are the signed release's.
func sameRefs(field string, refs []ArtifactRef, rel *release) error {
	if rel == nil {
		return fmt.Errorf("%w: %s: release not listed in the targets", ErrMalformed, field)
	}
	want := refsOf(rel)
	if len(refs) != len(want) {
		return fmt.Errorf("%w: %s %s lists %d artifacts, release %d has %d", ErrMalformed, InfoPath, field, len(refs), rel.Version, len(want))
	}
	for i := range want {
		if refs[i] != want[i] {
			return fmt.Errorf("%w: %s %s: %s index %s, release %d has %s %s", ErrMalformed, InfoPath, field, refs[i].Name, refs[i].Index, rel.Version, want[i].Name, want[i].Index)
		}
	}
	return nil
}

// checkRootCopy checks that metadata/root.json, when present, is the
// newest root version the client walked to.
func (r *Reader) checkRootCopy(ctx context.Context, newest int64) error {
	if _, ok := r.entries["metadata/root.json"]; !ok {
		return nil
	}
	a, err := r.Fetch(ctx, "metadata/root.json", manifest.DefaultLimits.Root)
	if err != nil {
		return err
	}
	p := "metadata/" + strconv.FormatInt(newest, 10) + ".root.json"
	if _, ok := r.entries[p]; !ok {
		return nil // the device trusts a newer root than the bundle has
	}
	b, err := r.Fetch(ctx, p, manifest.DefaultLimits.Root)
	if err != nil {
		return err
	}
	if string(a) != string(b) {
		return fmt.Errorf("%w: metadata/root.json differs from %s, the newest root", manifest.ErrMixAndMatch, p)
	}
	return nil
}
