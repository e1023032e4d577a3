package bundle

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/ipfs/go-cid"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/shoalnet/shoal/manifest"
)

// release is what a bundle needs to know of one release in a targets
// metadata file: its artifacts' indexes and the fields that decide which
// devices may take it. manifest.Client checks all of a release's fields;
// this reads only those, from targets bytes that are either already
// verified (Verify) or about to be verified by whoever uses the bundle
// (Create).
type release struct {
	Channel      string
	Version      uint64
	Hardware     []string
	Arch         []string
	MinInstalled uint64
	Artifacts    []artifact // sorted by name
}

type artifact struct {
	Name   string
	Index  cid.Cid
	Target *metadata.TargetFiles // signed length and hashes of the index
}

// targetFields are the custom fields of a target that a bundle reads
// (docs/formats.md lists all of them).
type targetFields struct {
	Channel      string   `json:"channel"`
	Version      uint64   `json:"version"`
	Artifact     string   `json:"artifact"`
	Index        string   `json:"index"`
	Hardware     []string `json:"hardware"`
	Arch         []string `json:"arch"`
	MinInstalled uint64   `json:"min_installed"`
}

// releasesOf lists the releases of a channel in a targets metadata file,
// newest first.
func releasesOf(targetsJSON []byte, channel string) ([]*release, error) {
	md, err := metadata.Targets().FromBytes(targetsJSON)
	if err != nil {
		return nil, fmt.Errorf("%w: targets: %v", manifest.ErrBadMetadata, err)
	}
	byVersion := map[uint64]*release{}
	for p, tf := range md.Signed.Targets {
		if tf.Custom == nil {
			return nil, fmt.Errorf("%w: target %s: no custom fields", manifest.ErrBadMetadata, p)
		}
		var f targetFields
		if err := json.Unmarshal(*tf.Custom, &f); err != nil {
			return nil, fmt.Errorf("%w: target %s: %v", manifest.ErrBadMetadata, p, err)
		}
		if f.Channel != channel {
			continue
		}
		if p != manifest.TargetPath(f.Channel, f.Version, f.Artifact) || !manifest.ValidName(f.Artifact) {
			return nil, fmt.Errorf("%w: target %s: path does not match its fields", manifest.ErrBadMetadata, p)
		}
		id, err := parseID(f.Index)
		if err != nil {
			return nil, fmt.Errorf("%w: target %s: index %v", manifest.ErrBadMetadata, p, err)
		}
		r := byVersion[f.Version]
		if r == nil {
			r = &release{Channel: f.Channel, Version: f.Version, Hardware: f.Hardware, Arch: f.Arch, MinInstalled: f.MinInstalled}
			byVersion[f.Version] = r
		}
		r.Artifacts = append(r.Artifacts, artifact{Name: f.Artifact, Index: id, Target: tf})
	}
	out := make([]*release, 0, len(byVersion))
	for _, r := range byVersion {
		sort.Slice(r.Artifacts, func(i, j int) bool { return r.Artifacts[i].Name < r.Artifacts[j].Name })
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version > out[j].Version })
	return out, nil
}

// targetsMap returns the targets of a targets metadata file by path.
func targetsMap(targetsJSON []byte) (map[string]*metadata.TargetFiles, error) {
	md, err := metadata.Targets().FromBytes(targetsJSON)
	if err != nil {
		return nil, fmt.Errorf("%w: targets: %v", manifest.ErrBadMetadata, err)
	}
	return md.Signed.Targets, nil
}

// find returns the release with version v, or nil.
func find(rs []*release, v uint64) *release {
	for _, r := range rs {
		if r.Version == v {
			return r
		}
	}
	return nil
}

func refsOf(r *release) []ArtifactRef {
	out := make([]ArtifactRef, len(r.Artifacts))
	for i, a := range r.Artifacts {
		out[i] = ArtifactRef{Name: a.Name, Index: a.Index.String()}
	}
	return out
}
