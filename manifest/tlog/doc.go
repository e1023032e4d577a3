// Package tlog keeps shoal's transparency log: an append-only Merkle log of
// every published targets metadata version, stored as static files so that
// any web server, object store or USB stick can serve it, with checkpoints
// signed as notes.
//
// The log answers a question TUF signatures alone cannot: "is the release my
// device was offered the same one everybody else was offered?" A publisher
// (or a stolen key) that shows one device a special targets file must either
// leave it out of the log, and devices that demand an inclusion proof refuse
// it, or put it in, where auditors see it.
//
// The hashing and proofs are those of golang.org/x/mod/sumdb/tlog (RFC 6962
// shape, tiles of height [TileHeight]); checkpoints are
// golang.org/x/mod/sumdb/note signed notes whose text is
// tlog.FormatTree of the tree. The file layout is described in
// docs/formats.md ("Transparency log").
//
// # Entries
//
// An entry is a small canonical record, not the metadata file itself:
// [Targets.Record] builds it from the targets metadata version, the SHA-256
// of the exact targets bytes and, when a targets file serves one channel,
// the channel, so a device that verified those bytes can rebuild the record
// byte for byte and ask for its inclusion proof. [Append] accepts any
// records of at most [MaxRecordSize] bytes.
//
// # Publisher
//
//  1. Once: [GenerateKey] gives a private signer key (keep it secret) and a
//     verifier key (ship it to devices and auditors).
//  2. Per published targets version: build the record and call [Append] on
//     the repository's log directory ([Publisher] does both, in the shape
//     of manifest's TargetsLog hook). Append writes entry bundles, tiles and
//     the lookup shards first and the signed checkpoint last, each file
//     atomically, so a crash leaves the previous checkpoint in force and the
//     next Append simply redoes the work.
//
// # Device and auditor
//
//  1. Build a [Reader] over a fetch.Fetcher rooted at the log directory
//     (fetch.Dir of the directory, or fetch.Sub(f, [RepoDir]) of any
//     repository fetcher: HTTP, bundle, peers) and the trusted verifier
//     keys. A log file the fetcher lacks wraps fetch.ErrNotFound.
//  2. A device calls [Reader.Check] with the tree it remembered last time and
//     the record of the release it is about to install. Check fetches and
//     verifies the current checkpoint, proves it consistent with the
//     remembered tree (detecting a split view) and proves the record is in
//     it. The device then remembers the larger of the two trees.
//  3. An auditor calls [Reader.Audit], which re-hashes every entry and
//     re-derives every tile and lookup shard, and compares successive
//     checkpoints with [Reader.CheckConsistency].
package tlog
