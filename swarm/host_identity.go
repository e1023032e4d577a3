package swarm

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/shoalnet/shoal/internal/inputfile"
)

// ErrIdentity is wrapped by every refusal of an identity key file.
var ErrIdentity = errors.New("swarm: bad identity key file")

// maxKeyFile bounds what LoadIdentity reads: a PEM Ed25519 key is ~120
// bytes.
const maxKeyFile = 4 << 10

// LoadIdentity returns the host's identity key from path, creating it on
// first use. The file is a PEM "PRIVATE KEY" block (PKCS #8, Ed25519), as
// `openssl pkey` reads it; the peer ID is derived from it, so a node keeps
// its ID across restarts.
//
// A new key is written to a temporary file (mode 0600) in the same
// directory, synced, and linked to path, so the file appears whole or not
// at all and an existing file is never overwritten (two starts racing keep
// the first key). A missing directory is created with mode 0700.
//
// An existing file is refused, with an error wrapping ErrIdentity, when it
// is not a regular file (a directory, a FIFO, a device), when its group or
// others may read or write it (as OpenSSH refuses such keys; fix with
// chmod 600), or when it does not hold one Ed25519 key.
func LoadIdentity(path string) (crypto.PrivKey, error) {
	k, err := readIdentity(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("swarm: identity key directory: %w", err)
	}
	if err := createIdentity(path); err != nil {
		return nil, err
	}
	return readIdentity(path)
}

func readIdentity(path string) (crypto.PrivKey, error) {
	f, err := inputfile.Open(path) // refuses FIFOs, devices, directories without blocking
	if errors.Is(err, inputfile.ErrNotRegular) {
		return nil, fmt.Errorf("%w: %v", ErrIdentity, err)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o: group and others must have no access (chmod 600 %s)",
			ErrIdentity, path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrIdentity, path, maxKeyFile)
	}
	k, err := parseIdentity(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrIdentity, path, err)
	}
	return k, nil
}

func parseIdentity(b []byte) (crypto.PrivKey, error) {
	block, rest := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("PEM block %q, want \"PRIVATE KEY\"", block.Type)
	}
	if len(pemTrim(rest)) != 0 {
		return nil, errors.New("data after the PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T, want an Ed25519 key", k)
	}
	return crypto.UnmarshalEd25519PrivateKey(ek)
}

func pemTrim(b []byte) []byte {
	for len(b) > 0 && (b[0] == '\n' || b[0] == '\r' || b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

func createIdentity(path string) (err error) {
	_, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(sk)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".identity-*") // mode 0600
	if err != nil {
		return fmt.Errorf("swarm: create identity key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := pem.Encode(tmp, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		tmp.Close()
		return fmt.Errorf("swarm: write identity key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("swarm: write identity key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// link, unlike rename, fails when path exists: a key that appeared
	// meanwhile is kept and loaded by the caller.
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("swarm: create identity key: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
