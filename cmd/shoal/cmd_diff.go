package main

import (
	"context"
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
			r, params, err := diffIndexFiles(cmd.Context(), args[0], args[1])
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
			if params[0] != params[1] {
				fmt.Fprintf(w, "note: chunker parameters differ (%v vs %v), so few chunks can match\n", params[0], params[1])
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object on stdout")
	return c
}
