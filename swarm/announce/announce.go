// Package announce is the release announcement a node publishes on its
// fleet's gossipsub topic: the repository's current signed metadata (every
// root version, the timestamp, and the snapshot and targets it pins) and,
// when the repository keeps a transparency log, the log slice that proves
// those targets are logged (manifest.LogSlice), so that a node with no
// route to the origin can verify the newest release from the announcement
// alone — the log too, when it requires it — before it relays it. The
// large artifact indexes are not in it: they come from peers or the
// origin afterwards, checked against the hashes the signed targets give
// (manifest.Client.FetchIndexes).
//
// An announcement is outside input. Decode bounds it before parsing and
// accepts only metadata and log paths of the repository's own form, each
// within its own size bound, so what it hands a verifier is a small,
// well-formed set of files. Whether they are authentic is the verifier's
// question (manifest.Client.VerifyMetadata over Announcement.Fetcher, with
// a manifest.LogWitness when the log is required); CheckLog checks what no
// key is needed for: that the log files are exactly the slice of the
// verified targets.
package announce

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
)

// Limits of an announcement.
const (
	// MaxSize bounds an encoded announcement. gossipsub's message limit
	// (swarm.MaxAnnouncementSize) must be at least this.
	MaxSize = 4 << 20
	// MaxMetadataFiles bounds the metadata files it carries (root
	// versions, root.json, timestamp, snapshot, targets).
	MaxMetadataFiles = 40
	// MaxRoots bounds the root versions collected for one.
	MaxRoots = MaxMetadataFiles - 4
	// MaxLogEntries bounds the transparency log an announcement carries a
	// slice of. The slice holds every tile of the log's tree (a node that
	// remembers an older tree proves consistency from tiles along that
	// tree's edge, which the announcer cannot know), 32 bytes an entry:
	// 65,536 entries take 2.1 MiB, 2.8 MiB in base64, and leave the rest
	// of MaxSize to the metadata. At ten publishes a day that is 18 years
	// of a repository's history; Collect fails for a larger log.
	MaxLogEntries = 1 << 16
	// MaxLogFiles bounds the log files: the checkpoint, one lookup shard,
	// one entry bundle, and the tiles of a tree of MaxLogEntries (256 at
	// level 0, one at level 1, one at level 2).
	MaxLogFiles = 3 + MaxLogEntries>>8 + 2
	// MaxFiles bounds all files. It was 40 while announcements carried
	// metadata only; the log slice brought it up.
	MaxFiles = MaxMetadataFiles + MaxLogFiles
	// Version is the announcement format.
	Version = 1
)

// Sentinel errors.
var (
	// ErrMalformed is wrapped by every decoding failure.
	ErrMalformed = errors.New("announce: malformed announcement")
	// ErrBadLog is wrapped by every CheckLog failure: the log files are not
	// the slice that proves the targets.
	ErrBadLog = errors.New("announce: the log files do not prove the targets")
)

// Announcement is one release announcement.
type Announcement struct {
	// Version is the format, 1.
	Version int `json:"v"`
	// Fleet and Channel name the topic it belongs on; a node drops one
	// that arrives on another topic.
	Fleet   string `json:"fleet"`
	Channel string `json:"channel"`
	// Files maps repository paths to their bytes: metadata/N.root.json,
	// metadata/root.json, metadata/timestamp.json, metadata/N.snapshot.json
	// and metadata/N.targets.json (one of each of the last three), and
	// with a log, log/checkpoint, log/lookup/XX and log/tile/8/... .
	Files map[string][]byte `json:"files"`
}

// Collect builds the announcement of the repository f serves now: its
// metadata set and, when it has a log (log/checkpoint), the log slice of
// its targets (manifest.CollectLog, as a bundle carries it).
func Collect(ctx context.Context, f fetch.Fetcher, fleet, channel string) (*Announcement, error) {
	set, err := manifest.CollectMetadata(ctx, f, MaxRoots)
	if err != nil {
		return nil, fmt.Errorf("announce: %w", err)
	}
	ls, err := manifest.CollectLog(ctx, f, set.TargetsVersion, set.Targets, MaxLogEntries)
	if err != nil {
		return nil, fmt.Errorf("announce: %w", err)
	}
	a := &Announcement{Version: Version, Fleet: fleet, Channel: channel, Files: set.Files}
	if ls != nil {
		for p, b := range ls.Files {
			a.Files[p] = b
		}
	}
	if err := a.check(); err != nil {
		return nil, err
	}
	return a, nil
}

// Fetcher serves the announcement's files as a repository holding only
// metadata and the log slice, for manifest.Client.VerifyMetadata and its
// manifest.LogWitness.
func (a *Announcement) Fetcher() fetch.Fetcher { return fetch.Mem(a.Files) }

// HasLog tells whether the announcement carries log files.
func (a *Announcement) HasLog() bool {
	for p := range a.Files {
		if strings.HasPrefix(p, logDir) {
			return true
		}
	}
	return false
}

// Targets returns the targets metadata the announcement carries, with the
// version its name gives; ok is false when it carries none.
func (a *Announcement) Targets() (version int64, targets []byte, ok bool) {
	for p, b := range a.Files {
		if m := metadataPath.FindStringSubmatch(p); m != nil && m[2] == "targets" {
			v, err := strconv.ParseInt(strings.TrimSuffix(m[1], ".targets"), 10, 64)
			return v, b, err == nil
		}
	}
	return 0, nil, false
}

// CheckLog checks the log files the announcement carries against targets
// metadata version version (exactly the bytes targets: those the verifier
// trusts), needing no key: they must be exactly the slice that
// manifest.CollectLog makes for it — the checkpoint's tree holds the
// targets record, the entry bundle holds it, every tile hashes to that
// tree, and no other file is there. An announcement without log files
// passes (HasLog tells them apart). Whether a trusted key signed the
// checkpoint, and whether the log extends the one a node saw before, is
// the question of manifest.LogWitness over Fetcher. Errors wrap ErrBadLog.
func (a *Announcement) CheckLog(ctx context.Context, version int64, targets []byte) error {
	if !a.HasLog() {
		return nil
	}
	ls, err := manifest.CollectLog(ctx, a.Fetcher(), version, targets, MaxLogEntries)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadLog, err)
	}
	if ls == nil {
		return fmt.Errorf("%w: log files without %scheckpoint", ErrBadLog, logDir)
	}
	paths := make([]string, 0, len(a.Files))
	for p := range a.Files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if _, ok := ls.Files[p]; strings.HasPrefix(p, logDir) && !ok {
			return fmt.Errorf("%w: %s is not part of the slice of targets version %d (entry %d of a log of %d)", ErrBadLog, p, version, ls.Entry, ls.Tree.N)
		}
	}
	return nil
}

// Encode returns the announcement's bytes. Equal announcements encode
// equally (keys sorted), so gossipsub's duplicate detection sees through
// re-announcements.
func (a *Announcement) Encode() ([]byte, error) {
	if err := a.check(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes encoded, at most %d", ErrMalformed, len(b), MaxSize)
	}
	return b, nil
}

// Decode parses an announcement: at most MaxSize bytes, exactly the known
// fields, one JSON object, files only at metadata and log paths (at most
// MaxMetadataFiles and MaxLogFiles), each within the bound of its kind.
func Decode(b []byte) (*Announcement, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrMalformed, len(b), MaxSize)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var a Announcement
	if err := d.Decode(&a); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the announcement", ErrMalformed)
	}
	if err := a.check(); err != nil {
		return nil, err
	}
	return &a, nil
}

// metadataPath is the form of every metadata file an announcement may
// carry.
var metadataPath = regexp.MustCompile(`^metadata/(root|timestamp|[1-9][0-9]{0,18}\.(root|snapshot|targets))\.json$`)

// logDir is where the log files of an announcement live.
const logDir = "log/"

// name is the form of fleet and channel names.
var name = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func (a *Announcement) check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	switch {
	case a.Version != Version:
		return bad("format version %d, want %d", a.Version, Version)
	case !name.MatchString(a.Fleet):
		return bad("fleet %q", a.Fleet)
	case !name.MatchString(a.Channel):
		return bad("channel %q", a.Channel)
	case len(a.Files) == 0 || len(a.Files) > MaxFiles:
		return bad("%d files, want 1 to %d", len(a.Files), MaxFiles)
	}
	paths := make([]string, 0, len(a.Files))
	for p := range a.Files {
		paths = append(paths, p)
	}
	sort.Strings(paths) // the first bad path, the same every time
	var meta, logs int
	roles := map[string]string{}
	lim := manifest.DefaultLimits
	for _, p := range paths {
		var limit int64
		if m := metadataPath.FindStringSubmatch(p); m != nil {
			meta++
			switch {
			case m[1] == "timestamp":
				limit = lim.Timestamp
			case m[1] == "root" || m[2] == "root":
				limit = lim.Root
			default:
				limit = lim.Metadata
				if other, ok := roles[m[2]]; ok {
					return bad("two %s files, %s and %s", m[2], other, p)
				}
				roles[m[2]] = p
			}
		} else if strings.HasPrefix(p, logDir) {
			logs++
			var err error
			if limit, err = manifest.LogPathLimit(p); err != nil {
				return bad("%v", err)
			}
		} else {
			return bad("file %q is not a metadata or log file", p)
		}
		if n := len(a.Files[p]); int64(n) > limit {
			return bad("%s: %d bytes, at most %d", p, n, limit)
		}
	}
	switch {
	case meta > MaxMetadataFiles:
		return bad("%d metadata files, at most %d", meta, MaxMetadataFiles)
	case logs > MaxLogFiles:
		return bad("%d log files, at most %d", logs, MaxLogFiles)
	}
	if _, ok := a.Files["metadata/timestamp.json"]; !ok {
		return bad("no metadata/timestamp.json")
	}
	return nil
}

// Topic is the gossipsub topic of a fleet's channel.
func Topic(fleet, channel string) string { return "/shoal/" + fleet + "/releases/" + channel }
