package wire

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// writeBufferSize is the Writer's bufio buffer: many small frames go out
// in one write, and a large Block object bypasses it.
const writeBufferSize = 64 << 10

// Writer encodes frames onto a stream through a buffer, so a caller can
// pipeline many messages and send them in one write. Nothing is sent
// until the buffer fills or Flush is called: call Flush when there is
// nothing more to send right away (after a batch of Wants, after the
// Blocks that answer them). Not safe for concurrent use.
//
// Write does not keep m or any slice in it after it returns.
type Writer struct {
	bw      *bufio.Writer
	max     int
	scratch []byte
	err     error
}

// NewWriter returns a Writer to w that refuses frames above maxFrame, the
// peer's limit: 0 means MinFrameLimit, which every peer accepts, until
// the peer's Hello says more ([Handshake] sets it).
func NewWriter(w io.Writer, maxFrame int) *Writer {
	if maxFrame <= 0 {
		maxFrame = MinFrameLimit
	}
	return &Writer{bw: bufio.NewWriterSize(w, writeBufferSize), max: clampLimit(maxFrame)}
}

// SetMaxFrame sets the peer's frame limit (from its Hello), brought into
// [MinFrameLimit, MaxFrameLimit].
func (w *Writer) SetMaxFrame(n int) { w.max = clampLimit(n) }

// MaxFrame is the largest frame the Writer sends.
func (w *Writer) MaxFrame() int { return w.max }

// Write encodes m into the buffer. A message that a receiver would refuse
// gives ErrMalformed (or ErrUnknownKind for an unknown object kind), and a
// frame above the peer's limit ErrFrameTooLarge; in those cases nothing
// is written and the Writer stays usable (answer such a Want with
// DontHave). An error of the stream is sticky.
func (w *Writer) Write(m Message) error {
	if w.err != nil {
		return w.err
	}
	var b *Block
	switch v := m.(type) {
	case *Block:
		b = v
	case Block:
		b = &v
	}
	if b != nil {
		return w.writeBlock(b)
	}
	f, err := AppendFrame(w.scratch[:0], m)
	if err != nil {
		return err
	}
	w.scratch = f
	if n := len(f) - HeaderSize; n > w.max {
		return fmt.Errorf("%w: %v frame of %d bytes, peer's limit %d", ErrFrameTooLarge, m.Kind(), n, w.max)
	}
	return w.write(f)
}

// writeBlock writes a Block's head from the scratch buffer and its object
// straight from the caller's slice, without copying it into a frame.
func (w *Writer) writeBlock(b *Block) error {
	h := append(w.scratch[:0], 0, 0, 0, 0, byte(KindBlock))
	h, err := b.appendHead(h)
	if err != nil {
		return err
	}
	w.scratch = h
	n := len(h) - HeaderSize + len(b.Object)
	if n > w.max {
		return fmt.Errorf("%w: block frame of %d bytes, peer's limit %d", ErrFrameTooLarge, n, w.max)
	}
	binary.BigEndian.PutUint32(h, uint32(n))
	if err := w.write(h); err != nil {
		return err
	}
	return w.write(b.Object)
}

func (w *Writer) write(p []byte) error {
	if _, err := w.bw.Write(p); err != nil {
		w.err = err
		return err
	}
	return nil
}

// Flush sends everything buffered.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if err := w.bw.Flush(); err != nil {
		w.err = err
		return err
	}
	return nil
}

// Buffered is the number of bytes written but not yet flushed.
func (w *Writer) Buffered() int { return w.bw.Buffered() }
