package main

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
)

// blocks compares two files as sequences of aligned fixed-size blocks: it
// counts the distinct blocks of NEW that occur at no aligned position of
// OLD. For a file system image with BLOCK equal to its block size this is
// what an ideal block-level delta sends; a chunker whose chunks span many
// blocks sends at least about this much, since a chunk holding such a block
// is new unless the same bytes sit unaligned somewhere in OLD.
type blocks struct {
	Block        int    `json:"block"`
	NewBlocks    int    `json:"new_blocks"` // distinct, each counted once
	NewBytes     uint64 `json:"new_bytes"`
	Runs         int    `json:"runs"`        // stretches of consecutive new blocks in NEW
	SingleBlocks int    `json:"single_runs"` // runs of exactly one block
}

// blockSum is one block's digest and length (the last block may be short).
type blockSum struct {
	sum [32]byte
	n   int
}

func blockSums(path string, block int) ([]blockSum, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	buf := make([]byte, block)
	var sums []blockSum
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			sums = append(sums, blockSum{sha256.Sum256(buf[:n]), n})
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return sums, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s at block %d: %w", path, len(sums), err)
		}
	}
}

func blocksOf(oldPath, newPath string, block int) (blocks, error) {
	old, err := blockSums(oldPath, block)
	if err != nil {
		return blocks{}, err
	}
	nw, err := blockSums(newPath, block)
	if err != nil {
		return blocks{}, err
	}
	have := make(map[[32]byte]struct{}, len(old))
	for _, s := range old {
		have[s.sum] = struct{}{}
	}
	b := blocks{Block: block}
	seen := map[[32]byte]struct{}{}
	runLen := 0
	endRun := func() {
		if runLen == 1 {
			b.SingleBlocks++
		}
		runLen = 0
	}
	for _, s := range nw {
		if _, ok := have[s.sum]; ok {
			endRun()
			continue
		}
		if runLen == 0 {
			b.Runs++
		}
		runLen++
		if _, ok := seen[s.sum]; !ok {
			seen[s.sum] = struct{}{}
			b.NewBlocks++
			b.NewBytes += uint64(s.n)
		}
	}
	endRun()
	return b, nil
}
