// Command idxstat reads shoal indexes (.idx) and casync blob indexes
// (.caibx) for the benchmarks in bench/. It prints one JSON object:
//
//	idxstat stats FILE                 chunk count and size statistics
//	idxstat diff OLD NEW               what NEW adds to OLD, counted as
//	                                   `shoal diff` counts: distinct new chunk
//	                                   IDs, each once, uncompressed sizes
//	idxstat runs OLD NEW [OLD.tar NEW.tar]
//	                                   where the new chunks of NEW are: runs
//	                                   of consecutive new chunks, and, given
//	                                   the tar files the indexes describe,
//	                                   how many of their bytes are not in
//	                                   changed tar members (the overhead of
//	                                   chunking over an ideal delta)
//	idxstat blocks OLD.img NEW.img [BLOCK]
//	                                   distinct BLOCK-byte blocks (default
//	                                   4096) of NEW found nowhere in OLD
//
// The two formats are told apart by their first bytes. Chunk IDs are only
// compared within one tool.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "idxstat:", err)
		os.Exit(1)
	}
}

const usage = "usage: idxstat stats FILE | idxstat diff OLD NEW | idxstat runs OLD NEW [OLD.tar NEW.tar] | idxstat blocks OLD NEW [BLOCK]"

func run(args []string) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	if args[0] == "blocks" {
		if len(args) != 3 && len(args) != 4 {
			return errors.New(usage)
		}
		block := 4096
		if len(args) == 4 {
			n, err := strconv.Atoi(args[3])
			if err != nil || n < 1 || n > 1<<24 {
				return fmt.Errorf("bad block size %q", args[3])
			}
			block = n
		}
		b, err := blocksOf(args[1], args[2], block)
		if err != nil {
			return err
		}
		return printJSON(b)
	}
	var ixs []*index
	nidx := map[string]int{"stats": 1, "diff": 2, "runs": 2}[args[0]]
	if nidx == 0 || len(args) < 1+nidx {
		return errors.New(usage)
	}
	for _, p := range args[1 : 1+nidx] {
		ix, err := load(p)
		if err != nil {
			return err
		}
		ixs = append(ixs, ix)
	}
	var out any
	switch rest := args[1+nidx:]; {
	case args[0] == "stats" && len(rest) == 0:
		out = statsOf(ixs[0])
	case args[0] == "diff" && len(rest) == 0:
		out = diffOf(ixs[0], ixs[1])
	case args[0] == "runs" && len(rest) == 0:
		out = runsOf(ixs[0], ixs[1], nil)
	case args[0] == "runs" && len(rest) == 2:
		changed, err := changedSpans(rest[0], rest[1])
		if err != nil {
			return err
		}
		out = runsOf(ixs[0], ixs[1], changed)
	default:
		return errors.New(usage)
	}
	return printJSON(out)
}

func printJSON(v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := os.Stdout.Write(buf.Bytes())
	return err
}

// stats mirrors the fields of `shoal inspect --json`, plus how many chunks
// were cut at the maximum size (no boundary found before it).
type stats struct {
	Tool     string `json:"tool"`
	Min      uint64 `json:"min"`
	Avg      uint64 `json:"avg"`
	Max      uint64 `json:"max"`
	Bytes    uint64 `json:"bytes"`
	Chunks   int    `json:"chunks"`
	Distinct int    `json:"distinct_chunks"`
	AvgChunk uint64 `json:"avg_chunk"`
	Smallest uint64 `json:"smallest_chunk"`
	Largest  uint64 `json:"largest_chunk"`
	AtMax    int    `json:"at_max"`
}

func statsOf(ix *index) stats {
	s := stats{Tool: ix.tool, Min: ix.min, Avg: ix.avg, Max: ix.max, Bytes: ix.size, Chunks: len(ix.chunks)}
	seen := make(map[[32]byte]struct{}, len(ix.chunks))
	for i, c := range ix.chunks {
		seen[c.id] = struct{}{}
		if i == 0 || c.size < s.Smallest {
			s.Smallest = c.size
		}
		s.Largest = max(s.Largest, c.size)
		if c.size == ix.max {
			s.AtMax++
		}
	}
	s.Distinct = len(seen)
	if s.Chunks > 0 {
		s.AvgChunk = ix.size / uint64(s.Chunks)
	}
	return s
}

// diff uses the field names of `shoal diff --json`.
type diff struct {
	TotalChunks int    `json:"total_chunks"`
	TotalBytes  uint64 `json:"total_bytes"`
	NewChunks   int    `json:"new_chunks"`
	NewBytes    uint64 `json:"new_bytes"`
	ReusedBytes uint64 `json:"reused_bytes"`
}

func diffOf(old, nw *index) diff {
	have := idSet(old)
	d := diff{TotalChunks: len(nw.chunks), TotalBytes: nw.size}
	fetched := make(map[[32]byte]struct{})
	for _, c := range nw.chunks {
		if _, ok := have[c.id]; ok {
			d.ReusedBytes += c.size
			continue
		}
		if _, ok := fetched[c.id]; ok {
			continue
		}
		fetched[c.id] = struct{}{}
		d.NewChunks++
		d.NewBytes += c.size
	}
	return d
}

func idSet(ix *index) map[[32]byte]struct{} {
	have := make(map[[32]byte]struct{}, len(ix.chunks))
	for _, c := range ix.chunks {
		have[c.id] = struct{}{}
	}
	return have
}

// runs describes the runs of consecutive chunks of NEW that OLD lacks. A
// run is where an edit cost whole chunks; its overhead is its bytes outside
// changed spans (when those are known).
type runs struct {
	Tool          string  `json:"tool"`
	NewChunks     int     `json:"new_chunks"` // chunk positions, repeats included
	NewBytes      uint64  `json:"new_bytes"`  // their bytes
	Runs          int     `json:"runs"`
	ChunksPerRun  float64 `json:"chunks_per_run_mean"`
	MaxRunChunks  int     `json:"chunks_per_run_max"`
	RunBytesMed   uint64  `json:"run_bytes_median"`
	RunBytesMax   uint64  `json:"run_bytes_max"`
	ChangedBytes  uint64  `json:"changed_bytes,omitempty"`   // bytes of changed tar members
	ChangedSpans  int     `json:"changed_regions,omitempty"` // after merging neighbours
	Overhead      uint64  `json:"overhead_bytes,omitempty"`  // new bytes outside changed spans
	OverheadMean  uint64  `json:"overhead_per_run_mean,omitempty"`
	OverheadMed   uint64  `json:"overhead_per_run_median,omitempty"`
	OverheadMax   uint64  `json:"overhead_per_run_max,omitempty"`
	RunsOver256K  int     `json:"runs_overhead_over_256k,omitempty"`
	OverheadOver  uint64  `json:"overhead_in_runs_over_256k,omitempty"`
	OverheadShare float64 `json:"overhead_share_of_new,omitempty"`
}

func runsOf(old, nw *index, changed []span) runs {
	have := idSet(old)
	r := runs{Tool: nw.tool}
	var (
		spans []span
		sizes []int // chunks per run
		off   uint64
	)
	for _, c := range nw.chunks {
		if _, ok := have[c.id]; !ok {
			r.NewChunks++
			r.NewBytes += c.size
			if n := len(spans); n > 0 && spans[n-1].end == off {
				spans[n-1].end += c.size
				sizes[n-1]++
			} else {
				spans = append(spans, span{off, off + c.size})
				sizes = append(sizes, 1)
			}
		}
		off += c.size
	}
	r.Runs = len(spans)
	if r.Runs == 0 {
		return r
	}
	r.ChunksPerRun = float64(r.NewChunks) / float64(r.Runs)
	r.MaxRunChunks = slices.Max(sizes)
	lens := make([]uint64, len(spans))
	for i, s := range spans {
		lens[i] = s.end - s.start
	}
	slices.Sort(lens)
	r.RunBytesMed, r.RunBytesMax = lens[len(lens)/2], lens[len(lens)-1]
	if changed == nil {
		return r
	}
	r.ChangedSpans = len(changed)
	for _, s := range changed {
		r.ChangedBytes += s.end - s.start
	}
	over := make([]uint64, len(spans))
	for i, s := range spans {
		over[i] = s.end - s.start - overlap(s, changed)
		r.Overhead += over[i]
		if over[i] > 256<<10 {
			r.RunsOver256K++
			r.OverheadOver += over[i]
		}
	}
	slices.Sort(over)
	r.OverheadMean = r.Overhead / uint64(len(over))
	r.OverheadMed, r.OverheadMax = over[len(over)/2], over[len(over)-1]
	r.OverheadShare = float64(r.Overhead) / float64(r.NewBytes)
	return r
}
