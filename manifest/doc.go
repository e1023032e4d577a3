// Package manifest decides what a device may install: the TUF trust chain
// (root, timestamp, snapshot, targets), the release fields signed with
// each artifact, the static repository that publish writes, and the
// device-side verification that checks all of it before a byte is
// installed.
//
// # Publisher
//
// [InitKeys] makes a key directory (ed25519 keys per role, thresholds,
// root version 1); [Keyring.Rotate] replaces a role's keys and signs the
// next root with the old and new root keys. [Publish] chunks images with
// chunker.Split, stores new chunks as zstd objects on every core, writes
// each index, and signs targets, snapshot and timestamp so the release
// becomes visible in one step (docs/formats.md, "Repository layout").
// With [PublishOptions.DeltaFrom] it also plans delta objects of the new
// chunks against earlier releases (chunker/delta), stores them under
// deltas/, and signs each delta index as a target of its own
// ([DeltaTargetPath]); a device finds it with [Verified.Delta] and
// fetches it with [FetchDeltaIndex].
//
// # Device
//
// A [Client] is given the provisioned root, the remembered trust state (a
// [StateStore]: [DirState], or the updater's own filesystem) and one or
// more mirrors (fetch.Fetcher: fetch.Dir, fetch.HTTP, a bundle). Every
// verifying command builds these the same way, from [TrustOptions] (root
// file, log key file, require-log, state). [Client.Verify]:
//
//  1. walks root versions N+1, N+2, ... (each signed by the previous
//     root's threshold and its own), at most Limits.RootRotations;
//  2. fetches timestamp.json with a small fixed bound, then the snapshot
//     and targets the timestamp and snapshot pin, bounded by the lengths
//     they sign; checks thresholds, expiry against the given clock, and
//     version rollback against the remembered state (a remembered file
//     that is damaged is an error, ErrBadState, never forgotten: that
//     would let a replayed older release through);
//  3. remembers the newly trusted metadata in the state;
//  4. picks the newest release on the device's channel and checks its
//     version against the installed one, its hardware, arch and minimum
//     installed version, and the rollout hook;
//  5. fetches every artifact's index, checks length, sha256 and content ID
//     against the signed target, decodes it and compares its Merkle root,
//     size and chunk parameters with the release fields.
//
// Each failure wraps one sentinel (ErrRollback, ErrExpired, ErrThreshold,
// ...), so callers branch with errors.Is and people read what went wrong.
// [FetchChunk] and [DecodeChunk] check single chunk objects against their
// IDs for whoever assembles the image.
//
// # Integration points
//
// The transparency log (manifest/tlog) plugs in as [TargetsLog] on the
// publisher and [TargetsWitness] on the client: [RepoLog] (from
// [Keyring.TargetsLog], signing with the key directory's log key) appends
// every targets version publish signs, and [LogWitness] makes a client
// demand an inclusion proof in a signed checkpoint consistent with the one
// it remembered. Rollout policy (manifest/rollout) plugs in as
// ClientConfig.Rollout, evaluating Release.Rollout; this package does not
// import it.
package manifest
