package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/shoalnet/shoal/chunker"
)

// readIndexFile reads and decodes an index, naming the file in errors.
func readIndexFile(path string) (*chunker.Index, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	ix, err := chunker.DecodeIndex(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ix, nil
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
			ix, err := readIndexFile(args[0])
			if err != nil {
				return err
			}
			type chunkInfo struct {
				Offset int64  `json:"offset"`
				Size   uint32 `json:"size"`
				ID     string `json:"id"`
			}
			info := struct {
				Version  int         `json:"format_version"`
				Hash     string      `json:"hash"`
				Min      int         `json:"min"`
				Avg      int         `json:"avg"`
				Max      int         `json:"max"`
				Bytes    int64       `json:"bytes"`
				Chunks   int         `json:"chunks"`
				AvgChunk int64       `json:"avg_chunk"`
				Smallest uint32      `json:"smallest_chunk"`
				Largest  uint32      `json:"largest_chunk"`
				Root     string      `json:"root"`
				IndexCID string      `json:"index_cid"`
				List     []chunkInfo `json:"chunk_list,omitempty"`
			}{
				Version: chunker.IndexVersion, Hash: ix.Hash.String(),
				Min: ix.Params.Min, Avg: ix.Params.Avg, Max: ix.Params.Max,
				Bytes: ix.Size, Chunks: len(ix.Chunks), Root: ix.Root().String(), IndexCID: ix.CID().String(),
			}
			if info.Chunks > 0 {
				info.AvgChunk = ix.Size / int64(info.Chunks)
				info.Smallest = ix.Chunks[0].Size
			}
			off := ix.Offsets()
			for i, e := range ix.Chunks {
				info.Smallest = min(info.Smallest, e.Size)
				info.Largest = max(info.Largest, e.Size)
				if list {
					info.List = append(info.List, chunkInfo{off[i], e.Size, ix.ID(i).String()})
				}
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(w, info)
			}
			fmt.Fprintf(w, "index      %s (format %d)\n", info.IndexCID, info.Version)
			fmt.Fprintf(w, "size       %d bytes (%s)\n", info.Bytes, humanBytes(info.Bytes))
			fmt.Fprintf(w, "chunks     %d (avg %s, smallest %s, largest %s)\n", info.Chunks,
				humanBytes(info.AvgChunk), humanBytes(int64(info.Smallest)), humanBytes(int64(info.Largest)))
			fmt.Fprintf(w, "params     min %d avg %d max %d, %s\n", info.Min, info.Avg, info.Max, info.Hash)
			fmt.Fprintf(w, "root       %s\n", info.Root)
			for _, c := range info.List {
				fmt.Fprintf(w, "%12d %8d %s\n", c.Offset, c.Size, c.ID)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object on stdout")
	c.Flags().BoolVar(&list, "chunks", false, "also list every chunk")
	return c
}
