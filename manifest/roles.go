package manifest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/shoalnet/shoal/fetch"
)

// Metadata file names in a repository's metadata/ directory. Every
// version of root, snapshot and targets keeps its own file (consistent
// snapshots), so a reader that follows timestamp.json never sees a mix of
// two publishes; timestamp.json is the one file replaced in place, last.
const (
	metaDir       = "metadata"
	timestampName = "timestamp.json"
)

func versionedName(version int64, role string) string {
	return strconv.FormatInt(version, 10) + "." + role + ".json"
}

// metaPath returns the repository path of a role's metadata file.
func metaPath(role string, version int64) string {
	if role == metadata.TIMESTAMP {
		return metaDir + "/" + timestampName
	}
	return metaDir + "/" + versionedName(version, role)
}

// metaFileFor describes data for its signed parent: version, length and
// sha256, so a client can bound the fetch and reject any other bytes.
func metaFileFor(version int64, data []byte) *metadata.MetaFiles {
	sum := sha256.Sum256(data)
	return &metadata.MetaFiles{Version: version, Length: int64(len(data)), Hashes: metadata.Hashes{"sha256": sum[:]}}
}

// signedSet is one publish's worth of metadata, signed and serialized.
type signedSet struct {
	targets, snapshot, timestamp    []byte
	targetsV, snapshotV, timestampV int64
	targetsMD                       *metadata.Metadata[metadata.TargetsType]
}

// buildSet signs targets (with the given target files) and the snapshot
// and timestamp that pin it, one version above prev's; the targets
// version is also above logged, the newest targets version already in the
// transparency log (0: none).
func buildSet(k *Keyring, prev *repoState, targets map[string]*metadata.TargetFiles, expires time.Time, logged int64) (*signedSet, error) {
	s := &signedSet{targetsV: 1, snapshotV: 1, timestampV: 1}
	if prev != nil {
		s.targetsV = prev.targets.Signed.Version + 1
		s.snapshotV = prev.snapshot.Signed.Version + 1
		s.timestampV = prev.timestamp.Signed.Version + 1
	}
	s.targetsV = max(s.targetsV, logged+1)
	t := metadata.Targets(expires)
	t.Signed.Version = s.targetsV
	t.Signed.Targets = targets
	if err := sign(k, metadata.TARGETS, t); err != nil {
		return nil, err
	}
	var err error
	if s.targets, err = t.ToBytes(true); err != nil {
		return nil, err
	}
	s.targetsMD = t

	sn := metadata.Snapshot(expires)
	sn.Signed.Version = s.snapshotV
	sn.Signed.Meta = map[string]*metadata.MetaFiles{"targets.json": metaFileFor(s.targetsV, s.targets)}
	if err := sign(k, metadata.SNAPSHOT, sn); err != nil {
		return nil, err
	}
	if s.snapshot, err = sn.ToBytes(true); err != nil {
		return nil, err
	}

	ts := metadata.Timestamp(expires)
	ts.Signed.Version = s.timestampV
	ts.Signed.Meta = map[string]*metadata.MetaFiles{"snapshot.json": metaFileFor(s.snapshotV, s.snapshot)}
	if err := sign(k, metadata.TIMESTAMP, ts); err != nil {
		return nil, err
	}
	if s.timestamp, err = ts.ToBytes(true); err != nil {
		return nil, err
	}
	return s, nil
}

// repoState is what a repository currently publishes.
type repoState struct {
	timestamp *metadata.Metadata[metadata.TimestampType]
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	targets   *metadata.Metadata[metadata.TargetsType]
}

// readRepoState loads a repository's current metadata, following
// timestamp -> snapshot -> targets, and checks each against its parent
// and against the key directory's roots (any version: the keys may have
// been rotated since the last publish). It returns nil for an empty
// repository. The publisher re-signs what it carries forward, so it must
// not trust files someone else dropped into the directory.
func readRepoState(ctx context.Context, repo string, k *Keyring) (*repoState, error) {
	f := fetch.Dir(repo)
	tsb, err := f.Fetch(ctx, metaDir+"/"+timestampName, defaultLimits.Timestamp)
	if errors.Is(err, fetch.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	hist, err := k.RootHistory()
	if err != nil {
		return nil, err
	}
	var roots []*metadata.Metadata[metadata.RootType]
	for _, b := range hist {
		r, err := metadata.Root().FromBytes(b)
		if err != nil {
			return nil, err
		}
		roots = append(roots, r)
	}
	verify := func(role string, md any) error {
		var last error
		for i := len(roots) - 1; i >= 0; i-- {
			if last = roots[i].VerifyDelegate(role, md); last == nil {
				return nil
			}
		}
		return classify(role, last)
	}
	st := &repoState{}
	where := func(name string) string { return filepath.Join(repo, metaDir, name) }
	if st.timestamp, err = metadata.Timestamp().FromBytes(tsb); err != nil {
		return nil, fmt.Errorf("%s: %w", where(timestampName), classify("timestamp", err))
	}
	if err := verify(metadata.TIMESTAMP, st.timestamp); err != nil {
		return nil, fmt.Errorf("%s: not signed by this key directory: %w", where(timestampName), err)
	}
	sm := st.timestamp.Signed.Meta["snapshot.json"]
	if sm == nil {
		return nil, fmt.Errorf("%s: %w: no snapshot.json entry", where(timestampName), ErrBadMetadata)
	}
	snb, err := f.Fetch(ctx, metaPath(metadata.SNAPSHOT, sm.Version), defaultLimits.Metadata)
	if err != nil {
		return nil, err
	}
	if err := sm.VerifyLengthHashes(snb); err != nil {
		return nil, fmt.Errorf("%s: %w", where(versionedName(sm.Version, "snapshot")), classify("snapshot", err))
	}
	if st.snapshot, err = metadata.Snapshot().FromBytes(snb); err != nil {
		return nil, fmt.Errorf("%s: %w", where(versionedName(sm.Version, "snapshot")), classify("snapshot", err))
	}
	if err := verify(metadata.SNAPSHOT, st.snapshot); err != nil {
		return nil, fmt.Errorf("%s: %w", where(versionedName(sm.Version, "snapshot")), err)
	}
	tm := st.snapshot.Signed.Meta["targets.json"]
	if tm == nil {
		return nil, fmt.Errorf("%s: %w: no targets.json entry", where(versionedName(sm.Version, "snapshot")), ErrBadMetadata)
	}
	tb, err := f.Fetch(ctx, metaPath(metadata.TARGETS, tm.Version), defaultLimits.Metadata)
	if err != nil {
		return nil, err
	}
	if err := tm.VerifyLengthHashes(tb); err != nil {
		return nil, fmt.Errorf("%s: %w", where(versionedName(tm.Version, "targets")), classify("targets", err))
	}
	if st.targets, err = metadata.Targets().FromBytes(tb); err != nil {
		return nil, fmt.Errorf("%s: %w", where(versionedName(tm.Version, "targets")), classify("targets", err))
	}
	if err := verify(metadata.TARGETS, st.targets); err != nil {
		return nil, fmt.Errorf("%s: %w", where(versionedName(tm.Version, "targets")), err)
	}
	return st, nil
}
