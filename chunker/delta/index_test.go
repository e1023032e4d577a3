package delta_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/chunker/delta"
)

func sampleIndex() *delta.Index {
	return &delta.Index{
		Hash:     chunker.SHA256,
		Base:     chunker.SHA256.Sum([]byte("base")),
		Target:   chunker.SHA256.Sum([]byte("target")),
		BaseSize: 10 << 20,
		MaxChunk: 256 << 10,
		MaxRef:   4 << 20,
		Entries: []delta.Entry{
			{Pos: 3, Digest: chunker.SHA256.Sum([]byte("d3")), Size: 1200, Ranges: []delta.Range{{Off: 0, Len: 1 << 20}}},
			{Pos: 9, Digest: chunker.SHA256.Sum([]byte("d9")), Size: 40000, Ranges: []delta.Range{{Off: 5 << 20, Len: 100}, {Off: 1 << 20, Len: 3 << 20}}},
		},
	}
}

func TestIndexRoundTrip(t *testing.T) {
	ix := sampleIndex()
	b := ix.Encode()
	if string(b[:8]) != "SHOALDLT" || len(b) != 112+2*(8+32+4+1)+3*12 {
		t.Fatalf("encoding of %d bytes starts %q", len(b), b[:8])
	}
	got, err := delta.DecodeIndex(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Encode(), b) {
		t.Fatal("decode then encode changed the bytes")
	}
	if got.Entries[1].Ranges[1] != (delta.Range{Off: 1 << 20, Len: 3 << 20}) || got.ID(got.Entries[0]) != chunker.SHA256.ID(chunker.SHA256.Sum([]byte("d3"))) {
		t.Fatalf("decoded %+v", got)
	}
	empty := sampleIndex()
	empty.Entries = nil
	if _, err := delta.DecodeIndex(empty.Encode()); err != nil {
		t.Fatalf("index without entries: %v", err)
	}
}

func TestDecodeIndexRefuses(t *testing.T) {
	good := sampleIndex().Encode()
	e0 := 112          // first entry
	e1 := e0 + 45 + 12 // second entry
	set := func(f func(b []byte)) []byte { b := bytes.Clone(good); f(b); return b }
	for _, tc := range []struct {
		name, field string
		b           []byte
	}{
		{"short", "header", good[:100]},
		{"magic", "magic", set(func(b []byte) { b[0] = 'X' })},
		{"version", "version", set(func(b []byte) { b[8] = 2 })},
		{"reserved", "reserved", set(func(b []byte) { b[10] = 1 })},
		{"max_ref zero", "max_ref", set(func(b []byte) { binary.BigEndian.PutUint32(b[12:], 0) })},
		{"max_ref above ceiling", "max_ref", set(func(b []byte) { binary.BigEndian.PutUint32(b[12:], delta.RefCeil+1) })},
		{"hash", "hash", set(func(b []byte) { binary.BigEndian.PutUint64(b[16:], 0x11) })},
		{"base size", "base_size", set(func(b []byte) { binary.BigEndian.PutUint64(b[88:], 1<<63) })},
		{"max chunk", "max_chunk", set(func(b []byte) { binary.BigEndian.PutUint32(b[96:], chunker.MaxChunkCeil+1) })},
		{"reserved 2", "reserved", set(func(b []byte) { b[101] = 1 })},
		{"count too large", "count", set(func(b []byte) { binary.BigEndian.PutUint64(b[104:], 1<<60) })},
		{"count short", "end", set(func(b []byte) { binary.BigEndian.PutUint64(b[104:], 1) })},
		{"truncated entry", "entries[1]", good[:len(good)-5]},
		{"trailing", "end", append(bytes.Clone(good), 0)},
		{"positions equal", "entries[1].pos", set(func(b []byte) { binary.BigEndian.PutUint64(b[e1:], 3) })},
		{"positions decrease", "entries[1].pos", set(func(b []byte) { binary.BigEndian.PutUint64(b[e1:], 2) })},
		{"size zero", "entries[0].size", set(func(b []byte) { binary.BigEndian.PutUint32(b[e0+40:], 0) })},
		{"size too large", "entries[0].size", set(func(b []byte) { binary.BigEndian.PutUint32(b[e0+40:], 1<<30) })},
		{"no ranges", "entries[0].ranges", set(func(b []byte) { b[e0+44] = 0 })},
		{"too many ranges", "entries[0].ranges", set(func(b []byte) { b[e0+44] = delta.MaxRanges + 1 })},
		{"empty range", "entries[0].ranges[0]", set(func(b []byte) { binary.BigEndian.PutUint32(b[e0+45+8:], 0) })},
		{"range outside base", "entries[0].ranges[0]", set(func(b []byte) { binary.BigEndian.PutUint64(b[e0+45:], 10<<20-10) })},
		{"ranges above max_ref", "entries[1].ranges[1]", set(func(b []byte) { binary.BigEndian.PutUint32(b[e1+45+12+8:], 4<<20) })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := delta.DecodeIndex(tc.b)
			var ie *delta.IndexError
			if !errors.Is(err, delta.ErrMalformedIndex) || !errors.As(err, &ie) {
				t.Fatalf("got %v, want an IndexError", err)
			}
			if !strings.HasPrefix(ie.Field, tc.field) {
				t.Errorf("error names field %q, want %q (%v)", ie.Field, tc.field, err)
			}
		})
	}
}

func TestIndexCheck(t *testing.T) {
	p := newPair(t, 9, 256<<10)
	base, target := p.images()
	ix, _, err := delta.Plan(context.Background(), base, target, delta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ix.Entries) == 0 {
		t.Fatal("no entries")
	}
	if err := ix.Check(p.baseIx, p.targetIx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		field  string
		mutate func(ix *delta.Index)
		swap   bool
	}{
		{"base", nil, true},
		{"base_size", func(ix *delta.Index) { ix.BaseSize++ }, false},
		{"max_chunk", func(ix *delta.Index) { ix.MaxChunk++ }, false},
		{"hash", func(ix *delta.Index) { ix.Hash = chunker.BLAKE3 }, false},
		{"entries", func(ix *delta.Index) { ix.Entries[len(ix.Entries)-1].Pos = int64(len(p.targetIx.Chunks)) }, false},
	} {
		c := *ix
		c.Entries = append([]delta.Entry(nil), ix.Entries...)
		b, tg := p.baseIx, p.targetIx
		if tc.swap {
			b, tg = tg, b
		} else {
			tc.mutate(&c)
		}
		err := c.Check(b, tg)
		var ie *delta.IndexError
		if !errors.As(err, &ie) || ie.Field != tc.field || !errors.Is(err, delta.ErrMalformedIndex) {
			t.Errorf("%s: got %v", tc.field, err)
		}
	}
}

// FuzzDecodeIndex: the decoder never panics, and whatever it accepts is in
// canonical form. Seeds live in testdata/fuzz/FuzzDecodeIndex.
func FuzzDecodeIndex(f *testing.F) {
	f.Add(sampleIndex().Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		ix, err := delta.DecodeIndex(b)
		if err != nil {
			if !errors.Is(err, delta.ErrMalformedIndex) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if !bytes.Equal(ix.Encode(), b) {
			t.Fatal("accepted a non-canonical encoding")
		}
	})
}

// FuzzExpand: a delta object from outside never panics the reader, never
// makes it allocate beyond its limits, and is accepted only when it
// expands to the chunk. Seeds live in testdata/fuzz/FuzzExpand.
func FuzzExpand(f *testing.F) {
	base := text(10, 64<<10)
	chunk := bytes.Clone(base[8<<10 : 24<<10])
	chunk[100] ^= 1
	f.Add(makeDelta(f, base, chunk, []delta.Range{{Off: 0, Len: 32 << 10}}))
	f.Add(makeDelta(f, base, chunk, []delta.Range{{Off: 40 << 10, Len: 4 << 10}, {Off: 4 << 10, Len: 28 << 10}}))
	f.Add([]byte{delta.KindDelta, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0x28, 0xb5, 0x2f, 0xfd})
	id := chunker.SHA256.ID(chunker.SHA256.Sum(chunk))
	lim := delta.Limits{MaxChunk: 32 << 10, MaxRef: 48 << 10, BaseSize: int64(len(base))}
	f.Fuzz(func(t *testing.T, obj []byte) {
		out, err := delta.ExpandFrom(nil, nil, id, obj, bytes.NewReader(base), lim)
		if err != nil {
			if !errors.Is(err, delta.ErrCorrupt) && !errors.Is(err, delta.ErrTooLarge) && !errors.Is(err, delta.ErrBadRange) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if !bytes.Equal(out, chunk) {
			t.Fatal("accepted bytes that are not the chunk")
		}
	})
}
