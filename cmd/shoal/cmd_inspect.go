package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ipfs/go-cid"
	"github.com/spf13/cobra"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/internal/inputfile"
)

// indexFile reads an index file as a stream: the header first, then the
// chunk entries in small batches, so memory stays flat whatever the file
// claims or holds. It refuses what is not a regular file before reading,
// and checks the file's size against the header's chunk count before
// reading any entry. Its checks and error messages are chunker.DecodeIndex's
// (the header's own fields are checked by DecodeIndex itself);
// TestIndexFileMatchesDecodeIndex and FuzzIndexFile hold the two together.
type indexFile struct {
	path   string
	f      *os.File
	params chunker.Params
	hash   chunker.Hash
	size   int64 // total artifact size, from the header
	count  int64 // chunks, from the header, consistent with the file size
}

// Index format layout (docs/formats.md): a 48-byte header, then 36 bytes
// per chunk; size and count are at offsets 32 and 40.
const (
	idxHeaderSize = 48
	idxEntrySize  = 4 + chunker.DigestSize
	idxBatch      = 4096 // entries read at a time
)

func openIndexFile(path string) (*indexFile, error) {
	f, err := inputfile.Open(path)
	if err != nil {
		return nil, err
	}
	x, err := readIndexHeader(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	return x, nil
}

func readIndexHeader(f *os.File, path string) (*indexFile, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	wrap := func(err error) error { return fmt.Errorf("%s: %w", path, err) }
	if st.Size() < idxHeaderSize {
		b := make([]byte, st.Size())
		if _, err := io.ReadFull(f, b); err != nil {
			return nil, wrap(err)
		}
		_, err := chunker.DecodeIndex(b) // names the first header field that is cut off
		if err == nil {
			err = errors.New("index shorter than its header") // unreachable: DecodeIndex refuses it
		}
		return nil, wrap(err)
	}
	hdr := make([]byte, idxHeaderSize)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return nil, wrap(err)
	}
	// DecodeIndex checks magic, version, kind, reserved, parameters and
	// hash code; with size and count zeroed it has nothing else to check.
	probe := bytes.Clone(hdr)
	clear(probe[32:])
	head, err := chunker.DecodeIndex(probe)
	if err != nil {
		return nil, wrap(err)
	}
	bad := func(off int64, field, format string, args ...any) error {
		return wrap(&chunker.IndexError{Offset: off, Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	size := binary.BigEndian.Uint64(hdr[32:])
	if size > 1<<62 {
		return nil, bad(32, "size", "total size %d is implausible", size)
	}
	count := binary.BigEndian.Uint64(hdr[40:])
	body := uint64(st.Size() - idxHeaderSize)
	if count > body/idxEntrySize {
		need := idxHeaderSize + count*idxEntrySize
		if count > (1<<62)/idxEntrySize {
			return nil, bad(40, "count", "chunk count %d is implausible", count)
		}
		last := idxHeaderSize + (body/idxEntrySize)*idxEntrySize
		return nil, bad(int64(last), "chunks", "truncated: count says %d chunks (%d bytes), input is %d bytes", count, need, st.Size())
	}
	if rest := body - count*idxEntrySize; rest != 0 {
		return nil, bad(int64(idxHeaderSize+count*idxEntrySize), "end", "%d trailing bytes after %d chunks", rest, count)
	}
	return &indexFile{path: path, f: f, params: head.Params, hash: head.Hash, size: int64(size), count: int64(count)}, nil
}

func (x *indexFile) Close() error { return x.f.Close() }

// indexSummary is what one pass over an index file computes.
type indexSummary struct {
	root              chunker.Digest
	id                cid.Cid
	smallest, largest uint32
}

// scan reads every entry in order from the start, checks it as
// DecodeIndex does, and calls fn (if set) with its index, offset and
// entry. It returns the Merkle root and the index's own ID.
func (x *indexFile) scan(ctx context.Context, fn func(i, off int64, e chunker.Entry) error) (indexSummary, error) {
	var s indexSummary
	// The ID hashes the file's bytes as they are read, in the same pass.
	pr, pw := io.Pipe()
	idDone := make(chan error, 1)
	go func() {
		var err error
		s.id, err = chunker.IDOf(x.hash, pr)
		pr.CloseWithError(err)
		idDone <- err
	}()
	r := io.TeeReader(io.NewSectionReader(x.f, 0, idxHeaderSize+x.count*idxEntrySize), pw)
	err := x.entries(ctx, r, &s, fn)
	pw.CloseWithError(err)
	if idErr := <-idDone; err == nil {
		err = idErr
	}
	if err != nil {
		return indexSummary{}, err
	}
	return s, nil
}

func (x *indexFile) entries(ctx context.Context, r io.Reader, s *indexSummary, fn func(i, off int64, e chunker.Entry) error) error {
	bad := func(off int64, field, format string, args ...any) error {
		return fmt.Errorf("%s: %w", x.path, &chunker.IndexError{Offset: off, Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	if _, err := io.ReadFull(r, make([]byte, idxHeaderSize)); err != nil {
		return fmt.Errorf("read %s: %w", x.path, err)
	}
	rb := chunker.NewRootBuilder(x.hash)
	buf := make([]byte, idxBatch*idxEntrySize)
	var sum uint64
	for i := int64(0); i < x.count; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(x.count-i, idxBatch)
		b := buf[:n*idxEntrySize]
		if _, err := io.ReadFull(r, b); err != nil {
			return fmt.Errorf("read %s (did it change while being read?): %w", x.path, err)
		}
		for ; len(b) > 0; i, b = i+1, b[idxEntrySize:] {
			off := idxHeaderSize + i*idxEntrySize
			var e chunker.Entry
			e.Size = binary.BigEndian.Uint32(b)
			copy(e.Digest[:], b[4:idxEntrySize])
			field := func() string { return fmt.Sprintf("chunks[%d].size", i) }
			switch {
			case e.Size == 0:
				return bad(off, field(), "zero-length chunk")
			case int(e.Size) > x.params.Max:
				return bad(off, field(), "%d exceeds max %d", e.Size, x.params.Max)
			case int(e.Size) < x.params.Min && i != x.count-1:
				return bad(off, field(), "%d below min %d and not the last chunk", e.Size, x.params.Min)
			}
			if fn != nil {
				if err := fn(i, int64(sum), e); err != nil {
					return err
				}
			}
			sum += uint64(e.Size)
			rb.Add(e)
			if i == 0 {
				s.smallest = e.Size
			}
			s.smallest, s.largest = min(s.smallest, e.Size), max(s.largest, e.Size)
		}
	}
	if sum != uint64(x.size) {
		return bad(32, "size", "header says %d bytes, chunks add up to %d", x.size, sum)
	}
	s.root = rb.Root()
	return nil
}

func newInspectCmd() *cobra.Command {
	var asJSON, list bool
	c := &cobra.Command{
		Use:   "inspect INDEX",
		Short: "Show what an index describes",
		Example: `  shoal inspect rootfs.idx
  shoal inspect rootfs.idx --json
  shoal inspect rootfs.idx --chunks   # one line per chunk: offset, size, ID`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return inspectIndex(cmd.Context(), cmd.OutOrStdout(), args[0], asJSON, list)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object on stdout")
	c.Flags().BoolVar(&list, "chunks", false, "also list every chunk")
	return c
}

type inspectInfo struct {
	Version  int    `json:"format_version"`
	Hash     string `json:"hash"`
	Min      int    `json:"min"`
	Avg      int    `json:"avg"`
	Max      int    `json:"max"`
	Bytes    int64  `json:"bytes"`
	Chunks   int64  `json:"chunks"`
	AvgChunk int64  `json:"avg_chunk"`
	Smallest uint32 `json:"smallest_chunk"`
	Largest  uint32 `json:"largest_chunk"`
	Root     string `json:"root"`
	IndexCID string `json:"index_cid"`
	// List is written after the fields above, entry by entry, as
	// "chunk_list" (omitted when empty); see writeChunkList.
}

type chunkInfo struct {
	Offset int64  `json:"offset"`
	Size   uint32 `json:"size"`
	ID     string `json:"id"`
}

// inspectIndex describes the index at path in one pass over it, or two
// with list (the summary comes first in the output, the chunk list after,
// and neither is held in memory).
func inspectIndex(ctx context.Context, w io.Writer, path string, asJSON, list bool) error {
	x, err := openIndexFile(path)
	if err != nil {
		return err
	}
	defer x.Close()
	s, err := x.scan(ctx, nil)
	if err != nil {
		return err
	}
	info := inspectInfo{
		Version: chunker.IndexVersion, Hash: x.hash.String(),
		Min: x.params.Min, Avg: x.params.Avg, Max: x.params.Max,
		Bytes: x.size, Chunks: x.count, Smallest: s.smallest, Largest: s.largest,
		Root: s.root.String(), IndexCID: s.id.String(),
	}
	if info.Chunks > 0 {
		info.AvgChunk = x.size / info.Chunks
	}
	if asJSON {
		return writeInspectJSON(ctx, w, x, info, s, list)
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "index      %s (format %d)\n", info.IndexCID, info.Version)
	fmt.Fprintf(bw, "size       %d bytes (%s)\n", info.Bytes, humanBytes(info.Bytes))
	fmt.Fprintf(bw, "chunks     %d (avg %s, smallest %s, largest %s)\n", info.Chunks,
		humanBytes(info.AvgChunk), humanBytes(int64(info.Smallest)), humanBytes(int64(info.Largest)))
	fmt.Fprintf(bw, "params     min %d avg %d max %d, %s\n", info.Min, info.Avg, info.Max, info.Hash)
	fmt.Fprintf(bw, "root       %s\n", info.Root)
	if list {
		err := rescan(ctx, x, s, func(i, off int64, e chunker.Entry) error {
			_, err := fmt.Fprintf(bw, "%12d %8d %s\n", off, e.Size, x.hash.ID(e.Digest))
			return err
		})
		if err != nil {
			bw.Flush()
			return err
		}
	}
	return bw.Flush()
}

// rescan makes the second pass of --chunks and fails if the file is not
// the one the first pass described.
func rescan(ctx context.Context, x *indexFile, first indexSummary, fn func(i, off int64, e chunker.Entry) error) error {
	again, err := x.scan(ctx, fn)
	if err != nil {
		return err
	}
	if !again.id.Equals(first.id) {
		return fmt.Errorf("%s changed while being read", x.path)
	}
	return nil
}

// writeInspectJSON writes what writeJSON would write for info with its
// chunk list as a "chunk_list" array at the end, but streams the list.
func writeInspectJSON(ctx context.Context, w io.Writer, x *indexFile, info inspectInfo, s indexSummary, list bool) error {
	if !list || info.Chunks == 0 {
		return writeJSON(w, info)
	}
	var head bytes.Buffer
	if err := writeJSON(&head, info); err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	bw.Write(bytes.TrimSuffix(head.Bytes(), []byte("\n}\n")))
	bw.WriteString(",\n  \"chunk_list\": [")
	err := rescan(ctx, x, s, func(i, off int64, e chunker.Entry) error {
		b, err := json.MarshalIndent(chunkInfo{off, e.Size, x.hash.ID(e.Digest).String()}, "    ", "  ")
		if err != nil {
			return err
		}
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.WriteString("\n    ")
		_, err = bw.Write(b)
		return err
	})
	if err != nil {
		bw.Flush()
		return err
	}
	bw.WriteString("\n  ]\n}\n")
	return bw.Flush()
}
