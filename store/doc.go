// Package store keeps and serves chunks: the content-addressed pieces of
// release images that [chunker] cuts.
//
// Every chunk provider implements [Source] (Get and Has by chunk ID), and
// writable ones add [Sink] (Put, which hashes the bytes and refuses a
// mismatch). Three implementations live here:
//
//   - [DB], the chunk store: chunk bytes in append-only pack files read
//     with pread (so serving them does not grow the process's resident
//     set), their locations, indexes and named pins in badger. GC removes
//     chunks that no pinned index lists and compacts packs; in cache mode
//     ([WithCacheLimit]) the total size of chunks stays under a limit by
//     evicting the least recently used unpinned chunks, and recency survives
//     a restart.
//   - [SlotSource], which serves the chunks of an installed artifact straight
//     from its slot (a file or block device) at their index offsets, hashing
//     each read, so a device's running release needs no second copy.
//   - [Mem], a map, for tests and the simulator.
//
// Package storetest holds the conformance suites every implementation
// passes. docs/store.md describes the database's key layout, the pack
// files, crash safety, compaction, and the badger settings chosen for
// devices with little memory.
//
// Errors callers branch on are sentinels: [ErrNotFound], [ErrMismatch]
// (Put refused bytes), [ErrCorrupt] (stored bytes no longer match their ID;
// see [CorruptError]), [ErrCacheFull], [ErrNoIndex], [ErrNoPin], [ErrClosed].
package store
