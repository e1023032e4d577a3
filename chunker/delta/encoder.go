package delta

import (
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// Encoder makes delta objects against one reference at a time. Setting a
// reference costs a pass over it (zstd indexes the dictionary on the first
// Encode after SetReference); every chunk encoded against the same
// reference after that pays only for itself, so callers group chunks by
// reference. An Encoder is not safe for concurrent use.
type Encoder struct {
	z      *zstd.Encoder
	ranges []Range
	ref    []byte
}

// NewEncoder returns an encoder at the given zstd level for chunks of at
// most maxChunk bytes against references of at most maxRef bytes.
func NewEncoder(level zstd.EncoderLevel, maxChunk, maxRef int) (*Encoder, error) {
	// The window must reach from the chunk's last byte back to the
	// reference's first, or zstd could not use the start of the reference.
	w := zstd.MinWindowSize
	for w < maxChunk+maxRef {
		w *= 2
	}
	z, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderCRC(false), zstd.WithWindowSize(w))
	if err != nil {
		return nil, fmt.Errorf("delta: zstd encoder: %w", err)
	}
	return &Encoder{z: z}, nil
}

// SetReference makes ref (the bytes of ranges, concatenated) the
// dictionary of the following Encode calls. The encoder keeps ref until
// the next SetReference: the caller must not change it meanwhile.
func (e *Encoder) SetReference(ref []byte, ranges []Range) error {
	if err := e.z.ResetWithOptions(nil, zstd.WithEncoderDictRaw(0, ref)); err != nil {
		return fmt.Errorf("delta: set reference: %w", err)
	}
	e.ref = ref
	e.ranges = append(e.ranges[:0], ranges...)
	return nil
}

// Encode appends the delta object of chunk against the current reference
// to dst.
func (e *Encoder) Encode(dst, chunk []byte) []byte {
	dst = appendHeader(dst, Header{Size: len(chunk), Ranges: e.ranges})
	return e.z.EncodeAll(chunk, dst)
}

// Close releases the encoder's resources.
func (e *Encoder) Close() error { return e.z.Close() }
