// Package wire is the wire format of the chunk protocol /shoal/chunks/1:
// length-prefixed frames that carry Hello, Have, HaveDelta, Want, Block,
// DontHave and Cancel messages between two peers. It only encodes and
// decodes, on any io.Reader and io.Writer: package swarm owns the libp2p
// streams and decides what to send (with swarm/sched), and tests use
// net.Pipe. docs/swarm.md gives every message byte by byte.
//
// Every message from a peer is outside bytes. The decoder checks each
// length against its limit before it allocates or reads anything for it:
// the frame length against the Reader's frame limit, a CID length against
// MaxCIDSize and the bytes left, a chunk count against MaxChunks, a bitmap
// against its count; the Reader's buffer grows only as a frame's bytes
// arrive. The encoding is canonical: a frame decodes only if encoding the
// message gives back the same bytes, and the encoder refuses what the
// decoder would.
//
// # How a caller drives it
//
//  1. Wrap the stream in a [Reader] and a [Writer], and call [Handshake]
//     first: each peer's first frame is its Hello, which carries the
//     largest frame it accepts. Give the Reader the frame limit your
//     chunks need ([FrameLimitFor] of the index's maximum chunk size).
//  2. Read messages in a loop and switch on their type (*Have, *Want,
//     ...). A message and its slices are valid until the next Read; copy
//     what you keep.
//  3. Check every Have and HaveDelta against the chunk count of the index
//     you know ([Have.Check], [HaveDelta.Check]); refuse a HaveDelta
//     before a Have for its index.
//  4. Match each Block and DontHave to an outstanding Want by request ID
//     and CID; one that matches none is unrequested. Turn a Block into
//     chunk bytes only through [DecodeBlock], which hashes them against
//     the wanted CID, before anything is written to a slot or served.
//  5. Answer every Want exactly once, with a Block or a DontHave, even a
//     cancelled one. Write many messages, then Flush.
//  6. On any error that wraps ErrFrameTooLarge, ErrMalformed,
//     ErrUnknownKind or ErrBadBlock, on an unrequested Block, or on a
//     second Hello: close the stream, disconnect the peer, lower its
//     score, and log the peer and the error. Plain stream errors (io.EOF,
//     io.ErrUnexpectedEOF, a reset) only end the stream.
//
// # Room for deltas
//
// A Block carries a stored object, whose first byte is its kind
// (chunker/object); delta objects get a new object kind, offered by a
// Hello feature bit, so what crosses the wire need not be the chunk's
// own bytes. Delta objects are content-addressed like chunks: a Have over
// a delta index and a Want for a delta object's CID need no new message.
// New message kinds come with a feature bit or a new protocol version;
// receivers refuse kinds they do not know (ErrUnknownKind).
package wire
