package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"
	"github.com/spf13/cobra"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/chunker/delta"
	"github.com/shoalnet/shoal/internal/inputfile"
)

// diffResult is what an update from OLD to NEW must download.
type diffResult struct {
	TotalChunks int   `json:"total_chunks"` // chunks in NEW
	TotalBytes  int64 `json:"total_bytes"`  // bytes of NEW
	NewChunks   int   `json:"new_chunks"`   // distinct chunks of NEW that OLD lacks
	NewBytes    int64 `json:"new_bytes"`    // their bytes, each counted once: what crosses the network
	ReusedBytes int64 `json:"reused_bytes"` // bytes of NEW found in OLD (copied locally)
	// Bytes of NEW in chunks that are new but occur more than once in NEW
	// (fetched once, written several times).
	RepeatedBytes int64 `json:"repeated_bytes"`
}

// diffIndexFiles compares two index files. NEW is streamed; of OLD only
// the set of its digests is held, and openIndexFile has checked OLD's
// chunk count against its file size before anything is allocated for it.
// It also returns the two indexes' chunker parameters.
func diffIndexFiles(ctx context.Context, oldPath, newPath string) (diffResult, [2]chunker.Params, error) {
	old, err := openIndexFile(oldPath)
	if err != nil {
		return diffResult{}, [2]chunker.Params{}, err
	}
	defer old.Close()
	nw, err := openIndexFile(newPath)
	if err != nil {
		return diffResult{}, [2]chunker.Params{}, err
	}
	defer nw.Close()
	if old.hash != nw.hash {
		return diffResult{}, [2]chunker.Params{}, fmt.Errorf("indexes use different hash functions (%v and %v): no chunk can match", old.hash, nw.hash)
	}
	have := make(map[chunker.Digest]struct{}) // grows with OLD's distinct chunks only
	if _, err := old.scan(ctx, func(_, _ int64, e chunker.Entry) error {
		have[e.Digest] = struct{}{}
		return nil
	}); err != nil {
		return diffResult{}, [2]chunker.Params{}, err
	}
	r := diffResult{TotalChunks: int(nw.count), TotalBytes: nw.size}
	fetched := make(map[chunker.Digest]struct{})
	_, err = nw.scan(ctx, func(_, _ int64, e chunker.Entry) error {
		if _, ok := have[e.Digest]; ok {
			r.ReusedBytes += int64(e.Size)
			return nil
		}
		if _, ok := fetched[e.Digest]; ok {
			r.RepeatedBytes += int64(e.Size)
			return nil
		}
		fetched[e.Digest] = struct{}{}
		r.NewChunks++
		r.NewBytes += int64(e.Size)
		return nil
	})
	if err != nil {
		return diffResult{}, [2]chunker.Params{}, err
	}
	return r, [2]chunker.Params{old.params, nw.params}, nil
}

// deltaDiffResult is diffResult plus what the new chunks cost as deltas
// against OLD's image (shoal diff --delta).
type deltaDiffResult struct {
	diffResult
	// The new chunks as stored chunk objects (zstd or raw, as publish
	// stores them): what a device downloads without deltas.
	WholeCompressedBytes int64 `json:"whole_compressed_bytes"`
	// What a device downloads with deltas: the delta objects plus the
	// whole objects of the new chunks without one. The delta index itself
	// is delta_index_bytes more.
	DeltaBytes       int64  `json:"delta_bytes"`
	DeltaIndexBytes  int    `json:"delta_index_bytes"`
	Deltas           int    `json:"deltas"`             // new chunks sent as deltas
	KeptWhole        int    `json:"kept_whole"`         // new chunks sent whole (no delta clearly smaller)
	DeltaObjectBytes int64  `json:"delta_object_bytes"` // the delta objects alone
	ReferenceBytes   int64  `json:"reference_bytes"`    // bytes of OLD's image a device reads to expand them
	References       int    `json:"references"`         // distinct references (zstd dictionaries) the planner built
	MaxRef           int    `json:"max_ref"`            // reference cap per delta
	Level            string `json:"level"`              // zstd level of the deltas
}

// deltaDiffOptions are diff's --delta flags.
type deltaDiffOptions struct {
	maxRef int
	level  string
}

// diffDelta runs diff's index comparison, then plans deltas of NEW's new
// chunks against OLD's image without writing anything. Both images are
// checked against their indexes as they are read: sizes first, then every
// chunk the planner reads.
func diffDelta(ctx context.Context, oldIdx, newIdx, oldImg, newImg string, o deltaDiffOptions) (deltaDiffResult, [2]chunker.Params, error) {
	var res deltaDiffResult
	ok, level := zstd.EncoderLevelFromString(o.level)
	if !ok {
		return res, [2]chunker.Params{}, usageError{fmt.Errorf("--level %q: want fastest, default, better or best", o.level)}
	}
	if o.maxRef < 1 || o.maxRef > delta.RefCeil {
		return res, [2]chunker.Params{}, usageError{fmt.Errorf("--max-ref %d: want 1 to %d bytes", o.maxRef, delta.RefCeil)}
	}
	r, params, err := diffIndexFiles(ctx, oldIdx, newIdx)
	if err != nil {
		return res, params, err
	}
	res.diffResult = r
	var imgs [2]delta.Image
	for i, p := range [2][2]string{{oldIdx, oldImg}, {newIdx, newImg}} {
		ix, err := readIndexFile(p[0])
		if err != nil {
			return res, params, err
		}
		f, err := openImageFor(p[1], p[0], ix)
		if err != nil {
			return res, params, err
		}
		defer f.Close()
		imgs[i] = delta.Image{Index: ix, Data: f}
	}
	dix, st, err := delta.Plan(ctx, imgs[0], imgs[1], delta.Options{MaxRef: o.maxRef, Level: level})
	if err != nil {
		return res, params, err
	}
	if st.NewBytes != r.NewBytes || st.NewChunks != r.NewChunks {
		// Both count the distinct chunks of NEW that OLD lacks; a
		// difference means one of the index files changed between reads.
		return res, params, fmt.Errorf("the planner found %d new chunks (%d bytes), the index comparison %d (%d bytes): did an index change while being read?", st.NewChunks, st.NewBytes, r.NewChunks, r.NewBytes)
	}
	res.WholeCompressedBytes = st.WholeBytes
	res.DeltaBytes = st.DeltaBytes
	res.DeltaIndexBytes = len(dix.Encode())
	res.Deltas, res.KeptWhole = st.Deltas, st.KeptWhole
	res.DeltaObjectBytes = st.ObjectBytes
	res.ReferenceBytes = st.RefBytes
	res.References = st.References
	res.MaxRef = o.maxRef
	res.Level = level.String()
	return res, params, nil
}

// readIndexFile reads and decodes a whole index file. openIndexFile (run
// on the same path by diffIndexFiles first) has checked its length
// against its chunk count, so this allocates what the file holds.
func readIndexFile(path string) (*chunker.Index, error) {
	f, err := inputfile.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	ix, err := chunker.DecodeIndex(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ix, nil
}

// openImageFor opens the image an index describes and checks its size.
// A regular file or a block device; a FIFO, a directory or a character
// device is refused before anything is read.
func openImageFor(path, idxPath string, ix *chunker.Index) (*os.File, error) {
	f, size, err := inputfile.OpenImage(path)
	if err != nil {
		return nil, err
	}
	if size != ix.Size {
		f.Close()
		return nil, fmt.Errorf("%s: %w: the image is %d bytes, index %s says %d", path, delta.ErrImageMismatch, size, idxPath, ix.Size)
	}
	return f, nil
}

func newDiffCmd() *cobra.Command {
	var asJSON, withDelta bool
	do := deltaDiffOptions{maxRef: delta.DefaultMaxRef, level: "best"}
	c := &cobra.Command{
		Use:   "diff OLD.idx NEW.idx [--delta OLD_IMAGE NEW_IMAGE]",
		Short: "Show what an update from OLD to NEW must download",
		Long: `diff compares two indexes by chunk ID: chunks of NEW that OLD already has are
copied locally on a device; the rest must be downloaded, each distinct chunk once.

With --delta and both images, it also computes, without publishing anything,
what those new chunks cost as zstd deltas against OLD's image (docs/deltas.md):
whole_compressed_bytes is the download without deltas, delta_bytes with them.
Each image must match its index; every chunk read is checked.`,
		Example: `  shoal diff v1.idx v2.idx
  shoal diff v1.idx v2.idx --json | jq .new_bytes
  shoal diff v1.idx v2.idx --delta v1.img v2.img --json`,
		Args: func(c *cobra.Command, args []string) error {
			if withDelta {
				return exactArgs(4)(c, args)
			}
			return exactArgs(2)(c, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var (
				r      diffResult
				dr     deltaDiffResult
				params [2]chunker.Params
				err    error
			)
			if withDelta {
				dr, params, err = diffDelta(cmd.Context(), args[0], args[1], args[2], args[3], do)
				r = dr.diffResult
			} else {
				r, params, err = diffIndexFiles(cmd.Context(), args[0], args[1])
			}
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				if withDelta {
					return writeJSON(w, dr)
				}
				return writeJSON(w, r)
			}
			pct := 0.0
			if r.TotalBytes > 0 {
				pct = 100 * float64(r.NewBytes) / float64(r.TotalBytes)
			}
			fmt.Fprintf(w, "new release  %d chunks, %s\n", r.TotalChunks, humanBytes(r.TotalBytes))
			fmt.Fprintf(w, "download     %d chunks, %s (%.1f%% of the image)\n", r.NewChunks, humanBytes(r.NewBytes), pct)
			fmt.Fprintf(w, "reused       %s already on the device\n", humanBytes(r.ReusedBytes))
			if withDelta {
				fmt.Fprintf(w, "compressed   %s as whole chunk objects\n", humanBytes(dr.WholeCompressedBytes))
				dpct := 0.0
				if dr.WholeCompressedBytes > 0 {
					dpct = 100 * float64(dr.DeltaBytes) / float64(dr.WholeCompressedBytes)
				}
				fmt.Fprintf(w, "with deltas  %s (%.1f%% of the whole objects): %d deltas, %d chunks whole, delta index %s\n",
					humanBytes(dr.DeltaBytes), dpct, dr.Deltas, dr.KeptWhole, humanBytes(int64(dr.DeltaIndexBytes)))
			}
			if params[0] != params[1] {
				fmt.Fprintf(w, "note: chunker parameters differ (%v vs %v), so few chunks can match\n", params[0], params[1])
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object on stdout")
	c.Flags().BoolVar(&withDelta, "delta", false, "also plan deltas of the new chunks against OLD's image (takes OLD_IMAGE NEW_IMAGE)")
	c.Flags().Var(sizeFlag{&do.maxRef}, "max-ref", "with --delta: reference bytes per delta at most")
	c.Flags().StringVar(&do.level, "level", do.level, "with --delta: zstd level of the deltas (fastest, default, better, best)")
	return c
}
