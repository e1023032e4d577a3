package store_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/store"
)

// fuzzChunks are the chunks a FuzzSlotGet index describes.
var fuzzChunks = [][]byte{
	bytes.Repeat([]byte("first chunk "), 10),
	bytes.Repeat([]byte{0}, 100),
	bytes.Repeat([]byte("third "), 30),
}

// FuzzSlotGet gives SlotSource arbitrary slot contents under a fixed index:
// whatever the slot holds (torn, stale, short, long), Get must return either
// exactly the chunk's bytes or an error, never other bytes.
func FuzzSlotGet(f *testing.F) {
	good := bytes.Join(fuzzChunks, nil)
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add(append(bytes.Clone(good), 1, 2, 3))
	f.Add([]byte{})
	h := chunker.SHA256
	ix := indexOf(h, fuzzChunks...)
	f.Fuzz(func(t *testing.T, slot []byte) {
		s, err := store.NewSlotSource(bytes.NewReader(slot), ix)
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range fuzzChunks {
			got, err := s.Get(context.Background(), ix.ID(i))
			switch {
			case err == nil:
				if !bytes.Equal(got, want) {
					t.Fatalf("chunk %d: Get returned %d bytes that are not the chunk", i, len(got))
				}
			case errors.Is(err, store.ErrCorrupt), errors.Is(err, io.ErrUnexpectedEOF):
			default:
				t.Fatalf("chunk %d: unexpected error %v", i, err)
			}
		}
	})
}
