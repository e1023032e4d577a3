package bundle

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/manifest/tlog"
)

// FormatVersion is the bundle format this package writes for a bundle
// without delta objects; it reads it and FormatDeltas.
const FormatVersion = 1

// FormatDeltas is the format of a bundle that carries delta indexes and
// delta objects (Info.Deltas). It has its own number so that a reader
// from before deltas refuses such a bundle by its format ("format 2, this
// reader knows 1") instead of by its first deltas/ path, and so that a
// bundle without deltas stays byte for byte what it was.
const FormatDeltas = 2

// InfoPath is the name of the first entry, which describes the bundle.
const InfoPath = "bundle.json"

// Bounds on what a reader accepts.
const (
	// MaxEntries bounds the entries of one bundle. The reader keeps about
	// a hundred bytes per entry; a million entries is 64 GiB of chunks at
	// the default 64 KiB average.
	MaxEntries = 1 << 20
	// maxInfoSize bounds bundle.json.
	maxInfoSize = 64 << 10
	// maxTrailer bounds the zero bytes accepted after the end-of-archive
	// marker (tar implementations pad to a 10240-byte record).
	maxTrailer = 10240
	blockSize  = 512
)

// deltasDir is where a repository keeps delta objects and delta indexes
// (manifest.DeltaPath, manifest.DeltaIndexPath).
const deltasDir = "deltas"

// logPrefix is where the transparency log lives in a repository.
const logPrefix = tlog.RepoDir + "/"

// Info is the content of bundle.json: what the bundle is for. It is not
// signed; Verify checks it against the signed metadata in the bundle.
type Info struct {
	Format  int    `json:"format"`
	Channel string `json:"channel"`
	Version uint64 `json:"version"`
	// From is the release the bundle is a delta against (0: a full
	// bundle): it leaves out every chunk of release From.
	From           uint64 `json:"from,omitempty"`
	TargetsVersion int64  `json:"targets_version"`
	// Artifacts of release Version and, with From, of release From: the
	// names and index IDs a device or an importer pins.
	Artifacts     []ArtifactRef `json:"artifacts"`
	FromArtifacts []ArtifactRef `json:"from_artifacts,omitempty"`
	// Deltas names, by artifact, the delta index from release From to
	// release Version the bundle carries (only with From; format
	// FormatDeltas). The chunks its delta objects build are left out; a
	// device whose active slot holds release From builds them.
	Deltas []DeltaRef `json:"deltas,omitempty"`
	Counts Counts     `json:"counts"`
}

// DeltaRef names the delta index the bundle carries for an artifact.
type DeltaRef struct {
	Artifact   string `json:"artifact"`
	DeltaIndex string `json:"delta_index"` // CID, canonical string form
}

// ArtifactRef names an artifact's index.
type ArtifactRef struct {
	Name  string `json:"name"`
	Index string `json:"index"` // CID, canonical string form
}

// Counts are the number of entries of each kind after bundle.json.
type Counts struct {
	Metadata int `json:"metadata"`
	Log      int `json:"log"`
	Index    int `json:"index"`
	Chunks   int `json:"chunks"`
	// Delta indexes and delta objects (format FormatDeltas only).
	DeltaIndexes int `json:"delta_indexes,omitempty"`
	Deltas       int `json:"deltas,omitempty"`
}

func (c Counts) total() int {
	return c.Metadata + c.Log + c.Index + c.Chunks + c.DeltaIndexes + c.Deltas
}

// parseInfo decodes bundle.json strictly: known fields only, one object,
// supported format, valid names and IDs.
func parseInfo(b []byte) (Info, error) {
	var in Info
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return in, fmt.Errorf("%s: %v", InfoPath, err)
	}
	if dec.More() {
		return in, fmt.Errorf("%s: data after the object", InfoPath)
	}
	if in.Format != FormatVersion && in.Format != FormatDeltas {
		return in, fmt.Errorf("%s: format %d, this reader knows %d and %d", InfoPath, in.Format, FormatVersion, FormatDeltas)
	}
	if !manifest.ValidName(in.Channel) {
		return in, fmt.Errorf("%s: channel %q", InfoPath, in.Channel)
	}
	if in.Version == 0 || in.From >= in.Version {
		return in, fmt.Errorf("%s: version %d from %d", InfoPath, in.Version, in.From)
	}
	if in.TargetsVersion < 1 {
		return in, fmt.Errorf("%s: targets_version %d", InfoPath, in.TargetsVersion)
	}
	if err := checkRefs("artifacts", in.Artifacts); err != nil {
		return in, err
	}
	if (in.From == 0) != (len(in.FromArtifacts) == 0) {
		return in, fmt.Errorf("%s: from_artifacts must be given exactly when from is", InfoPath)
	}
	if err := checkRefs("from_artifacts", in.FromArtifacts); err != nil {
		return in, err
	}
	c := in.Counts
	if c.Metadata < 0 || c.Log < 0 || c.Index < 0 || c.Chunks < 0 || c.DeltaIndexes < 0 || c.Deltas < 0 || c.total() > MaxEntries {
		return in, fmt.Errorf("%s: counts %+v", InfoPath, c)
	}
	if err := checkDeltaRefs(in); err != nil {
		return in, err
	}
	return in, nil
}

// checkDeltaRefs checks the delta fields of bundle.json against each
// other: deltas exactly in format FormatDeltas, only with from, one
// delta index per artifact of the release, sorted, and one entry counted
// per delta index.
func checkDeltaRefs(in Info) error {
	if (in.Format == FormatDeltas) != (len(in.Deltas) > 0) {
		return fmt.Errorf("%s: format %d with %d delta indexes (format %d carries deltas, format %d none)", InfoPath, in.Format, len(in.Deltas), FormatDeltas, FormatVersion)
	}
	if len(in.Deltas) > 0 && in.From == 0 {
		return fmt.Errorf("%s: deltas without from", InfoPath)
	}
	if in.Counts.DeltaIndexes != len(in.Deltas) || (len(in.Deltas) == 0 && in.Counts.Deltas != 0) {
		return fmt.Errorf("%s: counts %d delta indexes and %d deltas for %d delta indexes named", InfoPath, in.Counts.DeltaIndexes, in.Counts.Deltas, len(in.Deltas))
	}
	arts := map[string]bool{}
	for _, a := range in.Artifacts {
		arts[a.Name] = true
	}
	for i, d := range in.Deltas {
		if !arts[d.Artifact] || (i > 0 && in.Deltas[i-1].Artifact >= d.Artifact) {
			return fmt.Errorf("%s: deltas: artifact %q (want artifacts of the release, sorted, unique)", InfoPath, d.Artifact)
		}
		if _, err := parseID(d.DeltaIndex); err != nil {
			return fmt.Errorf("%s: deltas %s: delta_index: %v", InfoPath, d.Artifact, err)
		}
	}
	return nil
}

func checkRefs(field string, refs []ArtifactRef) error {
	if len(refs) > 64 {
		return fmt.Errorf("%s: %s: %d artifacts", InfoPath, field, len(refs))
	}
	for i, a := range refs {
		if !manifest.ValidName(a.Name) || (i > 0 && refs[i-1].Name >= a.Name) {
			return fmt.Errorf("%s: %s: name %q (want valid names, sorted, unique)", InfoPath, field, a.Name)
		}
		if _, err := parseID(a.Index); err != nil {
			return fmt.Errorf("%s: %s %s: index: %v", InfoPath, field, a.Name, err)
		}
	}
	return nil
}

// parseID decodes a chunk or index ID that must be in canonical form.
func parseID(s string) (cid.Cid, error) {
	id, err := cid.Decode(s)
	if err != nil {
		return cid.Undef, fmt.Errorf("%q is not a content ID", s)
	}
	if id.String() != s {
		return cid.Undef, fmt.Errorf("%q is not in canonical form", s)
	}
	if _, _, err := chunker.ParseID(id); err != nil {
		return cid.Undef, fmt.Errorf("%q: %v", s, err)
	}
	return id, nil
}

// kind is the area of the repository an entry belongs to.
type kind int

const (
	kindMetadata kind = iota
	kindLog
	kindIndex
	kindChunk
	kindDeltaIndex
	kindDelta
)

func (k kind) String() string {
	return [...]string{"metadata", "log", "index", "chunk", "delta index", "delta"}[k]
}

// metaNameRE matches the metadata files a repository holds.
var metaNameRE = regexp.MustCompile(`^(root|timestamp|[1-9][0-9]{0,18}\.(root|snapshot|targets))\.json$`)

// classify checks an entry path against the repository layout and returns
// its kind and the largest size an entry of that path may have.
func classify(p string) (kind, int64, error) {
	if len(p) > 255 || p == "" || strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\\\x00") {
		return 0, 0, fmt.Errorf("path %q: not a relative repository path", p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." || strings.HasPrefix(seg, ".") {
			return 0, 0, fmt.Errorf("path %q: segment %q not allowed", p, seg)
		}
	}
	lim := manifest.DefaultLimits
	area, rest, _ := strings.Cut(p, "/")
	switch area {
	case "metadata":
		if !metaNameRE.MatchString(rest) {
			return 0, 0, fmt.Errorf("path %q: not a metadata file name", p)
		}
		switch {
		case rest == "timestamp.json":
			return kindMetadata, lim.Timestamp, nil
		case strings.HasSuffix(rest, "root.json"):
			return kindMetadata, lim.Root, nil
		}
		return kindMetadata, lim.Metadata, nil
	case "index":
		if _, err := parseID(rest); err != nil {
			return 0, 0, fmt.Errorf("path %q: %v", p, err)
		}
		return kindIndex, lim.Index, nil
	case "chunks":
		_, name, _ := strings.Cut(rest, "/")
		id, err := parseID(name)
		if err != nil {
			return 0, 0, fmt.Errorf("path %q: %v", p, err)
		}
		if manifest.ChunkPath(id) != p {
			return 0, 0, fmt.Errorf("path %q: chunk belongs at %s", p, manifest.ChunkPath(id))
		}
		return kindChunk, manifest.MaxObjectSize(chunker.MaxChunkCeil), nil
	case deltasDir:
		dir, name, _ := strings.Cut(rest, "/")
		id, err := parseID(name)
		if err != nil {
			return 0, 0, fmt.Errorf("path %q: %v", p, err)
		}
		if dir == "index" {
			if p != manifest.DeltaIndexPath(id) {
				return 0, 0, fmt.Errorf("path %q: delta index belongs at %s", p, manifest.DeltaIndexPath(id))
			}
			return kindDeltaIndex, manifest.DefaultLimits.Index, nil
		}
		if manifest.DeltaPath(id) != p {
			return 0, 0, fmt.Errorf("path %q: delta object belongs at %s", p, manifest.DeltaPath(id))
		}
		return kindDelta, manifest.MaxDeltaObjectSize(chunker.MaxChunkCeil), nil
	case tlog.RepoDir:
		limit, err := manifest.LogPathLimit(p)
		if err != nil {
			return 0, 0, err
		}
		return kindLog, limit, nil
	}
	return 0, 0, fmt.Errorf("path %q: outside metadata/, %s, index/, chunks/ and deltas/", p, logPrefix)
}

// header is what the reader takes from a tar header.
type header struct {
	name string
	size int64
}

// parseHeader decodes one POSIX ustar header block. Only regular files
// are accepted; PAX and GNU extensions, links, directories and devices
// are not, since a bundle never needs them.
func parseHeader(b []byte) (header, error) {
	var h header
	if string(b[257:263]) != "ustar\x00" || string(b[263:265]) != "00" {
		return h, fmt.Errorf("not a POSIX ustar header (magic %q)", b[257:265])
	}
	want, err := parseOctal(b[148:156])
	if err != nil {
		return h, fmt.Errorf("checksum field: %v", err)
	}
	var sum int64
	for i, c := range b[:blockSize] {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int64(c)
	}
	if sum != want {
		return h, fmt.Errorf("header checksum %d, computed %d", want, sum)
	}
	switch t := b[156]; t {
	case tar.TypeReg, 0:
	default:
		return h, fmt.Errorf("entry type %q: only regular files are allowed", t)
	}
	name, err := cString(b[0:100])
	if err != nil {
		return h, fmt.Errorf("name: %v", err)
	}
	prefix, err := cString(b[345:500])
	if err != nil {
		return h, fmt.Errorf("prefix: %v", err)
	}
	if prefix != "" {
		name = prefix + "/" + name
	}
	h.name = name
	if b[124]&0x80 != 0 {
		return h, fmt.Errorf("entry %q: binary size field not supported", name)
	}
	if h.size, err = parseOctal(b[124:136]); err != nil {
		return h, fmt.Errorf("entry %q: size field: %v", name, err)
	}
	return h, nil
}

// cString reads a NUL-padded field: text up to the first NUL, then only
// NULs.
func cString(f []byte) (string, error) {
	i := bytes.IndexByte(f, 0)
	if i < 0 {
		return string(f), nil
	}
	for _, c := range f[i:] {
		if c != 0 {
			return "", fmt.Errorf("bytes after the terminating NUL")
		}
	}
	return string(f[:i]), nil
}

// parseOctal reads an octal number field: optional leading spaces, 1 to
// 11 octal digits, then NULs or spaces.
func parseOctal(f []byte) (int64, error) {
	s := strings.TrimLeft(string(f), " ")
	s = strings.TrimRight(s, " \x00")
	if s == "" || len(s) > 11 {
		return 0, fmt.Errorf("%q is not a number", f)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '7' {
			return 0, fmt.Errorf("%q is not octal", f)
		}
	}
	v, err := strconv.ParseInt(s, 8, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: %v", f, err)
	}
	return v, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// tarWriter writes deterministic ustar entries: fixed mode, owner and
// time, so that equal contents give equal bytes.
type tarWriter struct {
	tw *tar.Writer
}

var epoch = time.Unix(0, 0)

func newTarWriter(w io.Writer) *tarWriter { return &tarWriter{tw: tar.NewWriter(w)} }

func (w *tarWriter) add(name string, data []byte) error {
	if len(name) > 100 {
		return fmt.Errorf("bundle entry %q: name longer than 100 bytes", name)
	}
	hdr := &tar.Header{
		Typeflag: tar.TypeReg, Name: name, Size: int64(len(data)), Mode: 0o644,
		ModTime: epoch, Format: tar.FormatUSTAR,
	}
	if err := w.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("bundle entry %s: %w", name, err)
	}
	if _, err := w.tw.Write(data); err != nil {
		return fmt.Errorf("bundle entry %s: %w", name, err)
	}
	return nil
}

func (w *tarWriter) close() error { return w.tw.Close() }
