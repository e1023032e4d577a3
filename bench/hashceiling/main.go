// Command hashceiling is the throughput ceiling for `shoal chunk`: it reads a
// file and SHA-256-hashes it in 4 MiB blocks on every core, with no chunking
// and no index. `shoal chunk` does this work plus finding boundaries, so the
// ratio of the two is the pipeline's efficiency.
//
//	hashceiling [-workers N] [-block SIZE] FILE
//
// Worker w reads blocks w, w+N, w+2N, ... with ReadAt into its own buffer,
// so reads and hashing overlap on all cores. It prints one JSON object:
// bytes read, seconds, MB/s (10^6 bytes per second), workers, block size,
// and a digest of what was hashed: SHA-256 over the blocks' SHA-256s in
// file order, so that the result shows every byte was read and hashed (and
// the same file gives the same digest with any number of workers).
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

type result struct {
	Bytes   int64   `json:"bytes"` // bytes read and hashed
	Digest  string  `json:"digest"`
	Seconds float64 `json:"seconds"`
	MBPerS  float64 `json:"mb_per_s"`
	Workers int     `json:"workers"`
	Block   int     `json:"block"`
}

func main() {
	workers := flag.Int("workers", runtime.GOMAXPROCS(0), "hashing goroutines")
	block := flag.Int("block", 4<<20, "block size in bytes")
	flag.Parse()
	if flag.NArg() != 1 || *workers < 1 || *block < 1 {
		fmt.Fprintln(os.Stderr, "usage: hashceiling [-workers N] [-block SIZE] FILE")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	r, err := hashFile(ctx, flag.Arg(0), *workers, *block)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hashceiling:", err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		fmt.Fprintln(os.Stderr, "hashceiling:", err)
		os.Exit(1)
	}
}

func hashFile(ctx context.Context, path string, workers, block int) (result, error) {
	f, err := os.Open(path)
	if err != nil {
		return result{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return result{}, err
	}
	size := st.Size()
	start := time.Now()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		read  atomic.Int64
		// sums[i] is block i's SHA-256; each worker writes only its own
		// blocks' entries.
		sums = make([][sha256.Size]byte, (size+int64(block)-1)/int64(block))
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, block)
			for off := int64(w) * int64(block); off < size; off += int64(workers) * int64(block) {
				if ctx.Err() != nil {
					return
				}
				n, err := f.ReadAt(buf, off)
				if err != nil && !(errors.Is(err, io.EOF) && off+int64(n) == size) {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("read %s at offset %d: %w", path, off, err)
					}
					mu.Unlock()
					return
				}
				sums[off/int64(block)] = sha256.Sum256(buf[:n])
				read.Add(int64(n))
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return result{}, first
	}
	if err := ctx.Err(); err != nil {
		return result{}, err
	}
	secs := time.Since(start).Seconds()
	h := sha256.New()
	for _, d := range sums {
		h.Write(d[:])
	}
	r := result{Bytes: read.Load(), Digest: hex.EncodeToString(h.Sum(nil)), Seconds: secs, Workers: workers, Block: block}
	if secs > 0 {
		r.MBPerS = float64(size) / 1e6 / secs
	}
	return r, nil
}
