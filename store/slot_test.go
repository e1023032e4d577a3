package store_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/store"
)

// image returns size bytes of seeded random data cut into chunks with small
// parameters (so a small image has many chunks), and its index.
func image(t testing.TB, seed uint64, size int, h chunker.Hash) ([]byte, *chunker.Index) {
	t.Helper()
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(seed, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	ix, err := chunker.Split(context.Background(), bytes.NewReader(data), chunker.Options{
		Params: chunker.Params{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10}, Hash: h})
	if err != nil {
		t.Fatal(err)
	}
	if len(ix.Chunks) < 8 {
		t.Fatalf("test image has only %d chunks", len(ix.Chunks))
	}
	return data, ix
}

func writeFile(t testing.TB, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "slot.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkSlot reads every chunk of ix from s; bad lists chunk numbers that
// must fail with ErrCorrupt at their offset (all others must be served).
func checkSlot(t *testing.T, s *store.SlotSource, data []byte, ix *chunker.Index, where string, bad ...int) {
	t.Helper()
	off := ix.Offsets()
	for i := range ix.Chunks {
		id := ix.ID(i)
		got, err := s.Get(context.Background(), id)
		want := data[off[i]:off[i+1]]
		isBad := false
		for _, b := range bad {
			isBad = isBad || b == i
		}
		if !isBad {
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("Get chunk %d (%s) at offset %d: %d bytes, %v", i, id, off[i], len(got), err)
			}
			continue
		}
		var ce *store.CorruptError
		if !errors.As(err, &ce) || !errors.Is(err, store.ErrCorrupt) || got != nil {
			t.Fatalf("Get of damaged chunk %d = %d bytes, %v; want *CorruptError", i, len(got), err)
		}
		if ce.Offset != off[i] || !ce.ID.Equals(id) || ce.Where != where {
			t.Fatalf("CorruptError %+v; want ID %s at offset %d of %s", ce, id, off[i], where)
		}
		msg := err.Error()
		for _, part := range []string{id.String(), ce.Got.String(), strconv.FormatInt(off[i], 10), where} {
			if !strings.Contains(msg, part) {
				t.Fatalf("error %q does not name %q", msg, part)
			}
		}
		if got, err := s.Get(context.Background(), id); err == nil || got != nil {
			t.Fatal("second Get of a damaged chunk returned bytes")
		}
	}
}

func TestSlotSourceFile(t *testing.T) {
	for _, h := range []chunker.Hash{chunker.SHA256, chunker.BLAKE3} {
		t.Run(h.String(), func(t *testing.T) {
			data, ix := image(t, 1, 1<<20, h)
			path := writeFile(t, data)
			s, err := store.OpenSlot(path, ix)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			checkSlot(t, s, data, ix, path)
			off, size, ok := s.Offset(ix.ID(3))
			if o := ix.Offsets(); !ok || off != o[3] || size != ix.Chunks[3].Size {
				t.Fatalf("Offset of chunk 3 = %d, %d, %v; want %d, %d", off, size, ok, o[3], ix.Chunks[3].Size)
			}
		})
	}
}

// A torn write: chunk 3 of the slot holds other bytes. Only that chunk
// fails, with ErrCorrupt naming it, its offset and what the bytes are.
func TestSlotSourceCorruptChunk(t *testing.T) {
	h := chunker.SHA256
	data, ix := image(t, 2, 1<<20, h)
	path := writeFile(t, data)
	off := ix.Offsets()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	junk := bytes.Repeat([]byte{0xAA}, 300)
	if _, err := f.WriteAt(junk, off[3]+100); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s, err := store.OpenSlot(path, ix)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkSlot(t, s, data, ix, path, 3)

	// The ID the error names is the ID of the bytes now in the slot.
	_, err = s.Get(context.Background(), ix.ID(3))
	var ce *store.CorruptError
	errors.As(err, &ce)
	now, _ := os.ReadFile(path)
	if want := h.ID(h.Sum(now[off[3]:off[4]])); !ce.Got.Equals(want) {
		t.Fatalf("CorruptError.Got = %s; the slot's bytes are %s", ce.Got, want)
	}
	t.Log(err)
}

func TestSlotSourceShortSlot(t *testing.T) {
	data, ix := image(t, 3, 256<<10, chunker.SHA256)
	path := writeFile(t, data[:len(data)-10])
	if _, err := store.OpenSlot(path, ix); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("OpenSlot of a slot shorter than the index = %v; want an error naming it", err)
	}
	if _, err := store.OpenSlot(filepath.Join(t.TempDir(), "missing"), ix); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenSlot of a missing file = %v", err)
	}
	// A reader that ends early: the last chunk fails, the others are served.
	s, err := store.NewSlotSource(bytes.NewReader(data[:len(data)-10]), ix)
	if err != nil {
		t.Fatal(err)
	}
	last := len(ix.Chunks) - 1
	if _, err := s.Get(context.Background(), ix.ID(last)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Get of a chunk past the reader's end = %v; want ErrUnexpectedEOF", err)
	}
	if _, err := s.Get(context.Background(), ix.ID(0)); err != nil {
		t.Fatal(err)
	}
	// A slot longer than the artifact (a partition bigger than the image).
	long := writeFile(t, append(bytes.Clone(data), make([]byte, 4096)...))
	s2, err := store.OpenSlot(long, ix)
	if err != nil {
		t.Fatal(err)
	}
	checkSlot(t, s2, data, ix, long)
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Get(context.Background(), ix.ID(0)); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Get after Close = %v; want ErrClosed", err)
	}
}

func TestSlotSourceRejectsBadIndex(t *testing.T) {
	_, ix := image(t, 4, 128<<10, chunker.SHA256)
	ix.Size++
	if _, err := store.NewSlotSource(bytes.NewReader(nil), ix); !errors.Is(err, chunker.ErrMalformedIndex) {
		t.Fatalf("NewSlotSource with inconsistent sizes = %v; want ErrMalformedIndex", err)
	}
	ix.Size--
	ix.Hash = 7
	if _, err := store.NewSlotSource(bytes.NewReader(nil), ix); !errors.Is(err, chunker.ErrUnknownHash) {
		t.Fatalf("NewSlotSource with an unknown hash = %v; want ErrUnknownHash", err)
	}
	if _, err := store.NewSlotSource(bytes.NewReader(nil), nil); err == nil {
		t.Fatal("NewSlotSource accepted a nil index")
	}
}

// TestSlotSourceLoopDevice serves chunks from a real block device: a loop
// device over an image file, as on a device whose slots are partitions.
func TestSlotSourceLoopDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("losetup needs root")
	}
	h := chunker.BLAKE3
	data, ix := image(t, 5, 1<<20, h)
	// Damage chunk 2 before attaching, so the device holds a torn write.
	img := bytes.Clone(data)
	off := ix.Offsets()
	copy(img[off[2]+17:], "torn write")
	// Loop devices count whole 512-byte sectors; pad like a partition.
	img = append(img, make([]byte, (512-len(img)%512)%512+4096)...)
	path := writeFile(t, img)
	out, err := exec.Command("losetup", "--find", "--show", "--read-only", path).CombinedOutput()
	if err != nil {
		t.Skipf("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "--detach", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup --detach %s: %v: %s", dev, err, out)
		}
	})
	if fi, err := os.Stat(dev); err != nil || fi.Mode()&os.ModeDevice == 0 {
		t.Fatalf("%s is not a device: %v", dev, err)
	}
	s, err := store.OpenSlot(dev, ix)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkSlot(t, s, data, ix, dev, 2)
}
