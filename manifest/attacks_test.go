package manifest

// One test per attack in TUF's specification list ("Attacks and
// weaknesses"), plus attacks on the repository's own objects. Each crafts
// the attack with real metadata (re-signed with the real keys where the
// attacker would hold one), runs the device-side verification and checks
// the specific rejection.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/fetch"
)

// mustReject runs a verification and checks it fails with want.
func mustReject(t *testing.T, c *Client, dev Device, want error) error {
	t.Helper()
	v, err := c.Verify(context.Background(), dev)
	if err == nil {
		t.Fatalf("verification passed (release %d), want %v", v.Release.Version, want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("got %v, want %v", err, want)
	}
	t.Logf("rejected as expected: %v", err)
	return err
}

func mustAccept(t *testing.T, c *Client, dev Device, version uint64) *Verified {
	t.Helper()
	v, err := c.Verify(context.Background(), dev)
	if err != nil {
		t.Fatalf("verification failed: %v", err)
	}
	if v.Release.Version != version {
		t.Fatalf("got release %d, want %d", v.Release.Version, version)
	}
	return v
}

// onlineKeys are what an attacker who broke into the publishing server
// holds: timestamp and snapshot. The targets and root keys stay offline.
func onlineKeys(t *testing.T, f *fixture) (ts, sn []ed25519.PrivateKey) {
	return roleKeys(t, f.keys, metadata.TIMESTAMP), roleKeys(t, f.keys, metadata.SNAPSHOT)
}

func TestAttacks(t *testing.T) {
	t.Run("arbitrary installation", func(t *testing.T) {
		// Attacker signs a release of their own with their own key, and
		// re-signs snapshot and timestamp with the stolen online keys.
		f := newFixture(t, nil)
		f.publish("stable", 1, 1, nil)
		ts, sn := onlineKeys(t, f)
		forge(t, f.repo, forgery{
			targets:     func(tg *metadata.TargetsType) { editCustom(t, tg, func(c *targetCustom) { c.Version = 99 }) },
			targetsKeys: []ed25519.PrivateKey{attackerKey(t)}, snapshotKeys: sn, timestampKeys: ts,
		})
		mustReject(t, f.client(0), stableDevice, ErrThreshold)

		// Without even the online keys, the timestamp fails first.
		g := newFixture(t, nil)
		g.publish("stable", 1, 1, nil)
		evil := []ed25519.PrivateKey{attackerKey(t)}
		forge(t, g.repo, forgery{targetsKeys: evil, snapshotKeys: evil, timestampKeys: evil})
		err := mustReject(t, g.client(0), stableDevice, ErrThreshold)
		if !strings.Contains(err.Error(), "timestamp") {
			t.Fatalf("want the timestamp named: %v", err)
		}
	})

	t.Run("endless data", func(t *testing.T) {
		f := newFixture(t, nil)
		f.publish("stable", 1, 1, nil)
		files := Handler(f.repo)
		endless := func(w http.ResponseWriter, declare bool) {
			if declare {
				w.Header().Set("Content-Length", "1099511627776")
			}
			buf := bytes.Repeat([]byte("{"), 32<<10)
			for i := 0; i < 1<<14; i++ { // up to 512 MiB; the client stops long before
				if _, err := w.Write(buf); err != nil {
					return
				}
			}
		}
		for _, tc := range []struct {
			name    string
			path    string
			declare bool
		}{
			{"timestamp streamed", "/metadata/timestamp.json", false},
			{"timestamp declared", "/metadata/timestamp.json", true},
			{"snapshot streamed", "/metadata/1.snapshot.json", false},
			{"targets streamed", "/metadata/1.targets.json", false},
			{"index streamed", "/index/", false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var served atomic.Int64
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if strings.HasPrefix(r.URL.Path, tc.path) {
						cw := &countingWriter{ResponseWriter: w}
						endless(cw, tc.declare)
						served.Add(cw.n)
						return
					}
					files.ServeHTTP(w, r)
				}))
				h, _ := fetch.NewHTTP(srv.URL, fetch.WithClient(srv.Client()))
				g := *f
				g.state = t.TempDir()
				mustReject(t, g.client(0, h), stableDevice, ErrTooLarge)
				srv.Close() // waits for the handler: the client hung up early
				if n := served.Load(); n > 64<<20 {
					t.Fatalf("server got to write %d bytes before the client hung up", n)
				}
			})
		}
	})

	t.Run("extraneous dependencies", func(t *testing.T) {
		// The attacker adds an artifact the release never had, keeps the
		// targets signatures and re-signs what their stolen keys allow.
		f := newFixture(t, nil)
		f.publish("stable", 1, 1, nil)
		_, _, tg := current(t, f.repo)
		ts, sn := onlineKeys(t, f)
		forge(t, f.repo, forgery{
			targets: func(t2 *metadata.TargetsType) {
				for p, tf := range t2.Targets {
					cp := *tf
					t2.Targets[strings.Replace(p, "rootfs", "backdoor", 1)] = &cp
				}
			},
			snapshotKeys: sn, timestampKeys: ts,
		})
		// forge re-signed targets with no keys: put the publisher's old
		// signatures back, as an attacker would.
		tv := tg.Signed.Version + 1
		p := filepath.Join(f.repo, "metadata", versionedName(tv, "targets"))
		forged := readMeta(t, metadata.Targets(), p)
		forged.Signatures = tg.Signatures
		b, _ := forged.ToBytes(true)
		write(t, p, b)
		// Re-chain snapshot and timestamp over the file as it now is.
		tsMD, snMD, _ := current(t, f.repo)
		snMD.Signed.Meta["targets.json"] = metaFileFor(tv, b)
		sb := resign(t, snMD, sn...)
		write(t, filepath.Join(f.repo, "metadata", versionedName(snMD.Signed.Version, "snapshot")), sb)
		tsMD.Signed.Meta["snapshot.json"] = metaFileFor(snMD.Signed.Version, sb)
		write(t, filepath.Join(f.repo, "metadata", "timestamp.json"), resign(t, tsMD, ts...))
		mustReject(t, f.client(0), stableDevice, ErrThreshold)

		// An unreferenced index dropped into the repository is never
		// fetched: the device only sees signed artifacts.
		g := newFixture(t, nil)
		g.publish("stable", 1, 1, nil)
		write(t, filepath.Join(g.repo, "index", "bafkreiextra"), []byte("junk"))
		v := mustAccept(t, g.client(0), stableDevice, 1)
		if len(v.Release.Artifacts) != 1 || v.Release.Artifacts[0].Name != "rootfs" {
			t.Fatalf("artifacts %+v", v.Release.Artifacts)
		}
	})

	t.Run("fast-forward", func(t *testing.T) {
		// With the stolen timestamp key, an attacker's mirror pushes the
		// timestamp version far ahead. The device accepts it (it is
		// validly signed), and would then refuse every real timestamp
		// as a rollback, until the operator rotates the timestamp key.
		f := newFixture(t, nil)
		f.publish("stable", 1, 1, nil)
		mustAccept(t, f.client(0), stableDevice, 1)
		mirror := filepath.Join(f.dir, "evil-mirror")
		copyDir(t, f.repo, mirror)
		ts, _ := onlineKeys(t, f)
		forge(t, mirror, forgery{timestamp: func(x *metadata.TimestampType) { x.Version = 1 << 40 }, timestampKeys: ts})
		mustAccept(t, f.client(0, fetch.Dir(mirror)), stableDevice, 1)

		f.publish("stable", 2, 2, nil)
		err := mustReject(t, f.client(0), stableDevice, ErrRollback)
		if !strings.Contains(err.Error(), "timestamp") {
			t.Fatalf("want the timestamp named: %v", err)
		}
		// Recovery: rotate the timestamp key and publish again. The new
		// root tells the device to forget the fast-forwarded timestamp.
		if err := f.keys.Rotate(metadata.TIMESTAMP, KeysOptions{Now: clock(0)}); err != nil {
			t.Fatal(err)
		}
		f.publish("stable", 3, 3, nil)
		v := mustAccept(t, f.client(0), stableDevice, 3)
		if v.RootVersion != 2 || v.TimestampVersion != 3 {
			t.Fatalf("root %d timestamp %d", v.RootVersion, v.TimestampVersion)
		}
		// And the attacker's old key no longer works.
		forge(t, mirror, forgery{timestamp: func(x *metadata.TimestampType) { x.Version = 1 << 41 }, timestampKeys: ts})
		for _, name := range []string{"2.root.json", "root.json"} {
			b, _ := os.ReadFile(filepath.Join(f.repo, "metadata", name))
			write(t, filepath.Join(mirror, "metadata", name), b)
		}
		mustReject(t, f.client(0, fetch.Dir(mirror)), stableDevice, ErrThreshold)
	})

	t.Run("indefinite freeze", func(t *testing.T) {
		// A mirror keeps serving old, validly signed metadata. Before it
		// expires nobody can tell; after, the device refuses it.
		f := newFixture(t, nil)
		f.publish("stable", 1, 1, nil)
		frozen := filepath.Join(f.dir, "frozen")
		copyDir(t, f.repo, frozen)
		f.publish("stable", 2, 2, nil)
		old := fetch.Dir(frozen)
		mustAccept(t, f.client(time.Hour, old), stableDevice, 1)
		err := mustReject(t, f.client(721*time.Hour, old), stableDevice, ErrExpired)
		if !strings.Contains(err.Error(), "expired") {
			t.Fatal(err)
		}
		// The device remembered timestamp 1; the same file later is still
		// refused once expired.
		mustReject(t, f.client(800*time.Hour, old), stableDevice, ErrExpired)
		// An expired root stops everything, however fresh the rest.
		g := newFixture(t, nil)
		g.publish("stable", 1, 1, func(o *PublishOptions) { o.Now = clock(366 * 24 * time.Hour) })
		mustReject(t, g.client(367*24*time.Hour), stableDevice, ErrExpired)
	})

	t.Run("malicious mirrors preventing updates", func(t *testing.T) {
		f := newFixture(t, nil)
		f.publish("stable", 1, 1, nil)
		stale := filepath.Join(f.dir, "stale")
		copyDir(t, f.repo, stale)
		f.publish("stable", 2, 2, nil)
		broken := filepath.Join(f.dir, "broken")
		copyDir(t, f.repo, broken)
		write(t, filepath.Join(broken, "metadata", "timestamp.json"), []byte(`{"signed":{}}`))
		good := fetch.Dir(f.repo)
		for name, bad := range map[string]fetch.Fetcher{
			"stale":   fetch.Dir(stale),
			"broken":  fetch.Dir(broken),
			"missing": fetch.Dir(t.TempDir()),
		} {
			t.Run(name, func(t *testing.T) {
				g := *f
				g.state = t.TempDir()
				// The bad mirror is listed first; the device still gets
				// the newest release from the good one.
				v := mustAccept(t, g.client(0, bad, good), stableDevice, 2)
				if v.Mirror != 1 {
					t.Fatalf("used mirror %d", v.Mirror)
				}
			})
		}
		// Alone, a broken mirror is named and rejected.
		g := *f
		g.state = t.TempDir()
		mustReject(t, g.client(0, fetch.Dir(broken)), stableDevice, ErrBadMetadata)
		mustReject(t, g.client(0, fetch.Dir(t.TempDir())), stableDevice, fetch.ErrNotFound)
	})

	t.Run("mix-and-match", func(t *testing.T) {
		for _, role := range []string{"snapshot", "targets"} {
			t.Run(role, func(t *testing.T) {
				// Metadata that never existed together: the current
				// timestamp with the previous publish's snapshot (or
				// the current snapshot with the previous targets).
				f := newFixture(t, nil)
				f.publish("stable", 1, 1, nil)
				f.publish("stable", 2, 2, nil)
				md := filepath.Join(f.repo, "metadata")
				old, _ := os.ReadFile(filepath.Join(md, versionedName(1, role)))
				write(t, filepath.Join(md, versionedName(2, role)), old)
				mustReject(t, f.client(0), stableDevice, ErrMixAndMatch)
			})
		}
		t.Run("artifacts of two releases", func(t *testing.T) {
			// A targets file listing the rootfs of release 2 under
			// release 1's name cannot be made without the targets key.
			f := newFixture(t, nil)
			f.publish("stable", 1, 1, nil)
			f.publish("stable", 2, 2, nil)
			ts, sn := onlineKeys(t, f)
			forge(t, f.repo, forgery{
				targets: func(tg *metadata.TargetsType) {
					tg.Targets[TargetPath("stable", 2, "rootfs")] = tg.Targets[TargetPath("stable", 1, "rootfs")]
				},
				targetsKeys: []ed25519.PrivateKey{attackerKey(t)}, snapshotKeys: sn, timestampKeys: ts,
			})
			mustReject(t, f.client(0), stableDevice, ErrThreshold)
		})
	})

	t.Run("rollback", func(t *testing.T) {
		f := newFixture(t, nil)
		f.publish("stable", 1, 1, nil)
		old := filepath.Join(f.dir, "old")
		copyDir(t, f.repo, old)
		f.publish("stable", 2, 2, nil)
		mustAccept(t, f.client(0), stableDevice, 2)
		// Replaying the older repository: the remembered timestamp is newer.
		mustReject(t, f.client(0, fetch.Dir(old)), stableDevice, ErrRollback)

		// Online keys stolen: a new timestamp and snapshot that point
		// back at the old targets. The snapshot's targets version went
		// down.
		ts, sn := onlineKeys(t, f)
		forge(t, f.repo, forgery{
			snapshot: func(s *metadata.SnapshotType) {
				b, _ := os.ReadFile(filepath.Join(f.repo, "metadata", "1.targets.json"))
				s.Meta["targets.json"] = metaFileFor(1, b)
			},
			snapshotKeys: sn, timestampKeys: ts,
		})
		mustReject(t, f.client(0), stableDevice, ErrRollback)

		// A fresh device that runs release 2 is offered release 1.
		g := newFixture(t, nil)
		g.publish("stable", 1, 1, nil)
		err := mustReject(t, g.client(0), Device{Channel: "stable", Installed: 2}, ErrRollback)
		if !strings.Contains(err.Error(), "device runs version 2") {
			t.Fatal(err)
		}
	})

	t.Run("key compromise below threshold", func(t *testing.T) {
		f := newFixture(t, map[string]int{"targets": 2, "root": 2})
		f.publish("stable", 1, 1, nil)
		ts, sn := onlineKeys(t, f)
		one := roleKeys(t, f.keys, metadata.TARGETS)[:1]
		forge(t, f.repo, forgery{
			targets: func(tg *metadata.TargetsType) {
				editCustom(t, tg, func(c *targetCustom) { c.Hardware = []string{"evil"} })
			},
			targetsKeys: one, snapshotKeys: sn, timestampKeys: ts,
		})
		err := mustReject(t, f.client(0), stableDevice, ErrThreshold)
		if !strings.Contains(err.Error(), "got 1, want 2") {
			t.Fatal(err)
		}
		// One of two root keys cannot rotate the root either.
		g := newFixture(t, map[string]int{"root": 2})
		g.publish("stable", 1, 1, nil)
		r := readMeta(t, metadata.Root(), filepath.Join(g.repo, "metadata", "1.root.json"))
		r.Signed.Version = 2
		r.Signed.Roles["targets"].KeyIDs = nil
		evil, _ := metadata.KeyFromPublicKey(attackerKey(t).Public())
		r.Signed.AddKey(evil, "targets")
		write(t, filepath.Join(g.repo, "metadata", "2.root.json"), resign(t, r, roleKeys(t, g.keys, metadata.ROOT)[0], attackerKey(t)))
		mustReject(t, g.client(0), stableDevice, ErrThreshold)
	})

	t.Run("wrong software installation", func(t *testing.T) {
		f := newFixture(t, nil)
		f.publish("stable", 1, 1, func(o *PublishOptions) {
			o.Hardware = []string{"rpi4", "rpi5"}
			o.Arch = []string{"arm64"}
		})
		f.publish("beta", 1, 2, nil)
		for _, tc := range []struct {
			dev  Device
			want error
		}{
			{Device{Channel: "stable", Hardware: "x86-nuc", Arch: "arm64"}, ErrWrongHardware},
			{Device{Channel: "stable", Hardware: "", Arch: "arm64"}, ErrWrongHardware},
			{Device{Channel: "stable", Hardware: "rpi5", Arch: "amd64"}, ErrWrongArch},
			{Device{Channel: "edge", Hardware: "rpi5", Arch: "arm64"}, ErrWrongChannel},
		} {
			t.Run(fmt.Sprint(tc.want), func(t *testing.T) {
				g := *f
				g.state = t.TempDir()
				mustReject(t, g.client(0), tc.dev, tc.want)
			})
		}
		g := *f
		g.state = t.TempDir()
		mustAccept(t, g.client(0), Device{Channel: "stable", Hardware: "rpi5", Arch: "arm64"}, 1)
	})

	t.Run("corrupt chunk", func(t *testing.T) {
		f := newFixture(t, nil)
		f.publish("stable", 1, 1, nil)
		v := mustAccept(t, f.client(0), stableDevice, 1)
		ix := v.Indexes[0]
		fe := fetch.Dir(f.repo)
		p := filepath.Join(f.repo, ChunkPath(ix.ID(3)))
		b, _ := os.ReadFile(p)
		b[len(b)/2] ^= 0x40
		write(t, p, b)
		if _, err := FetchChunk(context.Background(), fe, ix.ID(3), ix.Params.Max); !errors.Is(err, ErrChunkCorrupt) {
			t.Fatalf("flipped bit: %v", err)
		}
		// A valid object of another chunk under this chunk's name.
		other, _ := os.ReadFile(filepath.Join(f.repo, ChunkPath(ix.ID(4))))
		write(t, p, other)
		if _, err := FetchChunk(context.Background(), fe, ix.ID(3), ix.Params.Max); !errors.Is(err, ErrChunkCorrupt) {
			t.Fatalf("swapped chunk: %v", err)
		}
		// An object far larger than any chunk is refused before decoding.
		write(t, p, make([]byte, MaxObjectSize(ix.Params.Max)+1))
		if _, err := FetchChunk(context.Background(), fe, ix.ID(3), ix.Params.Max); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("oversized object: %v", err)
		}
	})

	t.Run("truncated index", func(t *testing.T) {
		f := newFixture(t, nil)
		res := f.publish("stable", 1, 1, nil)
		p := filepath.Join(f.repo, "index", res.Artifacts[0].Index)
		b, _ := os.ReadFile(p)
		write(t, p, b[:len(b)-36])
		mustReject(t, f.client(0), stableDevice, ErrIndexHash)
		// Even signed (a publisher bug, or a stolen targets key), a
		// truncated index does not decode.
		tk := roleKeys(t, f.keys, metadata.TARGETS)
		ts, sn := onlineKeys(t, f)
		forge(t, f.repo, forgery{
			targets: func(tg *metadata.TargetsType) {
				for _, tf := range tg.Targets {
					fixed, _ := metadata.TargetFile().FromBytes("", b[:len(b)-36])
					tf.Length, tf.Hashes = fixed.Length, fixed.Hashes
				}
			},
			targetsKeys: tk, snapshotKeys: sn, timestampKeys: ts,
		})
		mustReject(t, f.client(0), stableDevice, chunker.ErrMalformedIndex)
	})

	t.Run("index Merkle root mismatch", func(t *testing.T) {
		f := newFixture(t, nil)
		f.publish("stable", 1, 1, nil)
		tk := roleKeys(t, f.keys, metadata.TARGETS)
		ts, sn := onlineKeys(t, f)
		forge(t, f.repo, forgery{
			targets: func(tg *metadata.TargetsType) {
				editCustom(t, tg, func(c *targetCustom) { c.Root = strings.Repeat("0", 64) })
			},
			targetsKeys: tk, snapshotKeys: sn, timestampKeys: ts,
		})
		mustReject(t, f.client(0), stableDevice, ErrMerkleRoot)
	})
}

type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

var _ io.Writer = (*countingWriter)(nil)
