package bundle

import (
	"context"
	"errors"
	"fmt"

	sumtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/manifest/tlog"
)

// A bundle carries the part of the transparency log that a device needs
// to prove, offline, that the targets version it verified is logged and
// that the log it saw before is a prefix of this one: the log slice
// (manifest.LogSlice, tlog.Slice), which gossip announcements carry too.

// logSlice is the log part of a bundle.
type logSlice struct {
	tree  sumtlog.Tree
	index int64             // entry of the targets record
	files map[string][]byte // by repository path ("log/...")
}

// targetsRecord is the log record of a targets version, as
// tlog.Publisher appends it: no channel, since one targets file serves
// the whole repository.
func targetsRecord(version int64, targets []byte) ([]byte, error) {
	return tlog.TargetsOf("", version, targets).Record()
}

// proveUnsigned proves record is in the tree that checkpoint states,
// without checking the checkpoint's signature: Create has no log key, and
// Verify without LogKeys checks the log for consistency only. It returns
// the tree and the record's index.
func proveUnsigned(ctx context.Context, lf fetch.Fetcher, checkpoint []byte, record []byte) (sumtlog.Tree, int64, error) {
	tree, err := manifest.UnverifiedCheckpoint(checkpoint)
	if err != nil {
		return sumtlog.Tree{}, 0, fmt.Errorf("%s%s: %w", logPrefix, tlog.CheckpointPath, err)
	}
	idx, err := tlog.NewReader(lf, nil).ProveInclusion(ctx, tree, record)
	if err != nil {
		return sumtlog.Tree{}, 0, err
	}
	return tree, idx, nil
}

// sliceLog checks, through lf (rooted at the log directory), what a
// bundle needs beyond the inclusion proof of record at entry idx of tree
// (which the caller has made): tlog.ReadSlice, whose every tile must be
// authentic. It returns the log files a bundle carries, by repository
// path. A bundle holds at most maxEntries entries, so at most that many
// level-0 tiles: a larger tree is malformed.
func sliceLog(ctx context.Context, lf fetch.Fetcher, tree sumtlog.Tree, record []byte, idx int64) (*logSlice, error) {
	s, err := tlog.ReadSlice(ctx, lf, tree, record, int64(maxEntries)<<tlog.TileHeight)
	if errors.Is(err, tlog.ErrTooLarge) {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err != nil {
		return nil, err
	}
	if s.Index != idx {
		return nil, fmt.Errorf("%w: the lookup finds the record at entry %d, the proof at %d", tlog.ErrCorrupt, s.Index, idx)
	}
	ls := &logSlice{tree: tree, index: idx, files: map[string][]byte{}}
	for p, b := range s.Files {
		ls.files[logPrefix+p] = b
	}
	return ls, nil
}

// collectLog returns the log files for a bundle of targets version
// version, or nil when the repository has no log.
func collectLog(ctx context.Context, f fetch.Fetcher, version int64, targets []byte) (*logSlice, error) {
	s, err := manifest.CollectLog(ctx, f, version, targets, int64(maxEntries)<<tlog.TileHeight)
	if errors.Is(err, tlog.ErrTooLarge) {
		err = fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err != nil {
		return nil, fmt.Errorf("bundle: %w (use NoLog to leave the log out)", err)
	}
	if s == nil {
		return nil, nil
	}
	return &logSlice{tree: s.Tree, index: s.Entry, files: s.Files}, nil
}
