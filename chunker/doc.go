// Package chunker turns a byte stream (an OS image, a firmware blob) into
// content-defined chunks, names each chunk by a content identifier, and
// proves that a byte stream matches a signed Merkle root.
//
// # Chunking
//
// Boundaries come from FastCDC (Xia et al., "FastCDC: a Fast and Efficient
// Content-Defined Chunking Approach for Data Deduplication", USENIX ATC
// 2016) with normalized chunking: a gear rolling hash is tested against a
// stricter mask before the average size and a looser one after it, so chunk
// sizes cluster around the average. Two refinements from the authors' 2020
// follow-up (IEEE TPDS) make it fast: hashing starts at the minimum size,
// and the hash rolls several bytes per step (the paper rolls two; this
// package rolls eight, see roll8). The gear table is generated from a fixed
// seed, so boundaries are identical on every platform and Go version;
// known-vector tests pin them.
//
// # Pipeline
//
// [Split] reads an io.Reader into a small ring of fixed buffers. One
// goroutine finds boundaries; hashing (and the caller's per-chunk work, such
// as compressing and storing) runs on every core; results come back in
// stream order. Memory stays bounded whatever the input size.
//
// # Index and root
//
// An [Index] lists the chunker parameters, hash function, total size and
// each chunk's size and digest. Its binary encoding (docs/formats.md) is
// deterministic, and [DecodeIndex] rejects truncated or malformed input with
// an error naming the offset and field. [Index.Root] is a binary Merkle tree
// over the chunks, shaped as in RFC 6962 with domain-separated leaves and
// nodes; a signed release carries it, and [Verify] checks a stream against
// an index chunk by chunk.
package chunker
