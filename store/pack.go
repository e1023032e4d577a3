package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
)

// Pack files hold the chunk bytes of a [DB]. They live in the "packs"
// directory beside badger's files and are named by number, %08d.pack. A
// pack is append-only: records are written at its end and never changed;
// the space of deleted chunks returns when compaction copies a pack's live
// records to the newest pack and removes the file.
//
//	pack   = magic (8 bytes, "shoalpk\x01") ‖ record*
//	record = payload length (uint32 big-endian) ‖ CID length (1 byte) ‖
//	         CID bytes ‖ payload
//
// The payload is the chunk, exactly what was hashed. The header makes a
// pack self-describing (compaction checks that a record is the chunk its
// pointer claims before copying it); Get reads only the payload, with one
// pread, and hashes it. Nothing in a pack is trusted: a pointer is checked
// against the pack's size at Open, and every chunk read is hashed.
//
// Badger holds, under the chunk's key, a 16-byte location:
//
//	pack number (uint32) ‖ payload offset (uint64) ‖ payload length (uint32),
//	all big-endian
const (
	packDirName = "packs"
	packMagic   = "shoalpk\x01"
	// packHeaderSize is the length of the magic that starts every pack.
	packHeaderSize = len(packMagic)
	// packSize is the size at which the pack being written is sealed and a
	// new one started. Compaction rewrites whole packs, so this bounds the
	// work (and the extra disk) of one compaction step.
	packSize = 64 << 20
	// locSize is the length of a location value.
	locSize = 16
	// recordFixed is the length of a record header without the CID bytes.
	recordFixed = 5
	// maxCIDLen bounds a record's CID length: one length byte.
	maxCIDLen = 255
)

// errBadPack is wrapped by the decoders of pack records and locations.
var errBadPack = errors.New("bad pack data")

// loc is where a chunk's payload is: pack number, offset, length.
type loc struct {
	pack uint32
	off  int64
	size int64
}

func encodeLoc(l loc) []byte {
	b := make([]byte, locSize)
	binary.BigEndian.PutUint32(b, l.pack)
	binary.BigEndian.PutUint64(b[4:], uint64(l.off))
	binary.BigEndian.PutUint32(b[12:], uint32(l.size))
	return b
}

// decodeLoc parses a location value. It checks only what the value alone
// can tell; Open checks the range against the pack's size.
func decodeLoc(b []byte) (loc, error) {
	if len(b) != locSize {
		return loc{}, fmt.Errorf("%w: location of %d bytes, want %d", errBadPack, len(b), locSize)
	}
	l := loc{
		pack: binary.BigEndian.Uint32(b),
		off:  int64(binary.BigEndian.Uint64(b[4:])),
		size: int64(binary.BigEndian.Uint32(b[12:])),
	}
	switch {
	case l.pack == 0:
		return loc{}, fmt.Errorf("%w: pack number 0", errBadPack)
	case l.off < int64(packHeaderSize+recordFixed) || l.off > 1<<40:
		return loc{}, fmt.Errorf("%w: implausible offset %d", errBadPack, l.off)
	case l.size > chunker.MaxChunkCeil:
		return loc{}, fmt.Errorf("%w: length %d above the largest chunk", errBadPack, l.size)
	}
	return l, nil
}

// recordHeaderLen is the length of the header of a record for a chunk
// whose CID bytes are key.
func recordHeaderLen(key string) int64 { return int64(recordFixed + len(key)) }

// appendRecordHeader appends the header of a record for the chunk key with
// a payload of size bytes.
func appendRecordHeader(b []byte, key string, size int) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(size))
	b = append(b, byte(len(key)))
	return append(b, key...)
}

// decodeRecordHeader parses the header at the start of b: the chunk ID and
// the payload length, and the header's own length. The ID must be a chunk
// ID ([chunker.ParseID]) and the length at most [chunker.MaxChunkCeil].
func decodeRecordHeader(b []byte) (id cid.Cid, size int64, hdr int, err error) {
	if len(b) < recordFixed {
		return cid.Undef, 0, 0, fmt.Errorf("%w: record header of %d bytes", errBadPack, len(b))
	}
	size = int64(binary.BigEndian.Uint32(b))
	n := int(b[4])
	if size > chunker.MaxChunkCeil {
		return cid.Undef, 0, 0, fmt.Errorf("%w: record length %d above the largest chunk", errBadPack, size)
	}
	if len(b) < recordFixed+n {
		return cid.Undef, 0, 0, fmt.Errorf("%w: record header cut short in its CID", errBadPack)
	}
	raw := b[recordFixed : recordFixed+n]
	k, id, err := cid.CidFromBytes(raw)
	if err != nil {
		return cid.Undef, 0, 0, fmt.Errorf("%w: record CID: %v", errBadPack, err)
	}
	if k != n {
		return cid.Undef, 0, 0, fmt.Errorf("%w: %d trailing bytes after the record CID", errBadPack, n-k)
	}
	if _, _, err := chunker.ParseID(id); err != nil {
		return cid.Undef, 0, 0, fmt.Errorf("%w: record CID: %w", errBadPack, err)
	}
	return id, size, recordFixed + n, nil
}

// pack is one open pack file. f, num and path never change. size and
// synced are the writer's (wmu); live changes with the chunk view (mu).
type pack struct {
	num    uint32
	path   string
	f      *os.File
	size   int64 // bytes in the file: where the next record goes
	synced int64 // bytes known to be on stable storage
	live   int64 // bytes of the records that held chunks point at
	bad    error // why the header did not check out, if it did not
}

// dead is the bytes of records no chunk points at (deleted, evicted,
// moved, or written just before a crash).
func (p *pack) dead() int64 { return p.size - int64(packHeaderSize) - p.live }

func packName(num uint32) string { return fmt.Sprintf("%08d.pack", num) }

// parsePackName returns the number of a pack file name, or false.
func parsePackName(name string) (uint32, bool) {
	s, ok := strings.CutSuffix(name, ".pack")
	if !ok || len(s) != 8 {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 {
		return 0, false
	}
	return uint32(n), true
}

// openPacks opens every pack in dir (creating dir if needed), checking
// each one's magic. A pack whose magic is wrong is still opened, for its
// chunks are hashed on every read anyway; bad records why.
func openPacks(dir string) (map[uint32]*pack, error) {
	if err := os.Mkdir(dir, 0o700); err == nil {
		// The directory must be durable before any pointer into it is.
		if err := syncDir(filepath.Dir(dir)); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, os.ErrExist) {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	packs := make(map[uint32]*pack)
	for _, de := range ents {
		num, ok := parsePackName(de.Name())
		if !ok || !de.Type().IsRegular() {
			continue
		}
		p, err := openPack(filepath.Join(dir, de.Name()), num)
		if err != nil {
			closePacks(packs)
			return nil, err
		}
		packs[num] = p
	}
	return packs, nil
}

func openPack(path string, num uint32) (*pack, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	p := &pack{num: num, path: path, f: f, size: fi.Size(), synced: fi.Size()}
	magic := make([]byte, packHeaderSize)
	if _, err := f.ReadAt(magic, 0); err != nil {
		if !errors.Is(err, io.EOF) {
			f.Close()
			return nil, err
		}
		p.bad = fmt.Errorf("%w: pack %s is %d bytes, shorter than its magic", errBadPack, path, p.size)
	} else if string(magic) != packMagic {
		p.bad = fmt.Errorf("%w: pack %s starts with %x, not the pack magic", errBadPack, path, magic)
	}
	return p, nil
}

// createPack makes a new, empty pack durable: file, magic and directory
// entry, so that no pointer can outlive it in a power cut.
func createPack(dir string, num uint32) (*pack, error) {
	path := filepath.Join(dir, packName(num))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*pack, error) {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("create pack %s: %w", path, err)
	}
	if _, err := f.WriteAt([]byte(packMagic), 0); err != nil {
		return fail(err)
	}
	if err := datasync(f); err != nil {
		return fail(err)
	}
	if err := syncDir(dir); err != nil {
		return fail(err)
	}
	return &pack{num: num, path: path, f: f, size: int64(packHeaderSize), synced: int64(packHeaderSize)}, nil
}

func closePacks(packs map[uint32]*pack) {
	for _, p := range packs {
		p.f.Close()
	}
}

// syncDir makes the entries of dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
