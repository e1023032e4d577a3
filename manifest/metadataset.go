package manifest

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/shoalnet/shoal/fetch"
)

// MetadataSet is a repository's current signed metadata: every root
// version, root.json, and the timestamp with the snapshot and targets it
// pins. It is what a device needs to verify the newest release with no
// other route to the repository; bundles and announcements carry it.
type MetadataSet struct {
	// Files maps repository paths (metadata/...) to their bytes.
	Files          map[string][]byte
	TargetsVersion int64
	Targets        []byte
}

// CollectMetadata reads the current metadata set from f, at most maxRoots
// root versions, checking the snapshot and targets against the length and
// hashes their parents give (not the signatures: that is the verifier's
// job).
func CollectMetadata(ctx context.Context, f fetch.Fetcher, maxRoots int) (*MetadataSet, error) {
	files := map[string][]byte{}
	lim := DefaultLimits
	for v := 1; ; v++ {
		p := "metadata/" + strconv.Itoa(v) + ".root.json"
		b, err := f.Fetch(ctx, p, lim.Root)
		if errors.Is(err, fetch.ErrNotFound) {
			if v == 1 {
				return nil, fmt.Errorf("%w (is this a shoal repository?)", err)
			}
			break
		}
		if err != nil {
			return nil, err
		}
		if v > maxRoots {
			return nil, fmt.Errorf("%w: more than %d root versions", ErrTooLarge, maxRoots)
		}
		files[p] = b
	}
	if b, err := f.Fetch(ctx, "metadata/root.json", lim.Root); err == nil {
		files["metadata/root.json"] = b
	} else if !errors.Is(err, fetch.ErrNotFound) {
		return nil, err
	}

	tsPath := "metadata/timestamp.json"
	ts, err := f.Fetch(ctx, tsPath, lim.Timestamp)
	if err != nil {
		return nil, err
	}
	tsMD, err := metadata.Timestamp().FromBytes(ts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", tsPath, ErrBadMetadata, err)
	}
	files[tsPath] = ts
	snapPath, snap, err := fetchPinned(ctx, f, tsPath, tsMD.Signed.Meta["snapshot.json"], metadata.SNAPSHOT)
	if err != nil {
		return nil, err
	}
	snapMD, err := metadata.Snapshot().FromBytes(snap)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", snapPath, ErrBadMetadata, err)
	}
	files[snapPath] = snap
	tm := snapMD.Signed.Meta["targets.json"]
	targetsPath, targets, err := fetchPinned(ctx, f, snapPath, tm, metadata.TARGETS)
	if err != nil {
		return nil, err
	}
	files[targetsPath] = targets
	return &MetadataSet{Files: files, TargetsVersion: tm.Version, Targets: targets}, nil
}

// fetchPinned fetches the metadata file that parent's entry m pins.
func fetchPinned(ctx context.Context, f fetch.Fetcher, parent string, m *metadata.MetaFiles, role string) (string, []byte, error) {
	if m == nil || m.Version < 1 {
		return "", nil, fmt.Errorf("%s: %w: no %s.json entry", parent, ErrBadMetadata, role)
	}
	p := "metadata/" + strconv.FormatInt(m.Version, 10) + "." + role + ".json"
	limit := DefaultLimits.Metadata
	if m.Length > 0 && m.Length < limit {
		limit = m.Length
	}
	b, err := f.Fetch(ctx, p, limit)
	if err != nil {
		return "", nil, err
	}
	if m.Length > 0 || len(m.Hashes) > 0 {
		if err := m.VerifyLengthHashes(b); err != nil {
			return "", nil, fmt.Errorf("%s: %w: %v", p, ErrMixAndMatch, err)
		}
	}
	return p, b, nil
}

// fetchIndex fetches an artifact's index and checks it against its
// target's length and hashes and its ID.
