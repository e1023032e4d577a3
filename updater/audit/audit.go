// Package audit is the device's append-only, hash-chained record of every
// update verdict (offered, staged, flipped, booted, healthy, rolled back,
// refused). Each line is one JSON object carrying the hash of the line
// before it, so editing, removing or reordering any line breaks the chain;
// a separate head file remembers the newest line, so cutting lines off the
// end is detected too. Every append is fsynced before it returns.
//
// The head is a hint that may lag: it is rewritten after each line is
// durable, and a failed rewrite (disk full) leaves it behind the log, which
// verification accepts. It is never missing once the log has two entries:
// Append writes the head for entry 1 before it appends entry 2. So a
// missing head with two or more entries means someone deleted it.
package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/shoalnet/shoal/updater/fsys"
)

// File names inside the audit directory.
const (
	LogFile  = "audit.log"
	HeadFile = "audit.head"
)

// ErrTampered is wrapped by every verification failure.
var ErrTampered = errors.New("audit: log does not verify")

// ErrHeadNotUpdated is wrapped by an Append error that came after the entry
// was durably in the log (only the head file could not be rewritten): the
// verdict is recorded and must not be appended again.
var ErrHeadNotUpdated = errors.New("audit: entry recorded, head file not updated")

// Entry is one verdict. Seq, Time, Prev and Hash are filled in by Append.
type Entry struct {
	Seq     uint64 `json:"seq"`
	Time    string `json:"time"`
	Verdict string `json:"verdict"`
	Version uint64 `json:"version,omitempty"`
	Slot    string `json:"slot,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Prev    string `json:"prev"`
	Hash    string `json:"hash"`
}

// genesis is the Prev of the first entry.
var genesis = strings.Repeat("0", 64)

// hashOf is sha256 over the entry's encoding with Hash empty.
func hashOf(e Entry) (string, error) {
	e.Hash = ""
	b, err := json.Marshal(e)
	if err != nil {
		return "", err
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:]), nil
}

type head struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// Log appends to the audit log in one directory. Not safe for concurrent
// use; the updater holds one.
type Log struct {
	fs   fsys.FS
	dir  string
	now  func() time.Time
	last Entry // zero before the first entry
	// headOK is false while entries exist but the head file may not: a
	// power cut or a failed write between the first line and its head.
	headOK bool
}

// Open opens (creating if needed) the log in dir. A torn final line, left
// by a power cut during an append that never completed, is cut off; any
// other damage is an error wrapping ErrTampered.
func Open(fsys_ fsys.FS, dir string, now func() time.Time) (*Log, error) {
	if now == nil {
		now = time.Now
	}
	if err := fsys.MkdirAllDurable(fsys_, dir, 0o755); err != nil {
		return nil, err
	}
	l := &Log{fs: fsys_, dir: dir, now: now}
	entries, tornAt, hd, err := read(fsys_, dir)
	if err != nil {
		return nil, err
	}
	if tornAt >= 0 {
		if err := l.truncate(tornAt); err != nil {
			return nil, err
		}
	}
	if len(entries) > 0 {
		l.last = entries[len(entries)-1]
	}
	l.headOK = hd != nil
	return l, nil
}

func (l *Log) truncate(size int64) error {
	f, err := l.fs.OpenFile(filepath.Join(l.dir, LogFile), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("audit: cut torn final line: %w", err)
	}
	return f.Sync()
}

// Append records e and returns it as written. An error wrapping
// ErrHeadNotUpdated means the entry is durably recorded and only the head
// file lags; any other error means nothing was recorded.
func (l *Log) Append(e Entry) (Entry, error) {
	if l.last.Hash != "" && !l.headOK {
		// Entry 1 has no head yet. Write it before entry 2 exists, so that
		// a log of two or more entries without a head is always tampering.
		if err := l.writeHead(l.last); err != nil {
			return e, fmt.Errorf("audit: head for entry %d (nothing appended): %w", l.last.Seq, err)
		}
		l.headOK = true
	}
	e.Seq = l.last.Seq + 1
	if l.last.Hash == "" {
		e.Seq = 1
	}
	e.Time = l.now().UTC().Format(time.RFC3339Nano)
	e.Prev = genesis
	if l.last.Hash != "" {
		e.Prev = l.last.Hash
	}
	h, err := hashOf(e)
	if err != nil {
		return e, err
	}
	e.Hash = h
	line, err := json.Marshal(e)
	if err != nil {
		return e, err
	}
	if err := fsys.AppendSync(l.fs, filepath.Join(l.dir, LogFile), append(line, '\n'), 0o644); err != nil {
		return e, fmt.Errorf("audit: %w", err)
	}
	// The line is durable: it is the chain's new end whatever happens to
	// the head, or the next entry would reuse its sequence number and
	// break the chain for good.
	l.last = e
	if err := l.writeHead(e); err != nil {
		return e, fmt.Errorf("%w: entry %d: %w", ErrHeadNotUpdated, e.Seq, err)
	}
	l.headOK = true
	return e, nil
}

// writeHead atomically replaces the head file with e's sequence and hash.
// A failure leaves the previous head (or none) in place.
func (l *Log) writeHead(e Entry) error {
	hb, err := json.Marshal(head{Seq: e.Seq, Hash: e.Hash})
	if err != nil {
		return err
	}
	return fsys.WriteFileAtomic(l.fs, filepath.Join(l.dir, HeadFile), hb, 0o644)
}

// Entries returns every entry after verifying the log.
func Entries(fsys_ fsys.FS, dir string) ([]Entry, error) {
	entries, tornAt, _, err := read(fsys_, dir)
	if err != nil {
		return nil, err
	}
	if tornAt >= 0 {
		return nil, fmt.Errorf("%w: line %d is torn (incomplete append); opening the log repairs it", ErrTampered, len(entries)+1)
	}
	return entries, nil
}

// Verify checks the whole log and returns how many entries it holds.
func Verify(fsys_ fsys.FS, dir string) (int, error) {
	e, err := Entries(fsys_, dir)
	return len(e), err
}

// read parses and checks the chain. tornAt is the byte offset of a final
// line without its newline that is newer than the head (a torn append), or
// -1. hd is the head file, nil when there is none.
func read(fsys_ fsys.FS, dir string) (entries []Entry, tornAt int64, hd *head, err error) {
	entries, tornAt, hd, err = readChain(fsys_, dir)
	if err != nil {
		return nil, -1, nil, err
	}
	// Append writes the head for entry 1 before it appends entry 2, and
	// replaces it atomically from then on; only entry 1 can be without one.
	if hd == nil && len(entries) >= 2 {
		return nil, -1, nil, fmt.Errorf("%w: %s is missing but the log holds %d entries; it exists from the second entry on, so it was deleted (lines may also have been cut off the end)", ErrTampered, HeadFile, len(entries))
	}
	return entries, tornAt, hd, nil
}

func readChain(fsys_ fsys.FS, dir string) (entries []Entry, tornAt int64, hd *head, err error) {
	data, err := fsys_.ReadFile(filepath.Join(dir, LogFile))
	if errors.Is(err, fs.ErrNotExist) {
		data, err = nil, nil
	}
	if err != nil {
		return nil, -1, nil, err
	}
	if hb, err := fsys_.ReadFile(filepath.Join(dir, HeadFile)); err == nil {
		hd = &head{}
		if err := json.Unmarshal(hb, hd); err != nil {
			return nil, -1, nil, fmt.Errorf("%w: %s: %v", ErrTampered, HeadFile, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, -1, nil, err
	}
	prev := genesis
	var off int64
	for lineNo := 1; len(data) > 0; lineNo++ {
		nl := bytes.IndexByte(data, '\n')
		line := data
		if nl >= 0 {
			line = data[:nl]
		}
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%w: line %d: %s", ErrTampered, lineNo, fmt.Sprintf(format, args...))
		}
		var e Entry
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		perr := dec.Decode(&e)
		if nl < 0 && (hd == nil || uint64(len(entries)) >= hd.Seq) {
			// No newline: an append cut short, newer than the head.
			return entries, off, hd, nil
		}
		if perr != nil {
			return nil, -1, nil, bad("not a log entry: %v", perr)
		}
		if nl < 0 {
			return nil, -1, nil, bad("missing newline at the end of an acknowledged entry")
		}
		if canon, _ := json.Marshal(e); !bytes.Equal(canon, line) {
			return nil, -1, nil, bad("entry was edited (not in the form it was written)")
		}
		if e.Seq != uint64(lineNo) {
			return nil, -1, nil, bad("sequence %d, want %d (lines removed or reordered)", e.Seq, lineNo)
		}
		if e.Prev != prev {
			return nil, -1, nil, bad("does not chain to the line before it")
		}
		if h, _ := hashOf(e); h != e.Hash {
			return nil, -1, nil, bad("hash does not match its content (entry edited)")
		}
		entries = append(entries, e)
		prev = e.Hash
		off += int64(len(line)) + 1
		data = data[len(line)+1:]
	}
	if hd != nil {
		n := uint64(len(entries))
		switch {
		case n < hd.Seq:
			return nil, -1, nil, fmt.Errorf("%w: log ends at entry %d but entry %d was written (lines cut off the end)", ErrTampered, n, hd.Seq)
		case hd.Seq > 0 && entries[hd.Seq-1].Hash != hd.Hash:
			return nil, -1, nil, fmt.Errorf("%w: entry %d differs from the one recorded in %s", ErrTampered, hd.Seq, HeadFile)
		}
	}
	return entries, -1, hd, nil
}
