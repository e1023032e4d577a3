// Package bundle packs one release of a shoal repository into a single tar
// file for sites without a network path to the origin, and reads such a
// file back as if it were the repository.
//
// A bundle is literally a slice of the static repository: its entries are
// repository paths (metadata/..., log/..., index/..., chunks/...) holding
// the repository's bytes unchanged, after a small bundle.json that says
// what the slice is for (docs/formats.md, "Bundle layout"). So a [Reader]
// is a fetch.Fetcher, and a device verifies and installs from a
// bundle exactly as it does from a mirror; `tar -x` of a bundle gives a
// directory that `shoal serve` can serve.
//
// # Creating
//
// [Create] reads the repository through a fetch.Fetcher (a directory or
// an http(s) URL) and writes every root version, the current timestamp,
// snapshot and targets, the transparency log files a device needs to prove
// that targets version is logged, the release's indexes and its chunk
// objects. With From set it leaves out the chunks a device holding release
// From already has, and, where the repository publishes a delta index
// from From (publish --delta-from), carries that delta index and its
// delta objects (deltas/...) instead of the whole chunks they build
// (format 2; NoDeltas keeps whole chunks). Such a bundle installs only on
// devices whose active slot holds From; a chunk it leaves out is answered
// with ErrNeedsFrom. The tar is deterministic: the same repository state
// gives the same bytes.
//
// # Reading
//
// [Open] parses the tar headers once, strictly and with every length
// bounded (entry count, entry size by kind, paths, types, order), and keeps
// only a map from path to offset; [Reader.Fetch] then reads one entry with
// ReadAt, so a bundle of many GiB costs memory in proportion to its entry
// count only.
//
// # Verifying and importing
//
// [Verify] checks a bundle completely without network: the TUF chain from
// a trusted root through the bundle (manifest.Client), the log inclusion
// of the targets version when the bundle carries a log, every index, and
// every chunk the release needs beyond release From, decoded and hashed,
// each delta index against its signed target and each delta object
// against its entry; an entry that should not be there is an error too. [Reader.Indexes] and
// [Reader.Chunks] hand decoded indexes and raw chunk objects to whoever
// imports them into a chunk store (the CLI does, so this package does not
// depend on the store). A bundle with deltas is not imported
// (ErrDeltaImport): a store holds whole chunks.
//
// [OpenSource] opens what a device is told to take a release from: a
// bundle file, a repository directory or an http(s) origin.
package bundle
