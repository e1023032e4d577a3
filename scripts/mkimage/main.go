// Command mkimage writes deterministic synthetic disk images for the demo
// and benchmarks: random "files" separated by zero runs, like a filesystem
// image. -change FRACTION derives a new version from the same seed: a few
// regions are rewritten, bytes are inserted in some places and removed in
// others, so content-defined chunking has real work to do.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
)

func main() {
	size := flag.Int64("size", 256<<20, "image size in bytes")
	seed := flag.Uint64("seed", 1, "content seed")
	change := flag.Float64("change", 0, "fraction of regions to change (0 = base image)")
	out := flag.String("o", "", "output file")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "usage: mkimage -o FILE [-size N] [-seed S] [-change F]")
		os.Exit(2)
	}
	if err := write(*out, *size, *seed, *change); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func write(path string, size int64, seed uint64, change float64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	layout := rand.New(rand.NewPCG(seed, 1))       // region sizes and kinds: same for every version
	edits := rand.New(rand.NewPCG(seed, 2))        // which regions change
	fresh := rand.New(rand.NewPCG(seed^0xfeed, 3)) // content of changed regions
	var written int64
	buf := make([]byte, 1<<20)
	for region := 0; written < size; region++ {
		n := int64(4<<10 + layout.IntN(2<<20))
		zero := layout.IntN(4) == 0
		content := rand.New(rand.NewPCG(seed, uint64(region)+100))
		switch r := edits.Float64(); {
		case r < change/3: // rewrite the region
			content = fresh
		case r < 2*change/3: // insert a few bytes before it
			extra := int64(1 + edits.IntN(4096))
			if err := fill(w, fresh, extra, false, buf); err != nil {
				return err
			}
			written += extra
		case r < change: // drop its first bytes
			n -= min(n-1, int64(1+edits.IntN(4096)))
		}
		n = min(n, size-written)
		if err := fill(w, content, n, zero, buf); err != nil {
			return err
		}
		written += n
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Close()
}

func fill(w *bufio.Writer, r *rand.Rand, n int64, zero bool, buf []byte) error {
	for n > 0 {
		b := buf[:min(int64(len(buf)), n)]
		if zero {
			clear(b)
		} else {
			for i := 0; i+8 <= len(b); i += 8 {
				v := r.Uint64()
				for j := range 8 {
					b[i+j] = byte(v >> (8 * j))
				}
			}
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		n -= int64(len(b))
	}
	return nil
}
