package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/shoalnet/shoal/chunker"
)

// casync's index format (little endian): a 48-byte index header (size 48,
// type caFormatIndex, feature flags, min, avg and max chunk size); a table
// header (size all ones, type caFormatTable); one 40-byte item per chunk
// (the end offset of the chunk in the blob, then its 32-byte ID); and a
// 40-byte tail (two zero words, the offset of the table, its size,
// caFormatTableTail).
const (
	caFormatIndex     = 0x96824d9c7b129ff9
	caFormatTable     = 0xe75b9e112f17417d
	caFormatTableTail = 0x4b4f050e5549ecd1

	indexHeaderSize = 48
	tableHeaderSize = 16
	itemSize        = 40
)

var errMalformed = errors.New("idxstat: malformed casync index")

// chunk and index are what both formats have in common: chunk IDs are the
// 32-byte digests (sha2-256 for shoal's default, sha512-256 or sha256 for
// casync), compared only within one tool.
type chunk struct {
	id   [32]byte
	size uint64
}

type index struct {
	tool          string
	min, avg, max uint64
	size          uint64
	chunks        []chunk
}

// parseCaibx decodes a casync blob index.
func parseCaibx(b []byte) (*index, error) {
	le := binary.LittleEndian
	if len(b) < indexHeaderSize+tableHeaderSize+itemSize {
		return nil, fmt.Errorf("%w: %d bytes is too short", errMalformed, len(b))
	}
	if le.Uint64(b[0:]) != indexHeaderSize || le.Uint64(b[8:]) != caFormatIndex {
		return nil, fmt.Errorf("%w: no index header", errMalformed)
	}
	ix := &index{tool: "casync", min: le.Uint64(b[24:]), avg: le.Uint64(b[32:]), max: le.Uint64(b[40:])}
	t := b[indexHeaderSize:]
	if le.Uint64(t[0:]) != ^uint64(0) || le.Uint64(t[8:]) != caFormatTable {
		return nil, fmt.Errorf("%w: no table header at offset %d", errMalformed, indexHeaderSize)
	}
	items := t[tableHeaderSize:]
	if len(items)%itemSize != 0 {
		return nil, fmt.Errorf("%w: table of %d bytes is not a whole number of items", errMalformed, len(items))
	}
	tail := items[len(items)-itemSize:]
	if le.Uint64(tail[0:]) != 0 || le.Uint64(tail[8:]) != 0 || le.Uint64(tail[32:]) != caFormatTableTail {
		return nil, fmt.Errorf("%w: no table tail", errMalformed)
	}
	if want := uint64(tableHeaderSize + len(items)); le.Uint64(tail[24:]) != want {
		return nil, fmt.Errorf("%w: tail gives table size %d, want %d", errMalformed, le.Uint64(tail[24:]), want)
	}
	items = items[:len(items)-itemSize]
	var prev uint64
	for off := 0; off < len(items); off += itemSize {
		end := le.Uint64(items[off:])
		if end <= prev {
			return nil, fmt.Errorf("%w: chunk %d ends at %d, not after %d", errMalformed, off/itemSize, end, prev)
		}
		var c chunk
		copy(c.id[:], items[off+8:off+itemSize])
		c.size = end - prev
		ix.chunks = append(ix.chunks, c)
		prev = end
	}
	ix.size = prev
	return ix, nil
}

// fromShoal converts a decoded shoal index.
func fromShoal(s *chunker.Index) *index {
	ix := &index{tool: "shoal", min: uint64(s.Params.Min), avg: uint64(s.Params.Avg), max: uint64(s.Params.Max), size: uint64(s.Size)}
	ix.chunks = make([]chunk, len(s.Chunks))
	for i, e := range s.Chunks {
		ix.chunks[i] = chunk{id: e.Digest, size: uint64(e.Size)}
	}
	return ix
}

// load reads a shoal index (it starts with "SHOALIDX") or a casync one.
func load(path string) (*index, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if bytes.HasPrefix(b, []byte("SHOALIDX")) {
		s, err := chunker.DecodeIndex(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return fromShoal(s), nil
	}
	ix, err := parseCaibx(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ix, nil
}
