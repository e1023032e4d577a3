package manifest

import (
	"context"
	"errors"
	"fmt"
	"strings"

	sumtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest/tlog"
)

// LogSlice is the part of a repository's transparency log that proves,
// with nothing else, that one targets metadata version is logged
// (tlog.Slice): the checkpoint, every tile of its tree, the lookup shard
// that finds the targets record and the entry bundle that holds it.
// Offline bundles and gossip announcements carry it beside the
// [MetadataSet], so a device that requires the log checks it
// ([LogWitness]) with no route to the repository.
type LogSlice struct {
	// Tree is the tree the checkpoint states, Entry the record's index in
	// it.
	Tree  sumtlog.Tree
	Entry int64
	// Files maps repository paths (log/checkpoint, log/lookup/XX,
	// log/tile/8/...) to their bytes.
	Files map[string][]byte
}

// CollectLog reads the log slice that proves targets metadata version
// version (exactly the bytes targets) from the repository f serves, or
// returns nil when f has no log (no log/checkpoint). maxEntries bounds the
// log: a slice holds every tile, 32 bytes an entry. Everything but the
// checkpoint's signature is checked (see tlog.ReadSlice): the slice is
// consistent, and whether a trusted key signed it is for the device to
// ask. Errors wrap manifest/tlog sentinels (ErrTooLarge for a log above
// maxEntries) or fetch.ErrNotFound for a missing file.
func CollectLog(ctx context.Context, f fetch.Fetcher, version int64, targets []byte, maxEntries int64) (*LogSlice, error) {
	lf := fetch.Sub(f, tlog.RepoDir)
	cp, err := lf.Fetch(ctx, tlog.CheckpointPath, tlog.MaxCheckpointSize)
	if errors.Is(err, fetch.ErrNotFound) {
		return nil, nil
	}
	fail := func(err error) (*LogSlice, error) {
		return nil, fmt.Errorf("transparency log: targets version %d: %w", version, err)
	}
	if err != nil {
		return fail(err)
	}
	record, err := logRecord(version, targets)
	if err != nil {
		return fail(err)
	}
	tree, err := UnverifiedCheckpoint(cp)
	if err != nil {
		return fail(fmt.Errorf("%s/%s: %w", tlog.RepoDir, tlog.CheckpointPath, err))
	}
	// The checkpoint just read, not a newer one an append may write
	// meanwhile: every tile and bundle of an older tree keeps its name.
	s, err := tlog.ReadSlice(ctx, pinned{lf, cp}, tree, record, maxEntries)
	if err != nil {
		return fail(err)
	}
	ls := &LogSlice{Tree: s.Tree, Entry: s.Index, Files: make(map[string][]byte, len(s.Files))}
	for p, b := range s.Files {
		ls.Files[tlog.RepoDir+"/"+p] = b
	}
	return ls, nil
}

// LogPathLimit checks p, a repository path, against the files a log slice
// may hold (log/checkpoint, log/lookup/XX, hash tiles and entry bundles
// of height 8 named as the log names them) and returns the largest size
// a file at p may have (tlog.PathLimit).
func LogPathLimit(p string) (int64, error) {
	rest, ok := strings.CutPrefix(p, tlog.RepoDir+"/")
	if !ok {
		return 0, fmt.Errorf("path %q: not under %s/", p, tlog.RepoDir)
	}
	limit, err := tlog.PathLimit(rest)
	if err != nil {
		return 0, fmt.Errorf("path %q: %w", p, err)
	}
	return limit, nil
}

// pinned serves a log directory with its checkpoint fixed.
type pinned struct {
	fetch.Fetcher
	checkpoint []byte
}

func (p pinned) Fetch(ctx context.Context, path string, maxBytes int64) ([]byte, error) {
	if path == tlog.CheckpointPath {
		return p.checkpoint, nil
	}
	return p.Fetcher.Fetch(ctx, path, maxBytes)
}
