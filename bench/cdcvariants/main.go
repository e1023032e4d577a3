// Command cdcvariants measures how changes to the chunker's normalization
// would change dedup. It cuts with package chunker's own cutter
// (chunker.NewCutter), with the mask widths and the normal point as flags;
// with no flags it uses chunker's normalization and cuts exactly where
// chunker.Split does (main_test.go checks this), so its numbers for other
// settings measure the code that ships.
//
//	cdcvariants [flags] OLD NEW         new bytes of NEW given OLD, as `shoal diff` counts
//	cdcvariants [flags] -edits N FILE   N random single edits (replace, insert
//	                                    or delete of 1 B..64 KiB, log-uniform)
//	                                    in windows of FILE: new bytes per edit
//	cdcvariants -casync -edits N FILE   the same edits measured with casync make
//
// Flags: -strict and -loose (one-bits of the masks, 1..42; default
// log2(avg) and log2(avg)-1, as chunker), -normal (where the strict mask
// ends, min..max; default avg-(avg-min)/4), -min, -avg, -max (default
// 16/64/256 KiB), -window (4 MiB), -seed.
package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"

	"github.com/shoalnet/shoal/chunker"
)

type chunk struct {
	size int
	sum  [32]byte
}

// split cuts data into chunks with ct and hashes each (SHA-256, chunker's
// default).
func split(ct *chunker.Cutter, data []byte) []chunk {
	var out []chunk
	for pos := 0; pos < len(data); {
		n := ct.Cut(data[pos:])
		out = append(out, chunk{n, sha256.Sum256(data[pos : pos+n])})
		pos += n
	}
	return out
}

// newBytes counts the distinct chunks of nw missing from old, once each.
func newBytes(old, nw []chunk) (bytes, count int) {
	have := map[[32]byte]bool{}
	for _, c := range old {
		have[c.sum] = true
	}
	seen := map[[32]byte]bool{}
	for _, c := range nw {
		if !have[c.sum] && !seen[c.sum] {
			seen[c.sum] = true
			bytes += c.size
			count++
		}
	}
	return bytes, count
}

type config struct {
	min, avg, max, normal, strict, loose int
}

func (c config) params() chunker.Params {
	return chunker.Params{Min: c.min, Avg: c.avg, Max: c.max}
}

// fill checks the sizes as chunker does and applies chunker's
// normalization to unset (negative) fields.
func (c *config) fill() error {
	p := c.params()
	if err := p.Validate(); err != nil {
		return err
	}
	n := p.Normalization()
	if c.strict < 0 {
		c.strict = n.StrictBits
	}
	if c.loose < 0 {
		c.loose = n.LooseBits
	}
	if c.normal < 0 {
		c.normal = n.Normal
	}
	_, err := c.cutter()
	return err
}

// cutter is chunker's cutter with c's normalization.
func (c config) cutter() (*chunker.Cutter, error) {
	return chunker.NewCutter(c.params(), chunker.Normalization{StrictBits: c.strict, LooseBits: c.loose, Normal: c.normal})
}

func main() {
	var c config
	flag.IntVar(&c.min, "min", 16<<10, "minimum chunk size")
	flag.IntVar(&c.avg, "avg", 64<<10, "average chunk size")
	flag.IntVar(&c.max, "max", 256<<10, "maximum chunk size")
	flag.IntVar(&c.normal, "normal", -1, "end of the strict mask (default avg-(avg-min)/4)")
	flag.IntVar(&c.strict, "strict", -1, "one-bits of the strict mask (default log2(avg))")
	flag.IntVar(&c.loose, "loose", -1, "one-bits of the loose mask (default log2(avg)-1)")
	edits := flag.Int("edits", 0, "measure N random single edits of FILE instead of a pair")
	window := flag.Int("window", 4<<20, "window size for -edits")
	seed := flag.Uint64("seed", 7, "seed for -edits")
	useCasync := flag.Bool("casync", false, "with -edits: measure casync make instead")
	flag.Parse()
	if err := run(c, *edits, *window, *seed, *useCasync, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "cdcvariants:", err)
		os.Exit(1)
	}
}

func run(c config, edits, window int, seed uint64, useCasync bool, args []string) error {
	if err := c.fill(); err != nil {
		return err
	}
	var out any
	switch {
	case edits == 0 && len(args) == 2 && !useCasync:
		v1, err := os.ReadFile(args[0])
		if err != nil {
			return err
		}
		v2, err := os.ReadFile(args[1])
		if err != nil {
			return err
		}
		ct, err := c.cutter()
		if err != nil {
			return err
		}
		c1, c2 := split(ct, v1), split(ct, v2)
		nb, nc := newBytes(c1, c2)
		out = map[string]any{
			"min": c.min, "normal": c.normal, "max": c.max, "strict_bits": c.strict, "loose_bits": c.loose,
			"chunks": len(c2), "avg_chunk": len(v2) / max(len(c2), 1), "new_chunks": nc, "new_bytes": nb,
		}
	case edits > 0 && len(args) == 1:
		src, err := os.ReadFile(args[0])
		if err != nil {
			return err
		}
		if len(src) <= window || window < 8*65536 {
			return fmt.Errorf("%s: need a file larger than the window (%d bytes), and a window of at least 512 KiB", args[0], window)
		}
		res, err := editTrial(c, src, edits, window, seed, useCasync)
		if err != nil {
			return err
		}
		out = res
	default:
		return errors.New("usage: cdcvariants [flags] OLD NEW | cdcvariants [flags] -edits N FILE")
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

type trial struct {
	Tool   string `json:"tool"`
	Edits  int    `json:"edits"`
	Window int    `json:"window"`
	Mean   int    `json:"mean_new_bytes"`
	Median int    `json:"median_new_bytes"`
	P90    int    `json:"p90_new_bytes"`
	Max    int    `json:"max_new_bytes"`
}

// editTrial applies n random single edits, each to its own window of src,
// and records the new bytes each costs. The edits depend only on seed, so
// runs with different cutter settings (or -casync) see the same edits.
func editTrial(c config, src []byte, n, window int, seed uint64, useCasync bool) (trial, error) {
	r := rand.New(rand.NewPCG(seed, seed))
	tool := fmt.Sprintf("cutter strict %d loose %d normal %d", c.strict, c.loose, c.normal)
	var dir string
	if useCasync {
		tool = fmt.Sprintf("casync %d:%d:%d", c.min, c.avg, c.max)
		d, err := os.MkdirTemp("", "cdcvariants")
		if err != nil {
			return trial{}, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	ct, err := c.cutter()
	if err != nil {
		return trial{}, err
	}
	costs := make([]int, 0, n)
	for range n {
		off := r.IntN(len(src) - window)
		w1 := src[off : off+window]
		pos := window/8 + r.IntN(window/4)
		l := int(math.Exp(r.Float64() * math.Log(65536)))
		fresh := make([]byte, l)
		for i := range fresh {
			fresh[i] = byte(r.Uint32())
		}
		var w2 []byte
		switch r.IntN(3) {
		case 0: // replace
			w2 = slices.Concat(w1[:pos], fresh, w1[pos+l:])
		case 1: // insert
			w2 = slices.Concat(w1[:pos], fresh, w1[pos:])
		default: // delete
			w2 = slices.Concat(w1[:pos], w1[pos+l:])
		}
		var c1, c2 []chunk
		if useCasync {
			var err error
			if c1, err = casyncSplit(dir, c, w1); err != nil {
				return trial{}, err
			}
			if c2, err = casyncSplit(dir, c, w2); err != nil {
				return trial{}, err
			}
		} else {
			c1, c2 = split(ct, w1), split(ct, w2)
		}
		nb, _ := newBytes(c1, c2)
		costs = append(costs, nb)
	}
	slices.Sort(costs)
	sum := 0
	for _, v := range costs {
		sum += v
	}
	return trial{Tool: tool, Edits: n, Window: window, Mean: sum / n, Median: costs[n/2], P90: costs[n*9/10], Max: costs[n-1]}, nil
}

// casyncSplit runs casync make on data and reads the chunk list from the
// index (see bench/idxstat for the format); IDs stand in for digests.
func casyncSplit(dir string, c config, data []byte) ([]chunk, error) {
	in := filepath.Join(dir, "blob")
	if err := os.WriteFile(in, data, 0o644); err != nil {
		return nil, err
	}
	idx := in + ".caibx"
	store := filepath.Join(dir, "store")
	cmd := exec.Command("casync", "make", fmt.Sprintf("--chunk-size=%d:%d:%d", c.min, c.avg, c.max), "--store="+store, idx, in)
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("casync make: %w: %s", err, b)
	}
	if err := os.RemoveAll(store); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(idx)
	if err != nil {
		return nil, err
	}
	const head, item, tail = 64, 40, 40
	if len(b) < head+tail || (len(b)-head-tail)%item != 0 {
		return nil, fmt.Errorf("%s: not a casync index of the expected layout", idx)
	}
	var out []chunk
	prev := 0
	for i := head; i < len(b)-tail; i += item {
		end := int(binary.LittleEndian.Uint64(b[i:]))
		if end <= prev {
			return nil, fmt.Errorf("%s: chunk ends at %d, not after %d", idx, end, prev)
		}
		var ch chunk
		copy(ch.sum[:], b[i+8:i+item])
		ch.size = end - prev
		out = append(out, ch)
		prev = end
	}
	return out, nil
}
