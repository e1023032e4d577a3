package chunker

import (
	"errors"
	"fmt"
	"math/bits"
)

// Params bound chunk sizes in bytes. A chunk is never longer than Max and
// never shorter than Min, except the last chunk of a stream.
type Params struct {
	Min, Avg, Max int
}

// DefaultParams are casync's defaults too (16/64/256 KiB), so size and
// dedup comparisons between the two are fair.
var DefaultParams = Params{Min: 16 << 10, Avg: 64 << 10, Max: 256 << 10}

// Limits on parameters. The upper bound keeps a chunk inside a uint32 and a
// read buffer of a few chunks small; the lower bound keeps the gear hash
// window meaningful.
const (
	MinChunkFloor = 64
	MaxChunkCeil  = 16 << 20
)

// ErrBadParams is returned for parameters that cannot chunk.
var ErrBadParams = errors.New("chunker: bad chunk size parameters")

// Validate checks that Min < Avg < Max within the allowed range.
func (p Params) Validate() error {
	switch {
	case p.Min < MinChunkFloor:
		return fmt.Errorf("%w: min %d below %d", ErrBadParams, p.Min, MinChunkFloor)
	case p.Max > MaxChunkCeil:
		return fmt.Errorf("%w: max %d above %d", ErrBadParams, p.Max, MaxChunkCeil)
	case !(p.Min < p.Avg && p.Avg < p.Max):
		return fmt.Errorf("%w: want min < avg < max, got %d/%d/%d", ErrBadParams, p.Min, p.Avg, p.Max)
	}
	return nil
}

func (p Params) String() string { return fmt.Sprintf("%d/%d/%d", p.Min, p.Avg, p.Max) }

// avgBits is log2 of Avg rounded to the nearest integer.
func (p Params) avgBits() int {
	b := bits.Len(uint(p.Avg)) - 1 // floor(log2)
	// Round up when Avg is nearer 2^(b+1) than 2^b (geometric midpoint).
	if uint64(p.Avg)*uint64(p.Avg) > uint64(1)<<(2*b+1) {
		b++
	}
	return b
}

// Normalization is FastCDC's normalized chunking for one set of Params:
// the number of one-bits in the strict mask (tested while a chunk is
// shorter than Normal) and in the loose mask (tested after). [Split] always
// uses [Params.Normalization]; other values exist only to measure what a
// change would do, through [NewCutter] (see bench/cdcvariants).
type Normalization struct {
	StrictBits, LooseBits int
	Normal                int
}

// MaxMaskBits is the most one-bits a normalization mask can have (one per
// bit position in 56..15, see spreadMask).
const MaxMaskBits = 56 - 15 + 1

// Normalization returns the normalization [Split] uses for p: a strict
// mask of log2(Avg) one-bits before the normal point (see normal) and a
// loose one of log2(Avg)-1 after it. FastCDC's paper recommends ±2 bits
// (level 2), which keeps chunk sizes tight but makes a chunk's end depend
// strongly on where it began, so after an edit the cut points take longer
// to fall back onto the old ones. On real rootfs updates
// (docs/benchmarks.md, "A tested change") this milder normalization fetched
// 2-5% fewer bytes on tar pairs and beat casync on every pair, at 67 KiB
// average chunks.
func (p Params) Normalization() Normalization {
	b := p.avgBits()
	return Normalization{StrictBits: b, LooseBits: max(b-1, 1), Normal: p.normal()}
}

func (n Normalization) validate(p Params) error {
	switch {
	case n.StrictBits < 1 || n.StrictBits > MaxMaskBits || n.LooseBits < 1 || n.LooseBits > MaxMaskBits:
		return fmt.Errorf("%w: mask bits %d/%d outside 1..%d", ErrBadParams, n.StrictBits, n.LooseBits, MaxMaskBits)
	case n.Normal < p.Min || n.Normal > p.Max:
		return fmt.Errorf("%w: normal point %d outside min..max %d..%d", ErrBadParams, n.Normal, p.Min, p.Max)
	}
	return nil
}

// normal is where the strict mask gives way to the loose one. FastCDC puts
// it at the average size, but since hashing starts only at Min, that makes
// the mean chunk about 15% longer than Avg (73 KiB for 16/64/256 KiB on
// random input). Moving it a quarter of the way back towards Min brings the
// mean back to about Avg (63.5 KiB for the defaults), which keeps chunk
// counts and dedup comparable with other chunkers configured the same way.
// Integer arithmetic only: boundaries must not depend on floating point.
func (p Params) normal() int { return p.Avg - (p.Avg-p.Min)/4 }

// spreadMask returns a mask of n one-bits spread evenly over bits 56..15.
// High bits depend on more input bytes (bit k of a gear hash sees the last
// k+1 bytes), so spreading widens the effective window. The top seven bits
// stay clear because roll8 tests each of its eight positions on the hash
// shifted left by up to seven bits, which must not push a mask bit out
// (56+7 = 63).
func spreadMask(n int) uint64 {
	const hi, lo = 56, 15
	if n > hi-lo+1 {
		n = hi - lo + 1
	}
	var m uint64
	for j := 0; j < n; j++ {
		pos := hi
		if n > 1 {
			pos = hi - j*(hi-lo)/(n-1)
		}
		m |= 1 << pos
	}
	return m
}
