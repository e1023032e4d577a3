package wire

import (
	"encoding/binary"
	"fmt"
)

// Hello opens each direction of a stream: it is the first frame each peer
// sends, and is sent once.
//
// Layout (9 bytes): version u8 | features u32 | max_frame u32.
type Hello struct {
	// Version is the highest wire version the sender speaks (≥ 1). Both
	// peers speak the lower of the two; this package speaks only 1.
	Version uint8
	// Features are optional extensions the sender accepts (bits from the
	// bottom: a peer uses one only when both Hellos set its bit) and
	// statements about the sender (bits from the top: they mean what they
	// say whatever the receiver sets). Unknown bits are ignored. Version 1
	// defines the statement NoShare.
	Features uint32
	// MaxFrame is the largest frame (the bytes after the length prefix)
	// the sender accepts, in [MinFrameLimit, MaxFrameLimit].
	MaxFrame uint32
}

const helloSize = 1 + 4 + 4

// NoShare, a Hello feature bit: the sender takes no share of its site's
// uplink split, because it has no route to the origin (swarm/sched,
// Config.NoShare). Its LAN peers divide the pieces among the others.
const NoShare uint32 = 1 << 31

func (Hello) Kind() Kind { return KindHello }

func (h Hello) validate() error {
	if h.Version == 0 {
		return malformed(KindHello, "version 0")
	}
	if h.MaxFrame < MinFrameLimit || h.MaxFrame > MaxFrameLimit {
		return malformed(KindHello, "frame limit %d outside [%d, %d]", h.MaxFrame, MinFrameLimit, MaxFrameLimit)
	}
	return nil
}

func (h Hello) appendBody(dst []byte) ([]byte, error) {
	if err := h.validate(); err != nil {
		return dst, err
	}
	dst = append(dst, h.Version)
	dst = binary.BigEndian.AppendUint32(dst, h.Features)
	return binary.BigEndian.AppendUint32(dst, h.MaxFrame), nil
}

func (h *Hello) decode(b []byte) error {
	if len(b) != helloSize {
		return malformed(KindHello, "body of %d bytes, want %d", len(b), helloSize)
	}
	*h = Hello{Version: b[0], Features: binary.BigEndian.Uint32(b[1:]), MaxFrame: binary.BigEndian.Uint32(b[5:])}
	return h.validate()
}

// Handshake sends this side's Hello (Version, features, and r's frame
// limit), flushes it, and reads the peer's, which must be the first frame
// on the stream. It sets w's frame limit to the peer's and returns the
// peer's Hello. The write runs beside the read, so both peers may call
// Handshake at once even over an unbuffered transport (net.Pipe).
//
// On error the caller closes the stream (which also ends a write still
// blocked) and does not use r or w again; an error wrapping a sentinel
// of this package means the peer misbehaved.
func Handshake(r *Reader, w *Writer, features uint32) (Hello, error) {
	local := Hello{Version: Version, Features: features, MaxFrame: uint32(r.MaxFrame())}
	werr := make(chan error, 1)
	go func() {
		err := w.Write(local)
		if err == nil {
			err = w.Flush()
		}
		werr <- err
	}()
	m, err := r.Read()
	if err != nil {
		return Hello{}, fmt.Errorf("wire: reading the peer's hello: %w", err)
	}
	peer, ok := m.(*Hello)
	if !ok {
		return Hello{}, fmt.Errorf("%w: first frame is %v, not hello", ErrMalformed, m.Kind())
	}
	if err := <-werr; err != nil {
		return Hello{}, fmt.Errorf("wire: sending hello: %w", err)
	}
	w.SetMaxFrame(int(peer.MaxFrame))
	return *peer, nil
}
