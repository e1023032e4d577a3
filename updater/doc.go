// Package updater installs releases into A/B slots and decides, with the
// pure state machine in updater/state, when to flip, commit or roll back.
//
// A release streams into the inactive slot at each chunk's offset: chunks
// the active slot already holds are copied locally, the rest come from a
// ChunkSource (a repository, an HTTP origin, a bundle, the swarm). When
// the repository lists a delta index from the release the active slot
// holds, the new chunks it covers are built instead from small delta
// objects against the active slot (DeltaPlan, docs/deltas.md); a delta
// that fails is refused and its chunk fetched whole. Nothing
// is flipped until the slot has been fsynced, re-read and checked chunk by
// chunk against the release's index, whose Merkle root the signed release
// pins. All I/O goes through updater/fsys, so tests can cut the power at
// every write, rename and fsync.
package updater
