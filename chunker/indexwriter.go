package chunker

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
)

// Summary describes an index without its chunk list.
type Summary struct {
	Params Params
	Hash   Hash
	Size   int64
	Chunks int
	Root   Digest
}

// IndexWriter encodes an index straight to a file as chunks arrive, so
// chunking an image of any size needs memory for neither the chunk list
// nor its encoding. Entries are written after a header-sized gap; Close
// fills in the header, whose size and count are known only at the end.
// The result is byte for byte what Index.Encode produces.
type IndexWriter struct {
	w    io.WriterAt
	s    Summary
	root *RootBuilder
	off  int64
	buf  []byte
	err  error
}

// NewIndexWriter starts an index for chunks of parameters p hashed with h.
func NewIndexWriter(w io.WriterAt, p Params, h Hash) *IndexWriter {
	return &IndexWriter{w: w, s: Summary{Params: p, Hash: h}, root: NewRootBuilder(h),
		off: indexHeaderSize, buf: make([]byte, 0, 64<<10)}
}

// Add appends one chunk.
func (iw *IndexWriter) Add(e Entry) error {
	if iw.err != nil {
		return iw.err
	}
	iw.buf = binary.BigEndian.AppendUint32(iw.buf, e.Size)
	iw.buf = append(iw.buf, e.Digest[:]...)
	iw.s.Size += int64(e.Size)
	iw.s.Chunks++
	iw.root.Add(e)
	if len(iw.buf) > cap(iw.buf)-indexEntrySize {
		return iw.flush()
	}
	return nil
}

func (iw *IndexWriter) flush() error {
	if iw.err == nil && len(iw.buf) > 0 {
		if _, err := iw.w.WriteAt(iw.buf, iw.off); err != nil {
			iw.err = fmt.Errorf("chunker: write index: %w", err)
		}
		iw.off += int64(len(iw.buf))
		iw.buf = iw.buf[:0]
	}
	return iw.err
}

// Close writes the remaining entries and the header, and returns what the
// index describes. The caller syncs and closes the file.
func (iw *IndexWriter) Close() (Summary, error) {
	if err := iw.flush(); err != nil {
		return Summary{}, err
	}
	hdr := (&Index{Params: iw.s.Params, Hash: iw.s.Hash, Size: iw.s.Size}).Encode()
	binary.BigEndian.PutUint64(hdr[40:], uint64(iw.s.Chunks))
	if _, err := iw.w.WriteAt(hdr, 0); err != nil {
		return Summary{}, fmt.Errorf("chunker: write index header: %w", err)
	}
	iw.s.Root = iw.root.Root()
	return iw.s, nil
}

// SplitTo is Split for inputs of any size: it streams the index into iw
// instead of keeping it, and returns its summary after closing iw.
// iw must have been created with the same parameters as o.
func SplitTo(ctx context.Context, r io.Reader, o Options, iw *IndexWriter) (Summary, error) {
	if err := o.fill(); err != nil {
		return Summary{}, err
	}
	if o.Params != iw.s.Params || o.Hash != iw.s.Hash {
		return Summary{}, fmt.Errorf("chunker: index writer is for %v/%v, options say %v/%v", iw.s.Params, iw.s.Hash, o.Params, o.Hash)
	}
	c := newCutter(o.Params)
	err := run(ctx, r, o, o.Params.Max, func(data []byte, eof bool) (int, error) {
		return c.cut(data), nil
	}, func(ch Chunk) error {
		return iw.Add(Entry{Size: ch.Size, Digest: ch.Digest})
	})
	if err != nil {
		return Summary{}, err
	}
	return iw.Close()
}
