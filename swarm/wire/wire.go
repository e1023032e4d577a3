package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
)

// ProtocolID is the libp2p protocol this package encodes.
const ProtocolID = "/shoal/chunks/1"

// Version is the wire version this package speaks, sent in [Hello].
const Version = 1

// Limits. docs/swarm.md explains each; every length read from a peer is
// checked against one of these before anything is allocated for it.
const (
	// HeaderSize is the frame's length prefix: a 4-byte big-endian count
	// of the bytes that follow it (the kind byte and the body).
	HeaderSize = 4
	// MaxCIDSize bounds a CID field. Chunk and index IDs are 36 bytes.
	MaxCIDSize = 64
	// MaxChunks bounds the chunk count of an index that Have and
	// HaveDelta describe: 2^23 positions, a 1 MiB bitmap. An index of
	// more chunks is over 256 MiB, above what a device accepts
	// (manifest.DefaultLimits.Index).
	MaxChunks = 1 << 23
	// MinFrameLimit is the smallest frame limit a peer may announce, and
	// what it must accept before the Hellos are exchanged: 1 MiB + 1 KiB
	// holds a Have of MaxChunks positions and a Block of a chunk of up to
	// 1 MiB.
	MinFrameLimit = 1<<20 + 1<<10
	// MaxFrameLimit is the largest frame limit a peer may announce: a
	// Block of a chunk of chunker.MaxChunkCeil bytes.
	MaxFrameLimit = chunker.MaxChunkCeil + 1<<10
	// DefaultMaxFrame is the frame limit of a [Reader] built with 0.
	DefaultMaxFrame = MinFrameLimit
)

// FrameLimitFor is the frame limit a peer that fetches chunks of up to
// maxChunk bytes (an index's Params.Max) announces: max(maxChunk, 1 MiB) +
// 1 KiB, within [MinFrameLimit, MaxFrameLimit]. A Block of such a chunk,
// whatever its object kind, fits.
func FrameLimitFor(maxChunk int) int {
	return min(max(maxChunk, 1<<20), chunker.MaxChunkCeil) + 1<<10
}

// Sentinel errors. Every error that a peer's bytes cause wraps exactly
// one of them; a receiver disconnects the peer and lowers its score for
// any of them (docs/swarm.md). Errors of the stream itself (io.EOF at a
// frame boundary, io.ErrUnexpectedEOF in the middle of one, a reset) are
// passed through and wrap none of them.
var (
	// ErrFrameTooLarge: a frame's length prefix exceeds the receiver's
	// limit. Nothing of the frame has been read or allocated. The Writer
	// returns it, without writing, for a frame above the peer's limit.
	ErrFrameTooLarge = errors.New("wire: frame too large")
	// ErrMalformed: a frame's body breaks the layout or a rule of its
	// message (a length that overruns the body, trailing bytes, a CID
	// that is not a chunk ID, a bitmap of the wrong size, positions out
	// of order). The encoder refuses such messages too.
	ErrMalformed = errors.New("wire: malformed message")
	// ErrUnknownKind: a frame's kind byte, or a Block's object kind byte,
	// names nothing this version knows.
	ErrUnknownKind = errors.New("wire: unknown kind")
	// ErrBadBlock: a Block's object does not decode to bytes that hash to
	// the wanted chunk ID ([DecodeBlock]).
	ErrBadBlock = errors.New("wire: bad block")
)

// Kind is a frame's message kind, its first byte after the length.
type Kind uint8

// Message kinds. 0 and 8..255 are unknown: a receiver refuses them
// (ErrUnknownKind). New kinds come with a protocol version or a Hello
// feature bit, so a peer never sends a kind its receiver did not offer.
const (
	KindHello     Kind = 1
	KindHave      Kind = 2
	KindHaveDelta Kind = 3
	KindWant      Kind = 4
	KindBlock     Kind = 5
	KindDontHave  Kind = 6
	KindCancel    Kind = 7
)

var kindNames = [...]string{KindHello: "hello", KindHave: "have", KindHaveDelta: "have-delta",
	KindWant: "want", KindBlock: "block", KindDontHave: "dont-have", KindCancel: "cancel"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// RequestID names one Want on one stream. The requester picks it; it must
// not equal the ID of another of its Wants still unanswered on that stream.
type RequestID uint32

// Message is one of *Hello, *Have, *HaveDelta, *Want, *Block, *DontHave,
// *Cancel (values of these types are Messages too, for writing). A
// [Reader] returns pointers.
type Message interface {
	Kind() Kind
	// appendBody validates the message and appends its body (what
	// follows the kind byte) to dst.
	appendBody(dst []byte) ([]byte, error)
}

// AppendFrame appends m's frame (length prefix, kind, body) to dst. It
// refuses, with ErrMalformed, any message a receiver would refuse, so
// what it encodes decodes to the same message; and with ErrFrameTooLarge
// a frame above MaxFrameLimit. On error dst is returned unchanged.
func AppendFrame(dst []byte, m Message) ([]byte, error) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, byte(m.Kind()))
	dst, err := m.appendBody(dst)
	if err != nil {
		return dst[:start], err
	}
	n := len(dst) - start - HeaderSize
	if n > MaxFrameLimit {
		return dst[:start], fmt.Errorf("%w: %v frame of %d bytes, limit %d", ErrFrameTooLarge, m.Kind(), n, MaxFrameLimit)
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(n))
	return dst, nil
}

// DecodeFrame decodes the first frame of b, which is at most maxFrame
// bytes after its length prefix (0: DefaultMaxFrame), and returns the
// message and the number of bytes it took. A b that ends inside the frame
// gives io.ErrUnexpectedEOF (io.EOF when b is empty). The message aliases
// b (Have.Bitmap, Block.Object); it is the [Reader]'s decoder without the
// stream.
func DecodeFrame(b []byte, maxFrame int) (Message, int, error) {
	if len(b) == 0 {
		return nil, 0, io.EOF
	}
	if len(b) < HeaderSize {
		return nil, 0, fmt.Errorf("wire: frame header cut after %d bytes: %w", len(b), io.ErrUnexpectedEOF)
	}
	n, err := frameLength(binary.BigEndian.Uint32(b), clampLimit(maxFrame))
	if err != nil {
		return nil, 0, err
	}
	if len(b)-HeaderSize < n {
		return nil, 0, fmt.Errorf("wire: frame of %d bytes cut after %d: %w", n, len(b)-HeaderSize, io.ErrUnexpectedEOF)
	}
	m, err := decodeFrame(b[HeaderSize:HeaderSize+n], new(messages))
	if err != nil {
		return nil, 0, err
	}
	return m, HeaderSize + n, nil
}

// frameLength checks a length prefix against the limit.
func frameLength(n uint32, limit int) (int, error) {
	if n == 0 {
		return 0, fmt.Errorf("%w: empty frame", ErrMalformed)
	}
	if uint64(n) > uint64(limit) {
		return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, limit)
	}
	return int(n), nil
}

// clampLimit maps a caller's frame limit into [MinFrameLimit,
// MaxFrameLimit], 0 meaning DefaultMaxFrame.
func clampLimit(n int) int {
	if n <= 0 {
		return DefaultMaxFrame
	}
	return min(max(n, MinFrameLimit), MaxFrameLimit)
}

// messages holds one message of each kind, which a Reader reuses.
type messages struct {
	hello     Hello
	have      Have
	haveDelta HaveDelta
	want      Want
	block     Block
	dontHave  DontHave
	cancel    Cancel
}

// decodeFrame decodes a frame without its length prefix into s's message
// of its kind and returns that message.
func decodeFrame(f []byte, s *messages) (Message, error) {
	k, body := Kind(f[0]), f[1:]
	var err error
	var m Message
	switch k {
	case KindHello:
		m, err = &s.hello, s.hello.decode(body)
	case KindHave:
		m, err = &s.have, s.have.decode(body)
	case KindHaveDelta:
		m, err = &s.haveDelta, s.haveDelta.decode(body)
	case KindWant:
		m, err = &s.want, s.want.decode(body)
	case KindBlock:
		m, err = &s.block, s.block.decode(body)
	case KindDontHave:
		m, err = &s.dontHave, s.dontHave.decode(body)
	case KindCancel:
		m, err = &s.cancel, s.cancel.decode(body)
	default:
		return nil, fmt.Errorf("%w: message kind %d", ErrUnknownKind, f[0])
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// malformed builds an ErrMalformed error naming the message kind.
func malformed(k Kind, format string, args ...any) error {
	return fmt.Errorf("%w: %v: %s", ErrMalformed, k, fmt.Sprintf(format, args...))
}

// body is a cursor over a frame body; each take checks the length first.
type body struct {
	k Kind
	b []byte
}

func (d *body) u32(field string) (uint32, error) {
	if len(d.b) < 4 {
		return 0, malformed(d.k, "%s: body ends after %d of 4 bytes", field, len(d.b))
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v, nil
}

// cid reads a CID field: a length byte, then that many bytes of a binary
// CID. With optional, length 0 is cid.Undef. Anything else must be a
// canonical chunk ID (CIDv1, raw, a hash chunker knows, 32-byte digest).
func (d *body) cid(field string, optional bool) (cid.Cid, error) {
	if len(d.b) < 1 {
		return cid.Undef, malformed(d.k, "%s: body ends before the CID length", field)
	}
	n := int(d.b[0])
	switch {
	case n == 0 && optional:
		d.b = d.b[1:]
		return cid.Undef, nil
	case n == 0:
		return cid.Undef, malformed(d.k, "%s: empty CID", field)
	case n > MaxCIDSize:
		return cid.Undef, malformed(d.k, "%s: CID length %d above %d", field, n, MaxCIDSize)
	case n > len(d.b)-1:
		return cid.Undef, malformed(d.k, "%s: CID length %d overruns the body (%d bytes left)", field, n, len(d.b)-1)
	}
	raw := d.b[1 : 1+n]
	c, err := cid.Cast(raw)
	if err != nil {
		return cid.Undef, malformed(d.k, "%s: %v", field, err)
	}
	if _, _, err := chunker.ParseID(c); err != nil {
		return cid.Undef, malformed(d.k, "%s: %v", field, err)
	}
	if c.KeyString() != string(raw) {
		return cid.Undef, malformed(d.k, "%s: CID not in canonical form", field)
	}
	d.b = d.b[1+n:]
	return c, nil
}

func (d *body) end() error {
	if len(d.b) != 0 {
		return malformed(d.k, "%d trailing bytes", len(d.b))
	}
	return nil
}

// appendCID appends a CID field; cid.Undef is allowed only if optional.
func appendCID(dst []byte, k Kind, field string, c cid.Cid, optional bool) ([]byte, error) {
	if !c.Defined() {
		if optional {
			return append(dst, 0), nil
		}
		return dst, malformed(k, "%s: no CID", field)
	}
	if _, _, err := chunker.ParseID(c); err != nil {
		return dst, malformed(k, "%s: %v", field, err)
	}
	s := c.KeyString()
	if len(s) > MaxCIDSize {
		return dst, malformed(k, "%s: CID length %d above %d", field, len(s), MaxCIDSize)
	}
	dst = append(dst, byte(len(s)))
	return append(dst, s...), nil
}
