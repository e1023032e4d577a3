package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// readBufferSize is the Reader's bufio buffer: small frames (Want,
// DontHave, Cancel) are read many to a system call, and the body of a
// large frame is read straight into the frame buffer.
const readBufferSize = 32 << 10

// growStep is the first size of a Reader's frame buffer, and the least it
// grows by.
const growStep = 64 << 10

// Reader decodes frames from a stream. It is not safe for concurrent use.
//
// Buffer ownership: a message returned by Read, and every slice in it
// (Have.Bitmap, HaveDelta.Positions, Block.Object), belongs to the Reader
// and is valid until the next call to Read, which overwrites it; a caller
// that keeps any of it copies it first. CIDs are immutable values and may
// be kept. The frame buffer grows, as bytes arrive, to the largest frame
// read so far (at most the frame limit) and is reused.
type Reader struct {
	br   *bufio.Reader
	max  int
	hdr  [HeaderSize]byte
	buf  []byte
	msgs messages
	err  error
	// begin and end: see Watch.
	begin func(n int)
	end   func()
}

// Watch sets functions the Reader calls around every frame: begin(-1)
// once the first byte of a frame has arrived, begin(n) when its length n
// is known, and end() when the whole frame is in. The package has no
// clock; a caller uses them to bound how long a frame may take, so a peer
// that sends half a frame and stalls does not hold the stream forever.
// Set it before the first Read.
func (r *Reader) Watch(begin func(n int), end func()) {
	r.begin, r.end = begin, end
}

// NewReader returns a Reader of r that accepts frames of up to maxFrame
// bytes after the length prefix: 0 means DefaultMaxFrame, and other values
// are brought into [MinFrameLimit, MaxFrameLimit] (a peer may always send
// MinFrameLimit). Announce MaxFrame to the peer in the Hello
// ([Handshake] does).
func NewReader(r io.Reader, maxFrame int) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, readBufferSize), max: clampLimit(maxFrame)}
}

// MaxFrame is the largest frame the Reader accepts.
func (r *Reader) MaxFrame() int { return r.max }

// Read returns the next message. At the end of the stream between frames
// it returns io.EOF; a stream that ends inside a frame gives an error
// wrapping io.ErrUnexpectedEOF. A length prefix above the limit gives
// ErrFrameTooLarge before any of the frame is read or allocated. Errors
// are sticky: once Read fails the stream is out of step, and every later
// call returns the same error.
func (r *Reader) Read() (Message, error) {
	if r.err != nil {
		return nil, r.err
	}
	m, err := r.read()
	if err != nil {
		r.err = err
	}
	return m, err
}

func (r *Reader) read() (Message, error) {
	if r.begin != nil {
		// Between frames the stream may rest for as long as it likes.
		if _, err := r.br.Peek(1); err != nil {
			return nil, err
		}
		r.begin(-1)
	}
	if n, err := io.ReadFull(r.br, r.hdr[:]); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("wire: frame header cut after %d bytes: %w", n, err)
		}
		return nil, err
	}
	n, err := frameLength(binary.BigEndian.Uint32(r.hdr[:]), r.max)
	if err != nil {
		return nil, err
	}
	if r.begin != nil {
		r.begin(n)
	}
	f, err := r.fill(n)
	if err != nil {
		return nil, err
	}
	if r.end != nil {
		r.end()
	}
	return decodeFrame(f, &r.msgs)
}

// fill reads a frame of n bytes (n already checked against the limit)
// into the frame buffer. When the buffer is too small it grows as the
// bytes arrive, doubling at most, so a peer that announces a large frame
// and sends little of it costs little memory.
func (r *Reader) fill(n int) ([]byte, error) {
	b := r.buf[:cap(r.buf)]
	got := 0
	for got < n {
		if got == len(b) {
			nb := make([]byte, min(n, max(2*len(b), growStep)))
			copy(nb, b[:got])
			b = nb
			r.buf = nb
		}
		m, err := io.ReadFull(r.br, b[got:min(n, len(b))])
		got += m
		if err != nil {
			if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, fmt.Errorf("wire: frame of %d bytes cut after %d: %w", n, got, io.ErrUnexpectedEOF)
			}
			return nil, err
		}
	}
	return b[:n], nil
}
