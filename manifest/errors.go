package manifest

import (
	"errors"
	"fmt"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/shoalnet/shoal/fetch"
)

// Sentinel errors. Callers branch on these with errors.Is; every returned
// error wraps exactly one of them (or a chunker sentinel) together with
// what was wrong: the file, the field, the versions compared.
var (
	// ErrThreshold: metadata is not signed by the threshold of keys its
	// delegating role requires (arbitrary installation, key compromise
	// below threshold, tampered metadata).
	ErrThreshold = errors.New("manifest: signature threshold not met")
	// ErrRollback: a role's version, or the release version, is older than
	// one this device already trusts or runs.
	ErrRollback = errors.New("manifest: rollback to an older version")
	// ErrExpired: metadata is past its expiry (indefinite freeze).
	ErrExpired = errors.New("manifest: metadata expired")
	// ErrMixAndMatch: a metadata file or index does not match the length,
	// hash or version its signed parent gives for it.
	ErrMixAndMatch = errors.New("manifest: metadata does not match what its parent signed")
	// ErrTooLarge: a fetched file is longer than the bound allowed for it
	// (endless data), or a signed length exceeds a Limits bound. It is
	// fetch.ErrTooLarge itself (one value, two names). A file missing from
	// a repository wraps fetch.ErrNotFound.
	ErrTooLarge = fetch.ErrTooLarge
	// ErrBadState: the remembered trust state (ClientConfig.State) holds a
	// file that cannot be read, does not parse as metadata of its role, or
	// carries a broken signature by a trusted key. It is never taken for
	// "nothing remembered", which would let a replayed older release
	// through; the error names the file, and wraps the cause's sentinel
	// too (ErrBadMetadata, ErrThreshold).
	ErrBadState = errors.New("manifest: trusted state is damaged")
	// ErrBadMetadata: metadata does not parse or breaks a rule of this
	// package (unknown role type, malformed custom fields).
	ErrBadMetadata = errors.New("manifest: malformed metadata")
	// ErrNoRelease: the repository offers no release at all.
	ErrNoRelease = errors.New("manifest: no release in repository")
	// ErrWrongChannel: the repository offers releases, but none on the
	// device's channel.
	ErrWrongChannel = errors.New("manifest: release is for another channel")
	// ErrWrongHardware: the release does not list the device's hardware.
	ErrWrongHardware = errors.New("manifest: release is for other hardware")
	// ErrWrongArch: the release does not list the device's architecture.
	ErrWrongArch = errors.New("manifest: release is for another architecture")
	// ErrMinInstalled: the device runs a version older than the release's
	// minimum installed version, so it must take an intermediate release.
	ErrMinInstalled = errors.New("manifest: installed version below the release's minimum")
	// ErrIndexHash: an index file does not have the length and hash that
	// the signed target gives, or its content ID differs from its path.
	ErrIndexHash = errors.New("manifest: index does not match its signed hash")
	// ErrMerkleRoot: a decoded index's Merkle root differs from the signed
	// release's.
	ErrMerkleRoot = errors.New("manifest: index Merkle root does not match the release")
	// ErrIndexMismatch: a decoded index's size, chunk parameters, hash
	// function or chunk count differs from the signed release's.
	ErrIndexMismatch = errors.New("manifest: index does not match the release fields")
	// ErrChunkCorrupt: a stored chunk object does not decode, or its bytes
	// do not hash to its ID.
	ErrChunkCorrupt = errors.New("manifest: chunk object corrupt")
	// ErrStaleVersion: publish was asked for a release version that is not
	// above the last one published on the channel.
	ErrStaleVersion = errors.New("manifest: release version not above the last published")
	// ErrKeys: a key directory is missing keys or holds unusable ones.
	ErrKeys = errors.New("manifest: signing keys")
)

// classify maps an error from go-tuf's metadata packages onto this
// package's sentinels, keeping go-tuf's message as context. step names
// the file being checked, e.g. "timestamp.json".
func classify(step string, err error) error {
	if err == nil {
		return nil
	}
	var sentinel error
	switch {
	case errors.Is(err, &metadata.ErrUnsignedMetadata{}):
		sentinel = ErrThreshold
	case errors.Is(err, &metadata.ErrExpiredMetadata{}):
		sentinel = ErrExpired
	case errors.Is(err, &metadata.ErrLengthOrHashMismatch{}):
		sentinel = ErrMixAndMatch
	case errors.Is(err, &metadata.ErrBadVersionNumber{}):
		sentinel = ErrRollback
	default:
		// Parse failures, wrong _type, duplicate signatures, keys that do
		// not decode, missing roles in root.
		sentinel = ErrBadMetadata
	}
	return fmt.Errorf("%s: %w: %v", step, sentinel, err)
}
