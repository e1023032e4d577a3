// Package delta sends a new chunk as a zstd delta against bytes a device
// already holds: a range of the base release's image, used as a raw zstd
// dictionary. A delta object is content-addressed like a chunk (the CID of
// its bytes) and expands only to the chunk whose ID the caller names, so
// any peer may serve it and a wrong one is caught before it is written.
//
// # Objects
//
// A delta object ([Header], docs/formats.md "Delta objects") is a kind byte
// ([KindDelta], next to chunker/object's kinds), the expanded size, the
// base ranges it references, and one zstd frame. [Expand] bounds every
// field by [Limits] (the target's maximum chunk size, the delta index's
// reference cap, the base's size) before it allocates or reads, and checks
// the expansion against the chunk ID.
//
// # Planning
//
// [Plan] is the publisher's side: for each chunk of the target release
// that the base lacks, it chooses reference ranges of the base image from
// the chunks the two releases share (the unchanged neighbours of a
// changed region anchor where it was in the base), encodes the chunk
// against them, and keeps the delta when it is clearly smaller than the
// chunk's own stored object. It reads both images through io.ReaderAt,
// checks every chunk it reads against its index, and holds one reference
// and one encoder per worker, never an image.
//
// # Delta index
//
// The result of a plan is an [Index] for the (base, target) pair: for each
// delta, the target position, the delta's digest and size, and its ranges.
// Its encoding is deterministic and [DecodeIndex] is strict, because it
// will be a signed repository target. A device:
//
//  1. decodes the delta index and runs [Index.Check] against the base
//     index it holds (its slot verified against that index's Merkle root)
//     and the target index;
//  2. for each entry, fetches the object named by [Index.ID] from any
//     source, checks its length against the entry's size and its bytes
//     against the ID;
//  3. reads the ranges from its base slot ([ReadReference] or
//     [ExpandFrom]) and expands, which verifies the chunk's ID;
//  4. on any error, fetches the whole chunk instead.
package delta
