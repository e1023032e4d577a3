package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/shoalnet/shoal/chunker"
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

func diffIndexes(old, new *chunker.Index) (diffResult, error) {
	if old.Hash != new.Hash {
		return diffResult{}, fmt.Errorf("indexes use different hash functions (%v and %v): no chunk can match", old.Hash, new.Hash)
	}
	have := make(map[chunker.Digest]struct{}, len(old.Chunks))
	for _, e := range old.Chunks {
		have[e.Digest] = struct{}{}
	}
	r := diffResult{TotalChunks: len(new.Chunks), TotalBytes: new.Size}
	fetched := make(map[chunker.Digest]struct{})
	for _, e := range new.Chunks {
		if _, ok := have[e.Digest]; ok {
			r.ReusedBytes += int64(e.Size)
			continue
		}
		if _, ok := fetched[e.Digest]; ok {
			r.RepeatedBytes += int64(e.Size)
			continue
		}
		fetched[e.Digest] = struct{}{}
		r.NewChunks++
		r.NewBytes += int64(e.Size)
	}
	return r, nil
}

func newDiffCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "diff OLD.idx NEW.idx",
		Short: "Show what an update from OLD to NEW must download",
		Long: `diff compares two indexes by chunk ID: chunks of NEW that OLD already has are
copied locally on a device; the rest must be downloaded, each distinct chunk once.`,
		Example: `  shoal diff v1.idx v2.idx
  shoal diff v1.idx v2.idx --json | jq .new_bytes`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			old, err := readIndexFile(args[0])
			if err != nil {
				return err
			}
			nw, err := readIndexFile(args[1])
			if err != nil {
				return err
			}
			r, err := diffIndexes(old, nw)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(w, r)
			}
			pct := 0.0
			if r.TotalBytes > 0 {
				pct = 100 * float64(r.NewBytes) / float64(r.TotalBytes)
			}
			fmt.Fprintf(w, "new release  %d chunks, %s\n", r.TotalChunks, humanBytes(r.TotalBytes))
			fmt.Fprintf(w, "download     %d chunks, %s (%.1f%% of the image)\n", r.NewChunks, humanBytes(r.NewBytes), pct)
			fmt.Fprintf(w, "reused       %s already on the device\n", humanBytes(r.ReusedBytes))
			if old.Params != nw.Params {
				fmt.Fprintf(w, "note: chunker parameters differ (%v vs %v), so few chunks can match\n", old.Params, nw.Params)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object on stdout")
	return c
}
