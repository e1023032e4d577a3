package bundle

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/store"
)

// ImportPin is one pin Import wrote: CHANNEL/VERSION/ARTIFACT and the
// index it names.
type ImportPin struct {
	Name  string `json:"name"`
	Index string `json:"index"`
}

// ImportResult says what Import put into the store.
type ImportResult struct {
	Info     Info
	Chunks   int
	RawBytes int64
	Indexes  int
	Pins     []ImportPin
}

// Importable says whether Import would take the bundle's contents: a
// bundle with deltas it refuses with ErrDeltaImport. Callers check before
// they create a store for it.
func (r *Reader) Importable() error {
	info := r.info
	if len(info.Deltas) == 0 {
		return nil
	}
	// A store holds chunks by chunk ID, and a delta's ID names other
	// bytes: putting deltas there would mix the two namespaces, and the
	// swarm does not trade deltas yet, so a node could serve neither them
	// nor the chunks they replace.
	return fmt.Errorf("bundle %s: %w: it carries %d delta objects against release %d instead of whole chunks; a node's store needs the whole chunks: make the bundle with --no-deltas (or without --from)",
		r.name, ErrDeltaImport, info.Counts.Deltas, info.From)
}

// ErrUnverified: Import was not given the bundle's verification.
var ErrUnverified = errors.New("bundle: import needs the bundle verified first")

// Import puts the bundle's chunks and indexes into db and pins the
// release's indexes as CHANNEL/VERSION/ARTIFACT, so that garbage collection
// keeps them and a node serves them (a remote site seeded from a USB
// stick). It takes the result of verifying r (Reader.Verify, from the
// trusted root) and pins what that verification proved, never what the
// bundle merely claims. Every chunk is decoded and checked against its ID
// on the way, so nothing false enters the store; chunks go in first and
// pins last, so a pin only ever names a release whose chunks are all in.
// A bundle with deltas (Info.Deltas) is refused with ErrDeltaImport.
// progress, if set, gets the chunk object bytes read so far and their
// total.
func Import(ctx context.Context, r *Reader, v *VerifyResult, db *store.DB, progress func(done, total int64)) (*ImportResult, error) {
	if v == nil || v.Verified == nil || v.Verified.Release == nil {
		return nil, ErrUnverified
	}
	info := v.Info
	if err := r.Importable(); err != nil {
		return nil, err
	}
	res := &ImportResult{Info: info}
	// Decoded chunks are bounded by the largest maximum chunk size any
	// index in the bundle names; without indexes, by the format's ceiling.
	maxChunk := 0
	var indexes []*chunker.Index
	if err := r.Indexes(ctx, func(_ cid.Cid, ix *chunker.Index) error {
		maxChunk = max(maxChunk, ix.Params.Max)
		indexes = append(indexes, ix)
		return nil
	}); err != nil {
		return nil, err
	}
	if maxChunk == 0 {
		maxChunk = chunker.MaxChunkCeil
	}
	var total, done int64
	for _, p := range r.Paths() {
		if strings.HasPrefix(p, "chunks/") {
			n, _ := r.Has(p)
			total += n
		}
	}
	err := r.Chunks(ctx, func(id cid.Cid, obj []byte) error {
		data, err := manifest.DecodeChunk(id, obj, maxChunk)
		if err != nil {
			return fmt.Errorf("bundle %s: %w", manifest.ChunkPath(id), err)
		}
		if err := db.Put(ctx, id, data); err != nil {
			return err
		}
		res.Chunks++
		res.RawBytes += int64(len(data))
		done += int64(len(obj))
		if progress != nil {
			progress(done, total)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, ix := range indexes {
		if _, err := db.PutIndex(ctx, ix); err != nil {
			return nil, err
		}
		res.Indexes++
	}
	rel := v.Verified.Release
	for _, a := range rel.Artifacts {
		name := fmt.Sprintf("%s/%d/%s", rel.Channel, rel.Version, a.Name)
		if err := db.Pin(ctx, name, a.Index); err != nil {
			return nil, err
		}
		res.Pins = append(res.Pins, ImportPin{name, a.Index.String()})
	}
	return res, nil
}
