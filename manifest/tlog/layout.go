package tlog

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"

	"golang.org/x/mod/sumdb/tlog"
)

// TileHeight is the height of every tile: a full tile holds 256 hashes, and
// an entry bundle 256 entries, as in the Go checksum database.
const TileHeight = 8

// tileWidth is the number of hashes in a full tile.
const tileWidth = 1 << TileHeight

// MaxRecordSize bounds one entry; bundles store its length in two bytes.
const MaxRecordSize = 1<<16 - 1

// MaxLookupShardSize bounds a lookup shard read from outside: about 390,000
// lines, which at 256 shards is a log of about a hundred million entries.
const MaxLookupShardSize = 32 << 20

// lookupLineMax is the longest lookup line: hash, space, index, newline.
const lookupLineMax = 64 + 1 + 19 + 1

// dataTile returns the entry bundle that goes with level-0 tile t: the
// same coordinates at level -1, which tlog spells "tile/8/data/...".
func dataTile(t tlog.Tile) tlog.Tile {
	t.L = -1
	return t
}

// bundleFor returns the entry bundle holding entry i in a tree of size n.
func bundleFor(i, n int64) tlog.Tile {
	t := tlog.Tile{H: TileHeight, L: -1, N: i >> TileHeight, W: tileWidth}
	if end := n - t.N<<TileHeight; end < tileWidth {
		t.W = int(end)
	}
	return t
}

// maxBundleSize is the largest possible encoding of a bundle of w entries.
func maxBundleSize(w int) int64 { return int64(w) * (2 + MaxRecordSize) }

// encodeBundle writes records as a bundle: each record is a two-byte
// big-endian length followed by its bytes.
func encodeBundle(records [][]byte) []byte {
	n := 0
	for _, r := range records {
		n += 2 + len(r)
	}
	b := make([]byte, 0, n)
	for _, r := range records {
		b = binary.BigEndian.AppendUint16(b, uint16(len(r)))
		b = append(b, r...)
	}
	return b
}

// decodeBundle parses a bundle that must hold exactly w non-empty records
// and nothing else.
func decodeBundle(data []byte, w int) ([][]byte, error) {
	if w < 1 || w > tileWidth {
		return nil, fmt.Errorf("bundle width %d out of range", w)
	}
	if int64(len(data)) > maxBundleSize(w) {
		return nil, fmt.Errorf("%d bytes, more than %d entries can take", len(data), w)
	}
	recs := make([][]byte, 0, w)
	for off := 0; off < len(data); {
		if len(recs) == w {
			return nil, fmt.Errorf("%d bytes after entry %d", len(data)-off, w-1)
		}
		if len(data)-off < 2 {
			return nil, fmt.Errorf("entry %d: truncated length at offset %d", len(recs), off)
		}
		n := int(binary.BigEndian.Uint16(data[off:]))
		off += 2
		if n == 0 {
			return nil, fmt.Errorf("entry %d: empty at offset %d", len(recs), off-2)
		}
		if n > len(data)-off {
			return nil, fmt.Errorf("entry %d: length %d at offset %d runs past the end (%d bytes)", len(recs), n, off-2, len(data))
		}
		recs = append(recs, data[off:off+n:off+n])
		off += n
	}
	if len(recs) != w {
		return nil, fmt.Errorf("%d entries, want %d", len(recs), w)
	}
	return recs, nil
}

// lookupShard returns the path of the lookup shard for a record hash: the
// first two hex digits of the hash pick one of 256 files.
func lookupShard(h tlog.Hash) string {
	return "lookup/" + hex.EncodeToString(h[:1])
}

// lookupEntry maps a record hash to its index. Lookup shards are hints for
// finding an entry without reading the whole log; every answer is checked
// against the signed tree before it is believed.
type lookupEntry struct {
	Hash  tlog.Hash
	Index int64
}

func compareLookup(a, b lookupEntry) int {
	if c := bytes.Compare(a.Hash[:], b.Hash[:]); c != 0 {
		return c
	}
	switch {
	case a.Index < b.Index:
		return -1
	case a.Index > b.Index:
		return 1
	}
	return 0
}

// encodeLookup writes a shard: one "<hex hash> <decimal index>\n" line per
// entry, sorted by hash, then index.
func encodeLookup(es []lookupEntry) []byte {
	es = slices.Clone(es)
	slices.SortFunc(es, compareLookup)
	b := make([]byte, 0, len(es)*lookupLineMax)
	for _, e := range es {
		b = hex.AppendEncode(b, e.Hash[:])
		b = append(b, ' ')
		b = strconv.AppendInt(b, e.Index, 10)
		b = append(b, '\n')
	}
	return b
}

// decodeLookup parses a shard strictly: canonical lines, sorted, no
// duplicates, and every hash in the shard its name says (prefix, as the
// first hex byte).
func decodeLookup(data []byte, prefix byte) ([]lookupEntry, error) {
	if len(data) > MaxLookupShardSize {
		return nil, fmt.Errorf("%d bytes, limit %d", len(data), MaxLookupShardSize)
	}
	var es []lookupEntry
	for line := 1; len(data) > 0; line++ {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return nil, fmt.Errorf("line %d: no final newline", line)
		}
		l := data[:i]
		data = data[i+1:]
		if len(l) < 64+2 || len(l) > lookupLineMax-1 || l[64] != ' ' {
			return nil, fmt.Errorf("line %d: want \"<64 hex digits> <index>\"", line)
		}
		var e lookupEntry
		if _, err := hex.Decode(e.Hash[:], l[:64]); err != nil || hex.EncodeToString(e.Hash[:]) != string(l[:64]) {
			return nil, fmt.Errorf("line %d: hash %q is not 64 lower-case hex digits", line, l[:64])
		}
		if e.Hash[0] != prefix {
			return nil, fmt.Errorf("line %d: hash %x does not belong in shard %02x", line, e.Hash[:1], prefix)
		}
		num := string(l[65:])
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || n < 0 || strconv.FormatInt(n, 10) != num {
			return nil, fmt.Errorf("line %d: index %q", line, num)
		}
		e.Index = n
		if len(es) > 0 && compareLookup(es[len(es)-1], e) >= 0 {
			return nil, fmt.Errorf("line %d: out of order or repeated", line)
		}
		es = append(es, e)
	}
	return es, nil
}
