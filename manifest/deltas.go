package manifest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/ipfs/go-cid"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/chunker/delta"
	"github.com/shoalnet/shoal/fetch"
)

// Delta objects and delta indexes (package chunker/delta) live beside the
// chunks: deltas/SHARD/CID for objects, sharded as chunks/ is, and
// deltas/index/CID for the delta indexes. A delta index is a TUF target
// of its own (DeltaTargetPath), so the signed targets cover it and a stock
// TUF client downloads and verifies it like any other target.
const deltasDir = "deltas"

// DeltaPath is the repository path of a delta object: deltas/SHARD/CID,
// SHARD chosen as for chunks (ChunkPath). "index" is five characters, so
// no shard is ever named like the delta index directory.
func DeltaPath(id cid.Cid) string {
	s := id.String()
	return deltasDir + "/" + shard(s) + "/" + s
}

// DeltaIndexPath is the repository path of an encoded delta index.
func DeltaIndexPath(id cid.Cid) string { return deltasDir + "/index/" + id.String() }

// deltaSuffix ends the fourth segment of a delta target's path. Artifact
// names may contain '.', so a delta target is told from a release target
// by its fifth segment, not by the suffix alone.
const deltaSuffix = ".delta"

// DeltaTargetPath is the TUF target path of the delta index that takes a
// device from release base of the channel to artifact of release version:
// "releases/CHANNEL/VERSION/ARTIFACT.delta/BASE". Its length and hashes
// are the delta index file's.
func DeltaTargetPath(channel string, version uint64, artifact string, base uint64) string {
	return TargetPath(channel, version, artifact) + deltaSuffix + "/" + strconv.FormatUint(base, 10)
}

// isDeltaTargetPath reports whether p has the shape of a delta target's
// path (five segments under releases/, the fourth ending in ".delta").
// Release targets have four, so the two never collide.
func isDeltaTargetPath(p string) bool {
	seg := strings.Split(p, "/")
	return len(seg) == 5 && seg[0] == "releases" && strings.HasSuffix(seg[3], deltaSuffix)
}

// DeltaTarget is the signed description of one delta index: which release
// artifact it builds (Channel, Version, Artifact, Index), from which base
// (BaseVersion, BaseIndex), and where its file is (DeltaIndex, Length; the
// sha256 is in the signed target).
type DeltaTarget struct {
	Path        string
	Channel     string
	Version     uint64
	Artifact    string
	Index       cid.Cid // the target release's index of Artifact
	BaseVersion uint64
	BaseIndex   cid.Cid // the base release's index of Artifact
	DeltaIndex  cid.Cid // content ID of the delta index; its file is DeltaIndexPath(DeltaIndex)
	Deltas      int     // entries of the delta index
	DeltaBytes  int64   // the delta objects' bytes, summed
	Length      int64   // bytes of the delta index file

	sha256 []byte
}

// deltaCustom is the "custom" object of a delta target. The fields sit
// under one "delta" key, with no top-level "channel": readers that list
// releases by the top-level fields (manifest/bundle) see no channel and
// pass the target by, where flat fields would be taken for a malformed
// release target.
type deltaCustom struct {
	Delta *deltaFields `json:"delta"`
}

type deltaFields struct {
	Channel     string `json:"channel"`
	Version     uint64 `json:"version"`
	Artifact    string `json:"artifact"`
	Index       string `json:"index"`
	BaseVersion uint64 `json:"base_version"`
	BaseIndex   string `json:"base_index"`
	DeltaIndex  string `json:"delta_index"`
	Deltas      int    `json:"deltas"`
	DeltaBytes  int64  `json:"delta_bytes"`
}

// targetFile returns the TUF target of dt.
func (dt *DeltaTarget) targetFile() (*metadata.TargetFiles, error) {
	c := deltaCustom{Delta: &deltaFields{
		Channel: dt.Channel, Version: dt.Version, Artifact: dt.Artifact, Index: dt.Index.String(),
		BaseVersion: dt.BaseVersion, BaseIndex: dt.BaseIndex.String(), DeltaIndex: dt.DeltaIndex.String(),
		Deltas: dt.Deltas, DeltaBytes: dt.DeltaBytes,
	}}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	raw := json.RawMessage(b)
	return &metadata.TargetFiles{Length: dt.Length, Hashes: metadata.Hashes{"sha256": dt.sha256}, Path: dt.Path, Custom: &raw}, nil
}

// parseCID reads a canonical CID that chunker accepts (a chunk-hash CIDv1
// raw): the form of index and delta index IDs.
func parseCID(field, s string) (cid.Cid, error) {
	id, err := cid.Decode(s)
	if err != nil || id.String() != s {
		return cid.Undef, fmt.Errorf("%s %q is not a content ID in canonical form", field, s)
	}
	if _, _, err := chunker.ParseID(id); err != nil {
		return cid.Undef, fmt.Errorf("%s: %v", field, err)
	}
	return id, nil
}

// parseDeltaTarget reads a delta target strictly: unknown fields, a path
// that does not match the fields, a base not below the version, and IDs
// that are not canonical are errors wrapping ErrBadMetadata.
func parseDeltaTarget(path string, tf *metadata.TargetFiles) (DeltaTarget, error) {
	var dt DeltaTarget
	bad := func(format string, args ...any) error {
		return fmt.Errorf("delta target %s: %w: %s", path, ErrBadMetadata, fmt.Sprintf(format, args...))
	}
	if tf.Custom == nil {
		return dt, bad("no custom fields")
	}
	var c deltaCustom
	dec := json.NewDecoder(bytes.NewReader(*tf.Custom))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return dt, bad("custom: %v", err)
	}
	if c.Delta == nil {
		return dt, bad("custom: no delta object")
	}
	f := c.Delta
	if err := checkName("channel", f.Channel); err != nil {
		return dt, bad("%v", err)
	}
	if err := checkName("artifact", f.Artifact); err != nil {
		return dt, bad("%v", err)
	}
	if f.Version == 0 || f.Version > maxVersion || f.BaseVersion == 0 || f.BaseVersion >= f.Version {
		return dt, bad("version %d, base_version %d: want 1 <= base_version < version <= %d", f.Version, f.BaseVersion, uint64(maxVersion))
	}
	if want := DeltaTargetPath(f.Channel, f.Version, f.Artifact, f.BaseVersion); path != want {
		return dt, bad("path does not match its fields (want %s)", want)
	}
	var err error
	if dt.Index, err = parseCID("index", f.Index); err != nil {
		return dt, bad("%v", err)
	}
	if dt.BaseIndex, err = parseCID("base_index", f.BaseIndex); err != nil {
		return dt, bad("%v", err)
	}
	if dt.DeltaIndex, err = parseCID("delta_index", f.DeltaIndex); err != nil {
		return dt, bad("%v", err)
	}
	if f.Deltas < 0 || f.DeltaBytes < 0 {
		return dt, bad("negative deltas or delta_bytes")
	}
	if tf.Length <= 0 {
		return dt, bad("length %d", tf.Length)
	}
	sum := tf.Hashes["sha256"]
	if len(sum) != sha256.Size {
		return dt, bad("no sha256")
	}
	dt.Path, dt.Channel, dt.Version, dt.Artifact = path, f.Channel, f.Version, f.Artifact
	dt.BaseVersion, dt.Deltas, dt.DeltaBytes, dt.Length = f.BaseVersion, f.Deltas, f.DeltaBytes, tf.Length
	dt.sha256 = sum
	return dt, nil
}

// deltasOf returns the delta targets of release r in targets t, keyed by
// artifact name and base version. A delta target whose index is not the
// artifact's, or that names an artifact r does not have, is an error.
func deltasOf(t *metadata.TargetsType, r *Release) (map[deltaKey]DeltaTarget, error) {
	prefix := "releases/" + r.Channel + "/" + strconv.FormatUint(r.Version, 10) + "/"
	out := map[deltaKey]DeltaTarget{}
	for p, tf := range t.Targets {
		if !isDeltaTargetPath(p) || !strings.HasPrefix(p, prefix) {
			continue
		}
		dt, err := parseDeltaTarget(p, tf)
		if err != nil {
			return nil, err
		}
		var art *Artifact
		for i := range r.Artifacts {
			if r.Artifacts[i].Name == dt.Artifact {
				art = &r.Artifacts[i]
			}
		}
		if art == nil {
			return nil, fmt.Errorf("delta target %s: %w: release %s/%d has no artifact %s", p, ErrBadMetadata, r.Channel, r.Version, dt.Artifact)
		}
		if !dt.Index.Equals(art.Index) {
			return nil, fmt.Errorf("delta target %s: %w: index %s, the release's artifact has %s", p, ErrBadMetadata, dt.Index, art.Index)
		}
		out[deltaKey{dt.Artifact, dt.BaseVersion}] = dt
	}
	return out, nil
}

type deltaKey struct {
	artifact string
	base     uint64
}

// checkDeltaTargets parses every delta target of t and checks it belongs
// to a release t lists: a targets metadata never signs a delta index for
// a release it does not carry.
func checkDeltaTargets(t *metadata.TargetsType, byChannel map[string][]*Release) error {
	for p, tf := range t.Targets {
		if !isDeltaTargetPath(p) {
			continue
		}
		dt, err := parseDeltaTarget(p, tf)
		if err != nil {
			return err
		}
		var rel *Release
		for _, r := range byChannel[dt.Channel] {
			if r.Version == dt.Version {
				rel = r
			}
		}
		if rel == nil {
			return fmt.Errorf("delta target %s: %w: release %s/%d is not listed", p, ErrBadMetadata, dt.Channel, dt.Version)
		}
	}
	return nil
}

// Delta returns the signed delta target that takes a device holding
// release base of v's channel to artifact of v's release, if the
// repository lists one.
func (v *Verified) Delta(artifact string, base uint64) (DeltaTarget, bool) {
	dt, ok := v.deltas[deltaKey{artifact, base}]
	return dt, ok
}

// FetchDeltaIndex fetches the delta index of dt from f, checks it against
// the signed length and sha256, and decodes it. The caller still runs
// delta.Index.Check against the two indexes it holds. limit caps the
// signed length (0: DefaultLimits.Index). Errors wrap ErrIndexHash (the
// bytes are not the signed ones), ErrTooLarge, delta.ErrMalformedIndex or
// fetch's sentinels.
func FetchDeltaIndex(ctx context.Context, f fetch.Fetcher, dt DeltaTarget, limit int64) (*delta.Index, error) {
	if limit <= 0 {
		limit = DefaultLimits.Index
	}
	p := DeltaIndexPath(dt.DeltaIndex)
	if dt.Length > limit {
		return nil, fmt.Errorf("%s: %w: signed length %d exceeds the limit %d", p, ErrTooLarge, dt.Length, limit)
	}
	b, err := f.Fetch(ctx, p, dt.Length)
	if err != nil {
		return nil, err
	}
	return decodeDeltaIndex(p, b, dt)
}

// decodeDeltaIndex checks b against dt's signed length, sha256 and
// content ID and decodes it.
func decodeDeltaIndex(p string, b []byte, dt DeltaTarget) (*delta.Index, error) {
	if sum := sha256.Sum256(b); int64(len(b)) != dt.Length || !bytes.Equal(sum[:], dt.sha256) {
		return nil, fmt.Errorf("%s: %w: %d bytes that do not match the signed length %d and sha256", p, ErrIndexHash, len(b), dt.Length)
	}
	dix, err := delta.DecodeIndex(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if got := dix.Hash.ID(dix.Hash.Sum(b)); !got.Equals(dt.DeltaIndex) {
		return nil, fmt.Errorf("%s: %w: content ID is %s", p, ErrIndexHash, got)
	}
	return dix, nil
}

// LookupDeltaTarget returns the delta target of targets that builds
// artifact of release version of channel from release base, parsed as
// strictly as a device parses it. It is for readers of targets metadata
// that is not verified yet (manifest/bundle's Create, whose output is
// verified later); a device uses Verified.Delta.
func LookupDeltaTarget(targets map[string]*metadata.TargetFiles, channel string, version uint64, artifact string, base uint64) (DeltaTarget, bool, error) {
	p := DeltaTargetPath(channel, version, artifact, base)
	tf, ok := targets[p]
	if !ok {
		return DeltaTarget{}, false, nil
	}
	dt, err := parseDeltaTarget(p, tf)
	if err != nil {
		return DeltaTarget{}, false, err
	}
	return dt, true, nil
}

// DecodeDeltaIndex checks the bytes of dt's delta index (read by the
// caller, who keeps them: a bundle copies them unchanged) against dt's
// signed length, sha256 and content ID and decodes them. Errors wrap
// ErrIndexHash or delta.ErrMalformedIndex.
func DecodeDeltaIndex(b []byte, dt DeltaTarget) (*delta.Index, error) {
	return decodeDeltaIndex(DeltaIndexPath(dt.DeltaIndex), b, dt)
}

// CheckedDeltaIndex is a delta index checked against its signed target
// and against the pair of indexes it joins, reduced to what a reader that
// carries delta objects without expanding them needs (manifest/bundle,
// which then does not depend on the delta codec itself).
type CheckedDeltaIndex struct {
	ix *delta.Index
}

// DeltaObject is one entry of a CheckedDeltaIndex.
type DeltaObject struct {
	Pos  int64   // the chunk's position in the target index
	ID   cid.Cid // the delta object's ID; its file is DeltaPath(ID)
	Size int     // the delta object's signed length
}

// CheckDeltaIndex decodes b, the bytes of dt's delta index, checking them
// against dt (DecodeDeltaIndex) and the index pair (delta.Index.Check).
func CheckDeltaIndex(b []byte, dt DeltaTarget, base, target *chunker.Index) (*CheckedDeltaIndex, error) {
	dix, err := DecodeDeltaIndex(b, dt)
	if err != nil {
		return nil, err
	}
	if err := dix.Check(base, target); err != nil {
		return nil, fmt.Errorf("%s (delta target %s): %w", DeltaIndexPath(dt.DeltaIndex), dt.Path, err)
	}
	return &CheckedDeltaIndex{ix: dix}, nil
}

// Objects lists the delta objects of c by target position.
func (c *CheckedDeltaIndex) Objects() []DeltaObject {
	out := make([]DeltaObject, len(c.ix.Entries))
	for i, e := range c.ix.Entries {
		out[i] = DeltaObject{Pos: e.Pos, ID: c.ix.ID(e), Size: e.Size}
	}
	return out
}

// CheckObject checks obj against the entry of c with ID o.ID: its signed
// length and digest, and a header within c's limits that builds want
// bytes (the chunk's size). It cannot expand obj: that needs the base
// image. Errors wrap delta.ErrCorrupt (or the header's sentinels) and
// name the object.
func (c *CheckedDeltaIndex) CheckObject(o DeltaObject, obj []byte, want int) error {
	p := DeltaPath(o.ID)
	if len(obj) != o.Size || !c.ix.Hash.ID(c.ix.Hash.Sum(obj)).Equals(o.ID) {
		return fmt.Errorf("%s: %w: %d bytes that do not hash to its ID (the signed delta index says %d bytes)", p, delta.ErrCorrupt, len(obj), o.Size)
	}
	h, _, err := delta.ParseHeader(obj, c.ix.Limits())
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if h.Size != want {
		return fmt.Errorf("%s: %w: builds %d bytes, its chunk has %d", p, delta.ErrCorrupt, h.Size, want)
	}
	return nil
}

// MaxDeltaObjectSize is the largest delta object a reader accepts for
// chunks of at most maxChunk bytes (delta.MaxObjectSize).
func MaxDeltaObjectSize(maxChunk int) int64 { return delta.MaxObjectSize(maxChunk) }

// FetchDelta fetches the delta object id from a repository (DeltaPath)
// and checks its bytes against id: the shape of FetchChunk for deltas,
// which are stored as they are (a delta is compressed already). max
// bounds the object's length (an entry's signed size, or
// MaxDeltaObjectSize of the chunk bound). Errors wrap ErrChunkCorrupt
// (bytes that are not id), ErrTooLarge, or fetch's sentinels.
func FetchDelta(ctx context.Context, f fetch.Fetcher, id cid.Cid, max int) ([]byte, error) {
	return FetchFileByID(ctx, f, DeltaPath(id), id, max)
}

// FetchFileByID fetches the repository file p, stored as it is and named
// by the CID of its bytes (a delta object, a delta index, a release
// index), and checks its bytes hash to id. It is for a node that passes
// the file on to its peers; a device still checks an index against its
// signed target. Errors wrap ErrChunkCorrupt, ErrTooLarge, or fetch's
// sentinels.
func FetchFileByID(ctx context.Context, f fetch.Fetcher, p string, id cid.Cid, max int) ([]byte, error) {
	h, d, err := chunker.ParseID(id)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	obj, err := f.Fetch(ctx, p, int64(max))
	if err != nil {
		return nil, err
	}
	if h.Sum(obj) != d {
		return nil, fmt.Errorf("%s: %w: %d bytes that do not hash to its ID", p, ErrChunkCorrupt, len(obj))
	}
	return obj, nil
}
