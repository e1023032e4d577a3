package manifest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/chunker/delta"
	"github.com/shoalnet/shoal/internal/atomicfile"
	"github.com/shoalnet/shoal/internal/inputfile"
)

// ErrNoBase: publish was asked for deltas against a release the
// repository's current targets do not list on the channel.
var ErrNoBase = errors.New("manifest: delta base release not in the repository")

// DeltaBase names a release of the same channel to compute deltas
// against (PublishOptions.DeltaFrom).
type DeltaBase struct {
	Version uint64
	// Images maps artifact names to the base release's image files. An
	// artifact without one is rebuilt from the repository's chunk objects
	// into an unlinked temporary file, every chunk decoded and checked
	// against its ID on the way.
	Images map[string]string
}

// PublishedDelta reports the deltas of one artifact against one base.
type PublishedDelta struct {
	Artifact    string
	BaseVersion uint64
	Target      string // the delta index's TUF target path; empty when no delta was kept
	DeltaIndex  string // its content ID; its file is DeltaIndexPath
	IndexBytes  int    // bytes of the delta index
	NewObjects  int    // delta objects written (not already present)
	Rebuilt     bool   // the base image was rebuilt from the repository's chunks
	Stats       delta.Stats
}

// checkDeltaFrom validates o.DeltaFrom against the options alone, before
// any image is read.
func (o *PublishOptions) checkDeltaFrom() error {
	seen := map[uint64]bool{}
	for _, b := range o.DeltaFrom {
		if b.Version == 0 || b.Version >= o.Version {
			return fmt.Errorf("publish: delta base version %d: want 1 to %d (below the new release)", b.Version, o.Version-1)
		}
		if seen[b.Version] {
			return fmt.Errorf("publish: delta base version %d given twice", b.Version)
		}
		seen[b.Version] = true
		for name := range b.Images {
			if !slices.ContainsFunc(o.Artifacts, func(a ArtifactInput) bool { return a.Name == name }) {
				return fmt.Errorf("publish: base image for artifact %q of version %d: the release has no such artifact", name, b.Version)
			}
		}
	}
	return nil
}

// deltaBases finds every base of o.DeltaFrom among the channel's releases
// in the current targets, so a publish naming one that does not exist
// fails before it reads an image.
func (o *PublishOptions) deltaBases(byChannel map[string][]*Release) ([]*Release, error) {
	var out []*Release
	for _, b := range o.DeltaFrom {
		var found *Release
		var listed []uint64
		for _, r := range byChannel[o.Channel] {
			listed = append(listed, r.Version)
			if r.Version == b.Version {
				found = r
			}
		}
		if found == nil {
			return nil, fmt.Errorf("publish: %w: %s/%d (the channel lists %v)", ErrNoBase, o.Channel, b.Version, listed)
		}
		out = append(out, found)
	}
	return out, nil
}

// deltaJob is what publishDeltas needs of the new release.
type deltaJob struct {
	repo    string
	o       *PublishOptions
	prev    *metadata.TargetsType
	bases   []*Release
	rel     *Release
	indexes map[string]*chunker.Index // new indexes by artifact name
	paths   map[string]string         // new images by artifact name
}

// publishDeltas plans the deltas of every artifact of the new release
// against every base, stores the kept delta objects (durable under their
// names before it returns), writes each delta index, and returns the
// delta targets to sign. The new images are read again and every chunk
// the planner touches is checked against its index, so an image that
// changed since it was chunked fails the publish instead of shipping
// deltas that expand to nothing a device can use.
func publishDeltas(ctx context.Context, j deltaJob) (map[string]*metadata.TargetFiles, []PublishedDelta, error) {
	dir := filepath.Join(j.repo, deltasDir)
	if err := os.MkdirAll(filepath.Join(dir, "index"), 0o755); err != nil {
		return nil, nil, err
	}
	if err := syncDirs([]string{j.repo, dir}); err != nil {
		return nil, nil, fmt.Errorf("publish: %w", err)
	}
	if err := removeStaleTemps(dir); err != nil {
		return nil, nil, err
	}
	w := newChunkWriter(dir)
	type indexFile struct {
		path string
		data []byte
	}
	var files []indexFile
	targets := map[string]*metadata.TargetFiles{}
	var out []PublishedDelta
	for bi, base := range j.bases {
		for _, a := range j.rel.Artifacts {
			pd, dt, enc, err := planArtifact(ctx, j, w, j.o.DeltaFrom[bi], base, a)
			if err != nil {
				w.abort()
				return nil, nil, fmt.Errorf("publish: deltas of %s against %s/%d: %w", a.Name, base.Channel, base.Version, err)
			}
			if pd == nil {
				continue // the base has no such artifact
			}
			out = append(out, *pd)
			if dt == nil {
				continue
			}
			tf, err := dt.targetFile()
			if err != nil {
				w.abort()
				return nil, nil, err
			}
			targets[dt.Path] = tf
			files = append(files, indexFile{filepath.Join(j.repo, filepath.FromSlash(DeltaIndexPath(dt.DeltaIndex))), enc})
		}
	}
	// Objects first, durable under their names, then the delta indexes
	// that name them; the targets metadata that lists the indexes comes
	// after both.
	if err := w.commit(); err != nil {
		return nil, nil, err
	}
	for _, f := range files {
		if _, err := os.Lstat(f.path); err == nil {
			continue // content-addressed: same name, same bytes
		}
		if err := atomicfile.WriteFile(f.path, f.data, 0o644); err != nil {
			return nil, nil, err
		}
	}
	return targets, out, nil
}

// planArtifact plans one artifact against one base. It returns a nil
// report when the base has no artifact of that name, and a nil target
// when no delta was worth keeping.
func planArtifact(ctx context.Context, j deltaJob, w *chunkWriter, b DeltaBase, base *Release, a Artifact) (*PublishedDelta, *DeltaTarget, []byte, error) {
	i := slices.IndexFunc(base.Artifacts, func(x Artifact) bool { return x.Name == a.Name })
	if i < 0 {
		return nil, nil, nil, nil
	}
	ba := base.Artifacts[i]
	baseIx, err := readRepoIndex(j.repo, ba, j.prev.Targets[TargetPath(base.Channel, base.Version, ba.Name)])
	if err != nil {
		return nil, nil, nil, err
	}
	newIx := j.indexes[a.Name]
	pd := &PublishedDelta{Artifact: a.Name, BaseVersion: base.Version}
	var baseImg *os.File
	if p := b.Images[a.Name]; p != "" {
		if baseImg, err = openImage(p, baseIx); err != nil {
			return nil, nil, nil, fmt.Errorf("base image: %w", err)
		}
	} else {
		if baseImg, err = rebuildImage(ctx, j.repo, baseIx); err != nil {
			return nil, nil, nil, fmt.Errorf("rebuild base image from the repository: %w", err)
		}
		pd.Rebuilt = true
	}
	defer baseImg.Close()
	newImg, err := openImage(j.paths[a.Name], newIx)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("new image: %w", err)
	}
	defer newImg.Close()

	opts := j.o.DeltaOptions
	opts.Objects = func(e delta.Entry, obj []byte) error {
		id := newIx.Hash.ID(e.Digest)
		wrote, err := w.putObject(id, e.Digest, bytes.Clone(obj))
		if wrote {
			pd.NewObjects++
		}
		return err
	}
	dix, st, err := delta.Plan(ctx, delta.Image{Index: baseIx, Data: baseImg}, delta.Image{Index: newIx, Data: newImg}, opts)
	if err != nil {
		return nil, nil, nil, err
	}
	pd.Stats = st
	if len(dix.Entries) == 0 {
		return pd, nil, nil, nil
	}
	enc := dix.Encode()
	sum := sha256.Sum256(enc)
	dt := &DeltaTarget{
		Path:    DeltaTargetPath(j.rel.Channel, j.rel.Version, a.Name, base.Version),
		Channel: j.rel.Channel, Version: j.rel.Version, Artifact: a.Name, Index: a.Index,
		BaseVersion: base.Version, BaseIndex: ba.Index, DeltaIndex: dix.Hash.ID(dix.Hash.Sum(enc)),
		Deltas: len(dix.Entries), DeltaBytes: st.ObjectBytes, Length: int64(len(enc)), sha256: sum[:],
	}
	pd.Target, pd.DeltaIndex, pd.IndexBytes = dt.Path, dt.DeltaIndex.String(), len(enc)
	return pd, dt, enc, nil
}

// readRepoIndex reads a release artifact's index from the repository and
// checks it against its signed target (length, sha256) and content ID.
func readRepoIndex(repo string, a Artifact, tf *metadata.TargetFiles) (*chunker.Index, error) {
	p := filepath.Join(repo, filepath.FromSlash(IndexPath(a.Index)))
	if tf == nil {
		return nil, fmt.Errorf("%s: %w: no signed target", p, ErrBadMetadata)
	}
	b, err := readBounded(p, DefaultLimits.Index)
	if err != nil {
		return nil, err
	}
	if err := tf.VerifyLengthHashes(b); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", p, ErrIndexHash, err)
	}
	ix, err := chunker.DecodeIndex(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if !ix.CID().Equals(a.Index) {
		return nil, fmt.Errorf("%s: %w: content ID is %s", p, ErrIndexHash, ix.CID())
	}
	return ix, nil
}

// openImage opens an image file (a regular file or block device) and
// checks its size against ix: the planner checks every chunk it reads,
// this catches the wrong file before anything is read.
func openImage(p string, ix *chunker.Index) (*os.File, error) {
	f, size, err := inputfile.OpenImage(p)
	if err != nil {
		return nil, err
	}
	if size != ix.Size {
		f.Close()
		return nil, fmt.Errorf("%s: %w: the image is %d bytes, its index %s says %d", p, delta.ErrImageMismatch, size, ix.CID(), ix.Size)
	}
	return f, nil
}

// rebuildImage writes the image ix describes from the repository's chunk
// objects into a temporary file that is unlinked at once (nothing is left
// behind whatever happens to the publish). Every object is decoded and
// checked against its chunk ID (DecodeChunk); a missing or corrupt one
// stops the rebuild, naming it.
func rebuildImage(ctx context.Context, repo string, ix *chunker.Index) (*os.File, error) {
	f, err := os.CreateTemp("", "shoal-delta-base-*.img")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, err
	}
	off := ix.Offsets()
	for i := range ix.Chunks {
		if err := ctx.Err(); err != nil {
			f.Close()
			return nil, err
		}
		id := ix.ID(i)
		p := filepath.Join(repo, filepath.FromSlash(ChunkPath(id)))
		obj, err := readBounded(p, MaxObjectSize(ix.Params.Max))
		if err == nil {
			var data []byte
			if data, err = DecodeChunk(id, obj, ix.Params.Max); err == nil {
				_, err = f.WriteAt(data, off[i])
			}
		}
		if err != nil {
			f.Close()
			if errors.Is(err, fs.ErrNotExist) {
				err = fmt.Errorf("%w: the repository does not hold it", err)
			}
			return nil, fmt.Errorf("chunk %d (%s): %w", i, id, err)
		}
	}
	return f, nil
}
