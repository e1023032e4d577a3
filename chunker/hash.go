package chunker

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
	"github.com/zeebo/blake3"
)

// DigestSize is the length of every digest this package produces. Both
// supported hash functions produce 32 bytes; the index format records the
// hash function, so a future one of another size needs a new format version.
const DigestSize = 32

// Digest is a chunk's (or a tree node's) hash.
type Digest [DigestSize]byte

// String returns the digest in lower-case hex.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// ParseDigest reads a digest written by [Digest.String].
func ParseDigest(s string) (Digest, error) {
	var d Digest
	b, err := hex.DecodeString(s)
	if err != nil {
		return d, fmt.Errorf("chunker: digest %q: %w", s, err)
	}
	if len(b) != DigestSize {
		return d, fmt.Errorf("chunker: digest %q: %d bytes, want %d", s, len(b), DigestSize)
	}
	copy(d[:], b)
	return d, nil
}

// Hash names a hash function. Its value is the multihash code, so an index
// and a CID name the function the same way.
type Hash uint64

const (
	SHA256 Hash = mh.SHA2_256 // default
	BLAKE3 Hash = mh.BLAKE3
)

// ErrUnknownHash is returned for a hash function this package does not
// implement.
var ErrUnknownHash = errors.New("chunker: unknown hash function")

// ParseHash accepts the names used on the command line: "sha2-256" and
// "blake3" (also "sha256").
func ParseHash(s string) (Hash, error) {
	switch s {
	case "sha2-256", "sha256", "":
		return SHA256, nil
	case "blake3":
		return BLAKE3, nil
	}
	return 0, fmt.Errorf("%w %q (want sha2-256 or blake3)", ErrUnknownHash, s)
}

// Valid reports whether h is implemented.
func (h Hash) Valid() bool { return h == SHA256 || h == BLAKE3 }

func (h Hash) String() string {
	switch h {
	case SHA256:
		return "sha2-256"
	case BLAKE3:
		return "blake3"
	}
	return fmt.Sprintf("hash(0x%x)", uint64(h))
}

// Sum hashes data. It panics only for an invalid Hash, which callers rule
// out with [Hash.Valid] (decoders and option parsing do).
func (h Hash) Sum(data []byte) Digest {
	switch h {
	case SHA256:
		return sha256.Sum256(data)
	case BLAKE3:
		return blake3.Sum256(data)
	}
	panic("chunker: Sum with " + h.String())
}

// hasher returns a streaming hasher for the Merkle tree's small inputs.
func (h Hash) sumParts(parts ...[]byte) Digest {
	var d Digest
	switch h {
	case SHA256:
		s := sha256.New()
		for _, p := range parts {
			s.Write(p)
		}
		s.Sum(d[:0])
	case BLAKE3:
		s := blake3.New()
		for _, p := range parts {
			s.Write(p)
		}
		s.Sum(d[:0])
	default:
		panic("chunker: sum with " + h.String())
	}
	return d
}

// ID returns the content identifier of a chunk with digest d: CIDv1, codec
// raw, multihash of h.
func (h Hash) ID(d Digest) cid.Cid {
	m, err := mh.Encode(d[:], uint64(h))
	if err != nil {
		// Only an unknown code or a wrong length fails, and both are
		// fixed by construction here.
		panic(err)
	}
	return cid.NewCidV1(cid.Raw, m)
}

// ErrBadID is returned for a CID that is not a raw chunk ID of a supported
// hash function.
var ErrBadID = errors.New("chunker: not a chunk ID")

// ParseID splits a chunk ID back into hash function and digest.
func ParseID(id cid.Cid) (Hash, Digest, error) {
	var d Digest
	if !id.Defined() || id.Version() != 1 || id.Type() != cid.Raw {
		return 0, d, fmt.Errorf("%w: %v is not CIDv1 raw", ErrBadID, id)
	}
	dec, err := mh.Decode(id.Hash())
	if err != nil {
		return 0, d, fmt.Errorf("%w: %v: %v", ErrBadID, id, err)
	}
	h := Hash(dec.Code)
	if !h.Valid() || len(dec.Digest) != DigestSize {
		return 0, d, fmt.Errorf("%w: %v uses %v with %d-byte digest", ErrBadID, id, h, len(dec.Digest))
	}
	copy(d[:], dec.Digest)
	return h, d, nil
}

// SumID hashes data with the function named in id and reports whether the
// data matches id. It returns the ID the data actually has, for messages.
func SumID(id cid.Cid, data []byte) (got cid.Cid, ok bool, err error) {
	h, want, err := ParseID(id)
	if err != nil {
		return cid.Undef, false, err
	}
	d := h.Sum(data)
	return h.ID(d), d == want, nil
}

// IDOf hashes everything r yields with h and returns the content ID, for
// objects too large to hold in memory (a streamed index).
func IDOf(h Hash, r io.Reader) (cid.Cid, error) {
	var w interface {
		io.Writer
		Sum([]byte) []byte
	}
	switch h {
	case SHA256:
		w = sha256.New()
	case BLAKE3:
		w = blake3.New()
	default:
		return cid.Undef, fmt.Errorf("%w: %v", ErrUnknownHash, h)
	}
	if _, err := io.Copy(w, r); err != nil {
		return cid.Undef, err
	}
	var d Digest
	w.Sum(d[:0])
	return h.ID(d), nil
}
