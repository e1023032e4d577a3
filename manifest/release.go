package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"

	"github.com/ipfs/go-cid"
	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/shoalnet/shoal/chunker"
)

// Release is one signed release on one channel: a version and the
// artifacts (images) it consists of. Every artifact is a TUF target (its
// index file); the release-wide fields are repeated in each target's
// custom fields, so each target stands on its own.
type Release struct {
	Channel string
	Version uint64 // strictly increasing per channel
	// Hardware and Arch list the devices the release is for; empty means
	// any.
	Hardware []string
	Arch     []string
	// MinInstalled is the oldest installed version that may update to this
	// release directly (0: any).
	MinInstalled uint64
	// Rollout is the release's rollout policy, evaluated by the rollout
	// package through [ClientConfig.Rollout]. Opaque here; nil means
	// everyone at once.
	Rollout json.RawMessage
	// SBOM and Provenance are digests ("sha256:<hex>") of documents that
	// describe the release; empty when not given to publish.
	SBOM       string
	Provenance string
	Artifacts  []Artifact // sorted by name
}

// Artifact is one image of a release.
type Artifact struct {
	Name   string         // e.g. "rootfs"
	Slot   string         // where a device installs it, e.g. "rootfs"
	Size   int64          // image size in bytes
	Root   chunker.Digest // Merkle root of the index
	Hash   chunker.Hash
	Params chunker.Params
	Chunks int
	// Index is the content ID of the encoded index, stored at
	// IndexPath(Index). The TUF target path is TargetPath(channel,
	// version, name), so one index may serve several releases.
	Index       cid.Cid
	IndexLength int64 // bytes of the encoded index (signed in the target)

	indexSHA256 []byte // set by publish; a client checks the target's hashes instead
}

// targetCustom is the JSON of a target's "custom" object: the one place
// that defines the field names (docs/formats.md lists them).
type targetCustom struct {
	Channel      string          `json:"channel"`
	Version      uint64          `json:"version"`
	Artifact     string          `json:"artifact"`
	Index        string          `json:"index"`
	Slot         string          `json:"slot"`
	Size         int64           `json:"size"`
	Root         string          `json:"merkle_root"`
	Hash         string          `json:"chunk_hash"`
	Min          int             `json:"chunk_min"`
	Avg          int             `json:"chunk_avg"`
	Max          int             `json:"chunk_max"`
	Chunks       int             `json:"chunks"`
	Hardware     []string        `json:"hardware,omitempty"`
	Arch         []string        `json:"arch,omitempty"`
	MinInstalled uint64          `json:"min_installed,omitempty"`
	Rollout      json.RawMessage `json:"rollout,omitempty"`
	SBOM         string          `json:"sbom,omitempty"`
	Provenance   string          `json:"provenance,omitempty"`
}

// Limits on custom fields. Versions stay within what canonical JSON (and
// so a signature) can carry exactly.
const (
	maxVersion   = math.MaxInt64
	maxListItems = 64
	maxRollout   = 16 << 10
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// ValidName reports whether s may be a channel, artifact, slot, hardware
// or arch name: lower-case letters, digits, '.', '_' and '-', 1 to 64
// characters, starting with a letter or digit.
func ValidName(s string) bool { return nameRE.MatchString(s) }

func checkName(field, s string) error {
	if !ValidName(s) {
		return fmt.Errorf("%s %q: want 1-64 of [a-z0-9._-], starting with a letter or digit", field, s)
	}
	return nil
}

func checkList(field string, l []string) error {
	if len(l) > maxListItems {
		return fmt.Errorf("%s: %d entries, at most %d", field, len(l), maxListItems)
	}
	for _, s := range l {
		if err := checkName(field, s); err != nil {
			return err
		}
	}
	return nil
}

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// checkRollout accepts a JSON object that canonical JSON can sign (no
// floating point numbers), at most maxRollout bytes.
func checkRollout(r json.RawMessage) error {
	if len(r) == 0 {
		return nil
	}
	if len(r) > maxRollout {
		return fmt.Errorf("rollout: %d bytes, at most %d", len(r), maxRollout)
	}
	var obj map[string]any
	if err := json.Unmarshal(r, &obj); err != nil {
		return fmt.Errorf("rollout: want a JSON object: %v", err)
	}
	if _, err := cjson.EncodeCanonical(json.RawMessage(r)); err != nil {
		return fmt.Errorf("rollout: cannot be signed (use integers, not fractions): %v", err)
	}
	return nil
}

// validate checks a release before it is signed or after it was read.
func (r *Release) validate() error {
	if err := checkName("channel", r.Channel); err != nil {
		return err
	}
	if r.Version == 0 || r.Version > maxVersion {
		return fmt.Errorf("version %d: want 1..%d", r.Version, uint64(maxVersion))
	}
	if r.MinInstalled > maxVersion {
		return fmt.Errorf("min_installed %d: at most %d", r.MinInstalled, uint64(maxVersion))
	}
	if err := checkList("hardware", r.Hardware); err != nil {
		return err
	}
	if err := checkList("arch", r.Arch); err != nil {
		return err
	}
	if err := checkRollout(r.Rollout); err != nil {
		return err
	}
	for _, d := range []struct{ field, v string }{{"sbom", r.SBOM}, {"provenance", r.Provenance}} {
		if d.v != "" && !digestRE.MatchString(d.v) {
			return fmt.Errorf("%s %q: want sha256:<64 hex digits>", d.field, d.v)
		}
	}
	if len(r.Artifacts) == 0 {
		return fmt.Errorf("release %s/%d has no artifacts", r.Channel, r.Version)
	}
	seen := map[string]bool{}
	for _, a := range r.Artifacts {
		if err := checkName("artifact", a.Name); err != nil {
			return err
		}
		if err := checkName("slot", a.Slot); err != nil {
			return fmt.Errorf("artifact %s: %w", a.Name, err)
		}
		if seen[a.Name] {
			return fmt.Errorf("artifact %s appears twice", a.Name)
		}
		seen[a.Name] = true
		if a.Size < 0 || a.Chunks < 0 {
			return fmt.Errorf("artifact %s: negative size or chunk count", a.Name)
		}
		if err := a.Params.Validate(); err != nil {
			return fmt.Errorf("artifact %s: %w", a.Name, err)
		}
		if !a.Hash.Valid() {
			return fmt.Errorf("artifact %s: unknown chunk hash %v", a.Name, a.Hash)
		}
	}
	return nil
}

// IndexPath is the repository path of an index.
func IndexPath(id cid.Cid) string { return "index/" + id.String() }

// TargetPath is the TUF target path of one artifact of a release:
// "releases/CHANNEL/VERSION/ARTIFACT". Its target file's length and
// hashes are those of the artifact's index.
func TargetPath(channel string, version uint64, artifact string) string {
	return "releases/" + channel + "/" + strconv.FormatUint(version, 10) + "/" + artifact
}

// targetFiles returns the TUF targets of r, keyed by target path.
func (r *Release) targetFiles() (map[string]*metadata.TargetFiles, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	out := make(map[string]*metadata.TargetFiles, len(r.Artifacts))
	for _, a := range r.Artifacts {
		c := targetCustom{
			Channel: r.Channel, Version: r.Version, Artifact: a.Name, Index: a.Index.String(), Slot: a.Slot,
			Size: a.Size, Root: a.Root.String(), Hash: a.Hash.String(),
			Min: a.Params.Min, Avg: a.Params.Avg, Max: a.Params.Max, Chunks: a.Chunks,
			Hardware: r.Hardware, Arch: r.Arch, MinInstalled: r.MinInstalled,
			Rollout: r.Rollout, SBOM: r.SBOM, Provenance: r.Provenance,
		}
		b, err := json.Marshal(c)
		if err != nil {
			return nil, err
		}
		raw := json.RawMessage(b)
		p := TargetPath(r.Channel, r.Version, a.Name)
		out[p] = &metadata.TargetFiles{Length: a.IndexLength, Hashes: metadata.Hashes{"sha256": a.indexSHA256}, Path: p, Custom: &raw}
	}
	return out, nil
}

// parseTarget reads one target's custom fields. It is strict: unknown
// fields, wrong types and out-of-range values are errors naming the target
// and field.
func parseTarget(path string, tf *metadata.TargetFiles) (targetCustom, Artifact, error) {
	var c targetCustom
	var a Artifact
	bad := func(format string, args ...any) error {
		return fmt.Errorf("target %s: %w: %s", path, ErrBadMetadata, fmt.Sprintf(format, args...))
	}
	if tf.Custom == nil {
		return c, a, bad("no custom fields")
	}
	dec := json.NewDecoder(bytes.NewReader(*tf.Custom))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, a, bad("custom: %v", err)
	}
	if err := checkName("channel", c.Channel); err != nil {
		return c, a, bad("%v", err)
	}
	if err := checkName("artifact", c.Artifact); err != nil {
		return c, a, bad("%v", err)
	}
	if c.Version == 0 || c.Version > maxVersion {
		return c, a, bad("version %d out of range", c.Version)
	}
	if want := TargetPath(c.Channel, c.Version, c.Artifact); path != want {
		return c, a, bad("path does not match its fields (want %s)", want)
	}
	ix, err := cid.Decode(c.Index)
	if err != nil || ix.String() != c.Index {
		return c, a, bad("index %q is not a content ID in canonical form", c.Index)
	}
	if _, _, err := chunker.ParseID(ix); err != nil {
		return c, a, bad("index: %v", err)
	}
	h, err := chunker.ParseHash(c.Hash)
	if err != nil || c.Hash == "" {
		return c, a, bad("chunk_hash %q unknown", c.Hash)
	}
	root, err := chunker.ParseDigest(c.Root)
	if err != nil {
		return c, a, bad("merkle_root: %v", err)
	}
	if tf.Length <= 0 {
		return c, a, bad("length %d", tf.Length)
	}
	if len(c.Rollout) > 0 {
		// Pretty-printed metadata re-indents raw JSON; hand callers the
		// compact form, byte-identical to what was published.
		var buf bytes.Buffer
		if err := json.Compact(&buf, c.Rollout); err != nil {
			return c, a, bad("rollout: %v", err)
		}
		c.Rollout = buf.Bytes()
	}
	a = Artifact{
		Name: c.Artifact, Slot: c.Slot, Size: c.Size, Root: root, Hash: h,
		Params: chunker.Params{Min: c.Min, Avg: c.Avg, Max: c.Max}, Chunks: c.Chunks,
		Index: ix, IndexLength: tf.Length,
	}
	return c, a, nil
}

// releasesIn groups the targets of one targets metadata into releases,
// per channel, newest version first. Targets that claim the same channel
// and version must agree on every release-wide field.
func releasesIn(t *metadata.TargetsType) (map[string][]*Release, error) {
	type key struct {
		ch string
		v  uint64
	}
	byKey := map[key]*Release{}
	paths := make([]string, 0, len(t.Targets))
	for p := range t.Targets {
		if isDeltaTargetPath(p) {
			continue // a release's delta indexes: checkDeltaTargets below
		}
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		c, a, err := parseTarget(p, t.Targets[p])
		if err != nil {
			return nil, err
		}
		k := key{c.Channel, c.Version}
		r := byKey[k]
		if r == nil {
			r = &Release{Channel: c.Channel, Version: c.Version, Hardware: c.Hardware, Arch: c.Arch,
				MinInstalled: c.MinInstalled, Rollout: c.Rollout, SBOM: c.SBOM, Provenance: c.Provenance}
			byKey[k] = r
		} else if !slices.Equal(r.Hardware, c.Hardware) || !slices.Equal(r.Arch, c.Arch) ||
			r.MinInstalled != c.MinInstalled || !bytes.Equal(r.Rollout, c.Rollout) ||
			r.SBOM != c.SBOM || r.Provenance != c.Provenance {
			return nil, fmt.Errorf("target %s: %w: release %s/%d fields differ between its artifacts", p, ErrBadMetadata, c.Channel, c.Version)
		}
		r.Artifacts = append(r.Artifacts, a)
	}
	out := map[string][]*Release{}
	for _, r := range byKey {
		sort.Slice(r.Artifacts, func(i, j int) bool { return r.Artifacts[i].Name < r.Artifacts[j].Name })
		if err := r.validate(); err != nil {
			return nil, fmt.Errorf("release %s/%d: %w: %v", r.Channel, r.Version, ErrBadMetadata, err)
		}
		out[r.Channel] = append(out[r.Channel], r)
	}
	for _, rs := range out {
		sort.Slice(rs, func(i, j int) bool { return rs[i].Version > rs[j].Version })
	}
	if err := checkDeltaTargets(t, out); err != nil {
		return nil, err
	}
	return out, nil
}
