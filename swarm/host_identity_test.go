package swarm

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

func TestIdentityCreatedOnceAndKept(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "dir")
	path := filepath.Join(dir, "identity.key")
	k1, err := LoadIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 || !st.Mode().IsRegular() {
		t.Errorf("key file mode %v, want a regular file with 0600", st.Mode())
	}
	if dst, err := os.Stat(dir); err != nil || dst.Mode().Perm() != 0o700 {
		t.Errorf("created directory: %v, %v; want mode 0700", dst.Mode(), err)
	}
	before, _ := os.ReadFile(path)
	if !bytes.HasPrefix(before, []byte("-----BEGIN PRIVATE KEY-----\n")) {
		t.Errorf("key file does not start with a PEM PRIVATE KEY block:\n%s", before)
	}
	k2, err := LoadIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equals(k2) {
		t.Error("second load returned another key")
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Error("loading rewrote the key file")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the key (no temporary file left)", len(entries))
	}
}

// TestIdentityRace: hosts starting together on one missing key file all
// get the key that was created first; none overwrites it.
func TestIdentityRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "identity.key")
	const n = 8
	keys := make(chan crypto.PrivKey, n)
	for range n {
		go func() {
			k, err := LoadIdentity(path)
			if err != nil {
				t.Error(err)
			}
			keys <- k
		}()
	}
	first := <-keys
	for range n - 1 {
		if k := <-keys; first == nil || k == nil || !first.Equals(k) {
			t.Fatal("concurrent first starts got different keys")
		}
	}
	if k, err := LoadIdentity(path); err != nil || !k.Equals(first) {
		t.Fatalf("key on disk differs from the one handed out (%v)", err)
	}
}

// TestIdentitySurvivesRestart: a host restarted on the same key file has
// the same peer ID.
func TestIdentitySurvivesRestart(t *testing.T) {
	key := filepath.Join(t.TempDir(), "identity.key")
	start := func() peer.ID {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		h, err := NewHost(ctx, HostConfig{Fleet: testFleet, KeyFile: key, Listen: loopback})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		return h.ID()
	}
	first, second := start(), start()
	if first != second {
		t.Errorf("peer ID %s after restart, want %s", second, first)
	}
}

func TestIdentityRefused(t *testing.T) {
	good := func(t *testing.T) string {
		p := filepath.Join(t.TempDir(), "identity.key")
		if _, err := LoadIdentity(p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write := func(t *testing.T, data []byte) string {
		p := filepath.Join(t.TempDir(), "identity.key")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ecKey := func() []byte {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	for _, tc := range []struct {
		name string
		path func(t *testing.T) string
		want string
	}{
		{"world-readable", func(t *testing.T) string {
			p := good(t)
			os.Chmod(p, 0o644)
			return p
		}, "mode 0644"},
		{"group-readable", func(t *testing.T) string {
			p := good(t)
			os.Chmod(p, 0o640)
			return p
		}, "mode 0640"},
		{"directory", func(t *testing.T) string { return t.TempDir() }, "not a regular file"},
		{"fifo", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "fifo")
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Skip("mkfifo:", err)
			}
			return p
		}, "not a regular file"},
		{"not PEM", func(t *testing.T) string { return write(t, []byte("hello")) }, "no PEM block"},
		{"public key", func(t *testing.T) string {
			return write(t, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}}))
		}, `"PUBLIC KEY"`},
		{"ECDSA key", func(t *testing.T) string { return write(t, ecKey()) }, "want an Ed25519 key"},
		{"trailing data", func(t *testing.T) string {
			b, _ := os.ReadFile(good(t))
			return write(t, append(b, "junk"...))
		}, "data after the PEM block"},
		{"huge", func(t *testing.T) string { return write(t, bytes.Repeat([]byte("x"), 1<<20)) }, "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.path(t)
			before := readRegular(p)
			done := make(chan error, 1)
			go func() { _, err := LoadIdentity(p); done <- err }()
			var err error
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("LoadIdentity blocked")
			}
			if !errors.Is(err, ErrIdentity) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want ErrIdentity naming %q", err, tc.want)
			}
			if after := readRegular(p); !bytes.Equal(before, after) {
				t.Error("the refused file was changed")
			}
		})
	}
}

// readRegular reads p if it is a regular file (reading a FIFO would block).
func readRegular(p string) []byte {
	if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
		return nil
	}
	b, _ := os.ReadFile(p)
	return b
}
