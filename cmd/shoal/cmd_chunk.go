package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/spf13/cobra"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/internal/atomicfile"
	"github.com/shoalnet/shoal/internal/inputfile"
	"github.com/shoalnet/shoal/internal/progress"
)

func newChunkCmd() *cobra.Command {
	var (
		out      string
		p        = chunker.DefaultParams
		hashName string
		asJSON   bool
	)
	c := &cobra.Command{
		Use:   "chunk FILE -o OUT.idx",
		Short: "Cut a file into content-defined chunks and write its index",
		Long: `chunk reads FILE, cuts it into content-defined chunks (FastCDC), hashes every
chunk on all cores and writes the index: chunker parameters, hash function,
total size, and each chunk's size and digest. The index's Merkle root is what a
signed release pins.

FILE is a regular file or a block device (a disk or a slot); named pipes,
sockets and character devices are refused, and so is an OUT that is FILE
itself under another name (a symlink, a hard link, ./FILE).`,
		Example: `  shoal chunk rootfs.img -o rootfs.idx
  shoal chunk rootfs.img -o rootfs.idx --min 16K --avg 64K --max 256K --hash blake3
  shoal chunk rootfs.img -o rootfs.idx --json | jq .root`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageError{fmt.Errorf("missing -o OUT.idx")}
			}
			h, err := chunker.ParseHash(hashName)
			if err != nil {
				return usageError{err}
			}
			if err := p.Validate(); err != nil {
				return usageError{err}
			}
			// An image is a regular file or a block device (a slot); a
			// named pipe would block until a writer came, and a character
			// device such as /dev/zero never ends.
			f, size, err := inputfile.OpenImage(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			if err := checkNotInput(f, args[0], out); err != nil {
				return err
			}
			bar := progress.Start("chunk")
			start := time.Now()
			var sum chunker.Summary
			var indexID cid.Cid
			// The index streams into a temporary file next to OUT and
			// replaces OUT only when complete, so memory stays flat for
			// any input size and a failed run leaves OUT as it was.
			err = atomicfile.WriteAt(out, 0o644, func(w atomicfile.File) error {
				var err error
				sum, err = chunker.SplitTo(cmd.Context(), f, chunker.Options{Params: p, Hash: h, Progress: func(done int64) { bar.Report(done, size) }},
					chunker.NewIndexWriter(w, p, h))
				if err != nil {
					return fmt.Errorf("chunk %s: %w", args[0], err)
				}
				indexID, err = chunker.IDOf(h, io.NewSectionReader(w, 0, 1<<62))
				return err
			})
			bar.End(err)
			if err != nil {
				return err
			}
			return printChunkResult(cmd.OutOrStdout(), asJSON, sum, indexID, time.Since(start).Seconds(), out)
		},
	}
	f := c.Flags()
	f.StringVarP(&out, "output", "o", "", "where to write the index (required)")
	f.Var(sizeFlag{&p.Min}, "min", "minimum chunk size")
	f.Var(sizeFlag{&p.Avg}, "avg", "average chunk size")
	f.Var(sizeFlag{&p.Max}, "max", "maximum chunk size")
	f.StringVar(&hashName, "hash", "sha2-256", "chunk hash function: sha2-256 or blake3")
	f.BoolVar(&asJSON, "json", false, "print one JSON object on stdout")
	return c
}

// checkNotInput refuses an output path that names the input file, however
// spelt: the same path, ./ or ../ forms, a symlink or a hard link to it, or
// another node of the same block device. Writing the index would replace
// the image.
func checkNotInput(in *os.File, inPath, out string) error {
	ist, err := in.Stat()
	if err != nil {
		return err
	}
	ost, err := os.Stat(out)
	if err != nil {
		return nil // nothing there yet (or unreadable: writing will say why)
	}
	if inputfile.Same(ist, ost, inPath, out) {
		return usageError{fmt.Errorf("output %s is the input %s: writing the index would replace the image", out, inPath)}
	}
	return nil
}

type chunkResult struct {
	Chunks   int     `json:"chunks"`
	Bytes    int64   `json:"bytes"`
	AvgChunk int64   `json:"avg_chunk"`
	Root     string  `json:"root"`
	Seconds  float64 `json:"seconds"`
	Index    string  `json:"index"`
	IndexCID string  `json:"index_cid"`
	Hash     string  `json:"hash"`
	Params   string  `json:"params"`
	MBPerSec float64 `json:"mb_per_s"`
}

func printChunkResult(w io.Writer, asJSON bool, s chunker.Summary, indexID cid.Cid, secs float64, out string) error {
	r := chunkResult{
		Chunks: s.Chunks, Bytes: s.Size, Root: s.Root.String(), Seconds: secs,
		Index: out, IndexCID: indexID.String(), Hash: s.Hash.String(), Params: s.Params.String(),
	}
	if r.Chunks > 0 {
		r.AvgChunk = s.Size / int64(r.Chunks)
	}
	if secs > 0 {
		r.MBPerSec = float64(s.Size) / 1e6 / secs
	}
	if asJSON {
		return writeJSON(w, r)
	}
	_, err := fmt.Fprintf(w, "%s: %d chunks, %s, average chunk %s, %.2fs (%.0f MB/s)\nroot %s\n",
		out, r.Chunks, humanBytes(r.Bytes), humanBytes(r.AvgChunk), secs, r.MBPerSec, r.Root)
	return err
}

// humanBytes formats n in binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
