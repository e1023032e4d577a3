// Package announce is the release announcement a node publishes on its
// fleet's gossipsub topic: the repository's current signed metadata (every
// root version, the timestamp, and the snapshot and targets it pins), so
// that a node with no route to the origin can verify the newest release
// from the announcement alone, before it relays it. The large artifact
// indexes are not in it: they come from peers or the origin afterwards,
// checked against the hashes the signed targets give
// (manifest.Client.FetchIndexes).
//
// An announcement is outside input. Decode bounds it before parsing and
// accepts only metadata paths of the repository's own form, so what it
// hands a verifier is a small, well-formed set of files. Whether they are
// authentic is the verifier's question (manifest.Client.VerifyMetadata over
// Announcement.Fetcher).
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

	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
)

// Limits of an announcement.
const (
	// MaxSize bounds an encoded announcement. gossipsub's message limit
	// must be at least this.
	MaxSize = 4 << 20
	// MaxFiles bounds the metadata files it carries (root versions,
	// root.json, timestamp, snapshot, targets).
	MaxFiles = 40
	// MaxRoots bounds the root versions collected for one.
	MaxRoots = MaxFiles - 4
	// Version is the announcement format.
	Version = 1
)

// ErrMalformed is wrapped by every decoding failure.
var ErrMalformed = errors.New("announce: malformed announcement")

// Announcement is one release announcement.
type Announcement struct {
	// Version is the format, 1.
	Version int `json:"v"`
	// Fleet and Channel name the topic it belongs on; a node drops one
	// that arrives on another topic.
	Fleet   string `json:"fleet"`
	Channel string `json:"channel"`
	// Files maps repository paths (metadata/N.root.json, metadata/root.json,
	// metadata/timestamp.json, metadata/N.snapshot.json,
	// metadata/N.targets.json) to their bytes.
	Files map[string][]byte `json:"files"`
}

// Collect builds the announcement of the repository f serves now.
func Collect(ctx context.Context, f fetch.Fetcher, fleet, channel string) (*Announcement, error) {
	set, err := manifest.CollectMetadata(ctx, f, MaxRoots)
	if err != nil {
		return nil, fmt.Errorf("announce: %w", err)
	}
	a := &Announcement{Version: Version, Fleet: fleet, Channel: channel, Files: set.Files}
	if err := a.check(); err != nil {
		return nil, err
	}
	return a, nil
}

// Fetcher serves the announcement's files as a repository holding only
// metadata, for manifest.Client.VerifyMetadata.
func (a *Announcement) Fetcher() fetch.Fetcher { return fetch.Mem(a.Files) }

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
// fields, one JSON object, and files only at metadata paths.
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

// metadataPath is the form of every file an announcement may carry.
var metadataPath = regexp.MustCompile(`^metadata/(root|timestamp|[1-9][0-9]{0,18}\.(root|snapshot|targets))\.json$`)

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
	for _, p := range paths {
		if !metadataPath.MatchString(p) {
			return bad("file %q is not a metadata file", p)
		}
	}
	if _, ok := a.Files["metadata/timestamp.json"]; !ok {
		return bad("no metadata/timestamp.json")
	}
	return nil
}

// Topic is the gossipsub topic of a fleet's channel.
func Topic(fleet, channel string) string { return "/shoal/" + fleet + "/releases/" + channel }
