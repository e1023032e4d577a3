package tlog

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// MaxCheckpointSize bounds a checkpoint note read from outside. A tree text
// is about 90 bytes and one Ed25519 signature line about 100, so this leaves
// room for dozens of cosignatures and no room for abuse.
const MaxCheckpointSize = 8 << 10

// CheckpointPath is the checkpoint's path inside the log directory.
const CheckpointPath = "checkpoint"

// Checkpoint is a verified signed tree head.
type Checkpoint struct {
	// Tree is the log size and root hash the note signs.
	Tree tlog.Tree
	// Note is the signed note as stored in the log directory; a device may
	// keep it as evidence, or remember only Tree.
	Note []byte
}

// GenerateKey makes a new Ed25519 log key named name (a host/path-like
// string without spaces or '+', e.g. "shoal.example.org/fleet-log"). skey is
// the private signer key for the publisher, to pass to note.NewSigner; vkey
// is the public verifier key that devices and auditors trust, to pass to
// NewVerifiers.
func GenerateKey(name string) (skey, vkey string, err error) {
	skey, vkey, err = note.GenerateKey(rand.Reader, name)
	if err != nil {
		return "", "", fmt.Errorf("tlog: generate key %q: %w", name, err)
	}
	return skey, vkey, nil
}

// NewVerifiers parses verifier keys (as GenerateKey returns them) into the
// set that VerifyCheckpoint and NewReader take.
func NewVerifiers(vkeys ...string) (note.Verifiers, error) {
	if len(vkeys) == 0 {
		return nil, errors.New("tlog: no verifier keys")
	}
	vs := make([]note.Verifier, 0, len(vkeys))
	for i, k := range vkeys {
		v, err := note.NewVerifier(k)
		if err != nil {
			return nil, fmt.Errorf("tlog: verifier key %d: %w", i, err)
		}
		vs = append(vs, v)
	}
	return note.VerifierList(vs...), nil
}

// VerifyCheckpoint checks a checkpoint note: at most MaxCheckpointSize
// bytes, signed by at least one key in verifiers (signatures by unknown keys
// are ignored; a bad signature by a known key is an error), and a text that
// is exactly tlog.FormatTree of a tree, with no extra lines. Every failure
// wraps ErrBadCheckpoint.
func VerifyCheckpoint(msg []byte, verifiers note.Verifiers) (Checkpoint, error) {
	if len(msg) > MaxCheckpointSize {
		return Checkpoint{}, fmt.Errorf("%w: %d bytes, limit %d", ErrBadCheckpoint, len(msg), MaxCheckpointSize)
	}
	n, err := note.Open(msg, verifiers)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %w", ErrBadCheckpoint, err)
	}
	tree, err := parseTreeText([]byte(n.Text))
	if err != nil {
		return Checkpoint{}, err
	}
	return Checkpoint{Tree: tree, Note: bytes.Clone(msg)}, nil
}

// parseTreeText accepts exactly the text tlog.FormatTree writes; tlog's own
// parser ignores trailing lines, which would let two different notes sign
// one tree.
func parseTreeText(text []byte) (tlog.Tree, error) {
	tree, err := tlog.ParseTree(text)
	if err != nil {
		return tlog.Tree{}, fmt.Errorf("%w: tree text: %w", ErrBadCheckpoint, err)
	}
	if !bytes.Equal(tlog.FormatTree(tree), text) {
		return tlog.Tree{}, fmt.Errorf("%w: tree text has extra or non-canonical lines", ErrBadCheckpoint)
	}
	return tree, nil
}

// signCheckpoint signs tree as a note.
func signCheckpoint(tree tlog.Tree, signer note.Signer) ([]byte, error) {
	msg, err := note.Sign(&note.Note{Text: string(tlog.FormatTree(tree))}, signer)
	if err != nil {
		return nil, fmt.Errorf("tlog: sign checkpoint with key %q: %w", signer.Name(), err)
	}
	return msg, nil
}

// ownCheckpoint reads back a checkpoint this publisher wrote. It has no
// verifier, but Ed25519 signatures are deterministic, so re-signing the text
// must reproduce the stored note exactly; that catches both an edited note
// and a log signed with another key.
func ownCheckpoint(msg []byte, signer note.Signer) (tlog.Tree, error) {
	if len(msg) > MaxCheckpointSize {
		return tlog.Tree{}, fmt.Errorf("%w: %d bytes, limit %d", ErrBadCheckpoint, len(msg), MaxCheckpointSize)
	}
	i := bytes.Index(msg, []byte("\n\n"))
	if i < 0 {
		return tlog.Tree{}, fmt.Errorf("%w: no signature block", ErrBadCheckpoint)
	}
	text := msg[:i+1]
	tree, err := parseTreeText(text)
	if err != nil {
		return tlog.Tree{}, err
	}
	again, err := signCheckpoint(tree, signer)
	if err != nil {
		return tlog.Tree{}, err
	}
	if !bytes.Equal(again, msg) {
		return tlog.Tree{}, fmt.Errorf("%w: stored checkpoint is not exactly signed by key %q (edited, cosigned, or another key)", ErrBadCheckpoint, signer.Name())
	}
	return tree, nil
}
