package store

import (
	"bytes"
	"testing"

	"github.com/shoalnet/shoal/chunker"
)

// FuzzDecodeAccess feeds arbitrary bytes to the access-record decoder, which
// reads what is on disk: it must not panic, and whatever it accepts must be
// the canonical encoding of what it returns.
func FuzzDecodeAccess(f *testing.F) {
	f.Add(encodeAccess(1, 65536))
	f.Add([]byte{})
	f.Add(make([]byte, 17))
	f.Fuzz(func(t *testing.T, b []byte) {
		use, size, err := decodeAccess(b)
		if err != nil {
			return
		}
		if again := encodeAccess(use, int64(size)); !bytes.Equal(again, b) {
			t.Fatalf("decodeAccess(%x) = %d, %d; encodes back to %x", b, use, size, again)
		}
	})
}

// FuzzDecodePin feeds arbitrary bytes to the pin-value decoder: no panic,
// and an accepted value is exactly the bytes of the chunk-style CID it
// returns.
func FuzzDecodePin(f *testing.F) {
	f.Add([]byte{0x01, 0x55, 0x12, 0x20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32})
	f.Add([]byte{0x01, 0x70, 0x12, 0x20})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := decodePin(b)
		if err != nil {
			return
		}
		if !bytes.Equal(id.Bytes(), b) {
			t.Fatalf("decodePin(%x) = %s, whose bytes are %x", b, id, id.Bytes())
		}
	})
}

// FuzzDecodeLoc feeds arbitrary bytes to the chunk-location decoder (the
// value badger keeps for each chunk): no panic, and an accepted value is
// exactly the encoding of what it returns.
func FuzzDecodeLoc(f *testing.F) {
	f.Add(encodeLoc(loc{pack: 1, off: 45, size: 65536}))
	f.Add([]byte{})
	f.Add(make([]byte, locSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := decodeLoc(b)
		if err != nil {
			return
		}
		if again := encodeLoc(l); !bytes.Equal(again, b) {
			t.Fatalf("decodeLoc(%x) = %+v; encodes back to %x", b, l, again)
		}
	})
}

// FuzzDecodeRecordHeader feeds arbitrary bytes to the pack-record header
// decoder (compaction reads headers from disk): no panic, and an accepted
// header is exactly the encoding of the chunk ID and length it returns.
func FuzzDecodeRecordHeader(f *testing.F) {
	h := chunker.SHA256
	id := h.ID(h.Sum([]byte("chunk")))
	f.Add(append(appendRecordHeader(nil, id.KeyString(), 5), "chunk"...))
	f.Add(appendRecordHeader(nil, id.KeyString(), chunker.MaxChunkCeil+1))
	f.Add(appendRecordHeader(nil, "\x01\x70\x12\x20", 1))
	f.Add([]byte{0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, size, n, err := decodeRecordHeader(b)
		if err != nil {
			return
		}
		if n > len(b) {
			t.Fatalf("decodeRecordHeader(%x) claims a %d-byte header", b, n)
		}
		if again := appendRecordHeader(nil, id.KeyString(), int(size)); !bytes.Equal(again, b[:n]) {
			t.Fatalf("decodeRecordHeader(%x) = %s, %d; encodes back to %x", b[:n], id, size, again)
		}
	})
}
