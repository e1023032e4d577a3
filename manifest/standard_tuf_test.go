package manifest

import (
	"bytes"
	"crypto/sha256"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/shoalnet/shoal/chunker"
)

// stockRepo publishes three releases on two channels, with a root and a
// timestamp key rotation after the first (so the repository holds
// 1.root.json to 3.root.json), a release of two artifacts and one with
// blake3 chunk IDs (whose index CID is not the index's sha256).
func stockRepo(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t, nil)
	f.publish("stable", 1, 1, nil)
	for _, role := range []string{metadata.ROOT, metadata.TIMESTAMP} {
		if err := f.keys.Rotate(role, KeysOptions{Now: clock(0)}); err != nil {
			t.Fatal(err)
		}
	}
	f.publish("stable", 2, 2, func(o *PublishOptions) {
		o.Artifacts = append(o.Artifacts, ArtifactInput{Name: "kernel", Slot: "boot", Path: writeImage(t, f.dir, "kernel-2", 200<<10, 9)})
	})
	f.publish("beta", 1, 3, func(o *PublishOptions) { o.Hash = chunker.BLAKE3 })
	return f
}

// recorder wraps a handler and remembers the paths asked for.
type recorder struct {
	h     http.Handler
	mu    sync.Mutex
	paths []string
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.paths = append(r.paths, req.URL.Path)
	r.mu.Unlock()
	r.h.ServeHTTP(w, req)
}

// stockDownloadAll runs go-tuf's own client against base (a server of
// the repository): it trusts root version 1, refreshes the metadata from
// base/metadata/, and downloads and verifies every target of the trusted
// targets from base/targets/. It returns each target's bytes by path.
func stockDownloadAll(t *testing.T, f *fixture, base string, hc *http.Client) (map[string][]byte, *updater.Updater, error) {
	t.Helper()
	root, err := os.ReadFile(filepath.Join(f.keys.Dir(), "roots", "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.New(base+"/metadata/", root)
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	cfg.LocalMetadataDir = filepath.Join(cache, "metadata")
	cfg.LocalTargetsDir = filepath.Join(cache, "targets")
	cfg.RemoteTargetsURL = base + "/targets/"
	if err := cfg.SetDefaultFetcherHTTPClient(hc); err != nil {
		t.Fatal(err)
	}
	up, err := updater.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	up.UnsafeSetRefTime(t0) // the fixture's metadata expires 720h after t0
	if err := up.Refresh(); err != nil {
		return nil, up, err
	}
	got := map[string][]byte{}
	for p := range up.GetTopLevelTargets() {
		tf, err := up.GetTargetInfo(p)
		if err != nil {
			return nil, up, err
		}
		_, data, err := up.DownloadTarget(tf, "", "")
		if err != nil {
			return nil, up, err
		}
		got[p] = data
	}
	return got, up, nil
}

// checkStock checks what the stock client got against the repository: the
// newest root, every target of the current targets metadata, each the
// bytes of its index file, fetched under targets/DIR/<sha256>.NAME.
func checkStock(t *testing.T, f *fixture, got map[string][]byte, up *updater.Updater, asked []string) {
	t.Helper()
	tm := up.GetTrustedMetadataSet()
	if v := tm.Root.Signed.Version; v != f.keys.RootVersion() || v != 3 {
		t.Errorf("stock client trusts root version %d, want %d (3)", v, f.keys.RootVersion())
	}
	_, _, targets := current(t, f.repo)
	if tm.Targets[metadata.TARGETS].Signed.Version != targets.Signed.Version {
		t.Errorf("stock client holds targets version %d, the repository %d", tm.Targets[metadata.TARGETS].Signed.Version, targets.Signed.Version)
	}
	if len(got) != len(targets.Signed.Targets) || len(got) != 4 {
		t.Errorf("stock client downloaded %d targets, the repository lists %d (want 4)", len(got), len(targets.Signed.Targets))
	}
	for p, tf := range targets.Signed.Targets {
		_, a, err := parseTarget(p, tf)
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(f.repo, IndexPath(a.Index)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[p], want) {
			t.Errorf("target %s: the stock client got %d bytes, not the %d of index/%s", p, len(got[p]), len(want), a.Index)
		}
		fp := "/" + TargetFilePath(p, tf.Hashes["sha256"])
		if !slices.Contains(asked, fp) {
			t.Errorf("target %s: the stock client never asked for %s", p, fp)
		}
	}
	for _, v := range []string{"2", "3"} {
		if !slices.Contains(asked, "/metadata/"+v+".root.json") {
			t.Errorf("the stock client did not walk %s.root.json: %v", v, asked)
		}
	}
}

// TestStockTUFClient: a stock TUF client (go-tuf v2's metadata/updater)
// given REPO/metadata/ and REPO/targets/ walks the root rotations,
// refreshes the metadata and downloads and verifies every target, both
// from shoal's own handler (shoal serve) and from a plain static file
// server.
func TestStockTUFClient(t *testing.T) {
	f := stockRepo(t)
	for _, tc := range []struct {
		name string
		h    http.Handler
	}{
		{"shoal-serve", Handler(f.repo)},
		{"static-file-server", http.FileServer(http.Dir(f.repo))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{h: tc.h}
			srv := httptest.NewServer(rec)
			defer srv.Close()
			got, up, err := stockDownloadAll(t, f, srv.URL, srv.Client())
			if err != nil {
				t.Fatalf("stock TUF client: %v", err)
			}
			checkStock(t, f, got, up, rec.paths)
		})
	}

	// The targets/ files are what the stock client downloads: without
	// them it fails.
	if err := os.Rename(filepath.Join(f.repo, targetsDir), filepath.Join(f.dir, "targets-away")); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(f.repo)))
	defer srv.Close()
	if _, _, err := stockDownloadAll(t, f, srv.URL, srv.Client()); err == nil {
		t.Fatal("stock client succeeded without targets/")
	}
}

// TestHandlerServesTargets: shoal's handler serves targets/ files as bytes
// that never change.
func TestHandlerServesTargets(t *testing.T) {
	f := newFixture(t, nil)
	f.publish("stable", 1, 1, nil)
	_, _, tg := current(t, f.repo)
	tf := tg.Signed.Targets[TargetPath("stable", 1, "rootfs")]
	srv := httptest.NewServer(Handler(f.repo))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/" + TargetFilePath(tf.Path, tf.Hashes["sha256"]))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != tf.Length ||
		resp.Header.Get("Content-Type") != "application/octet-stream" ||
		!strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
		t.Fatalf("GET target file: %d, %d bytes, %q, %q", resp.StatusCode, resp.ContentLength,
			resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"))
	}
}

// targetFile returns the file of target p in f's repository, and the
// index file it must match.
func targetFile(t *testing.T, f *fixture, tg *metadata.Metadata[metadata.TargetsType], p string) (file, index string) {
	t.Helper()
	tf := tg.Signed.Targets[p]
	if tf == nil {
		t.Fatalf("no target %s", p)
	}
	_, a, err := parseTarget(p, tf)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(f.repo, filepath.FromSlash(TargetFilePath(p, tf.Hashes["sha256"]))),
		filepath.Join(f.repo, IndexPath(a.Index))
}

func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	sa, err := os.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := os.Stat(b)
	if err != nil {
		t.Fatal(err)
	}
	return os.SameFile(sa, sb)
}

func sameBytes(t *testing.T, a, b string) bool {
	t.Helper()
	ba, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	bb, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ba, bb)
}

// TestPublishTargetFiles: publish links every listed target into
// targets/, repairs missing or wrong files of kept releases (a repository
// published before targets/ existed gets them on its next publish), keeps
// files of releases that dropped out of targets, copies where it cannot
// link, and writes no metadata when it cannot place a target file.
func TestPublishTargetFiles(t *testing.T) {
	f := newFixture(t, nil)
	f.publish("stable", 1, 1, nil)
	_, _, tg := current(t, f.repo)
	file1, index1 := targetFile(t, f, tg, TargetPath("stable", 1, "rootfs"))
	if !sameFile(t, file1, index1) {
		t.Fatal("target file of stable/1 is not a link to its index")
	}

	// A repository without targets/ (published by an older shoal), and
	// a temporary link a dead publish left behind.
	if err := os.RemoveAll(filepath.Join(f.repo, targetsDir)); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(f.repo, targetsDir), 0o755); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(f.repo, targetsDir, ".deadbeef.rootfs.tmp")
	if err := os.WriteFile(stale, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.publish("stable", 2, 2, nil)
	_, _, tg = current(t, f.repo)
	file2, index2 := targetFile(t, f, tg, TargetPath("stable", 2, "rootfs"))
	if !sameFile(t, file1, index1) || !sameFile(t, file2, index2) {
		t.Fatal("publish did not link the kept and the new release's targets")
	}
	if _, err := os.Lstat(stale); err == nil {
		t.Fatal("stale temporary link left in targets/")
	}

	// A wrong file of a kept release (same length, other bytes) is
	// replaced, and the index it stood beside is left alone; a right
	// one is left as it is.
	idx1, _ := os.ReadFile(index1)
	st2, _ := os.Stat(file2)
	if err := os.Remove(file1); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file1, bytes.Repeat([]byte{'x'}, len(idx1)), 0o644); err != nil {
		t.Fatal(err)
	}
	f.publish("stable", 3, 3, nil)
	if !sameFile(t, file1, index1) {
		t.Fatal("a wrong target file was not replaced")
	}
	if b, _ := os.ReadFile(index1); !bytes.Equal(b, idx1) {
		t.Fatal("the index file changed")
	}
	if st, _ := os.Stat(file2); !os.SameFile(st, st2) {
		t.Fatal("a right target file was replaced")
	}

	// Releases that drop out of targets keep their files.
	f.publish("stable", 4, 4, func(o *PublishOptions) { o.Keep = 1 })
	_, _, tg = current(t, f.repo)
	if len(tg.Signed.Targets) != 1 {
		t.Fatalf("targets lists %d, want 1", len(tg.Signed.Targets))
	}
	for _, p := range []string{file1, file2} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("file of a dropped release: %v", err)
		}
	}

	// No hard links: a copy, with the same bytes.
	defer func(l func(string, string) error) { linkFile = l }(linkFile)
	linkFile = func(string, string) error { return &os.LinkError{Op: "link", Err: os.ErrPermission} }
	f.publish("stable", 5, 5, nil)
	_, _, tg = current(t, f.repo)
	file5, index5 := targetFile(t, f, tg, TargetPath("stable", 5, "rootfs"))
	if sameFile(t, file5, index5) || !sameBytes(t, file5, index5) {
		t.Fatal("copy fallback: want a copy with the index's bytes")
	}
	linkFile = os.Link

	// A target file that cannot be placed fails the publish before any
	// metadata names it: timestamp.json and the targets versions stay.
	img := writeImage(t, f.dir, "img-6", 600<<10, 6)
	ix := splitIndex(t, img)
	sum := sha256Of(ix.Encode())
	blocker := filepath.Join(f.repo, filepath.FromSlash(TargetFilePath(TargetPath("stable", 6, "rootfs"), sum)))
	if err := os.MkdirAll(filepath.Dir(filepath.Dir(blocker)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Dir(blocker), nil, 0o644); err != nil { // a file where a directory must go
		t.Fatal(err)
	}
	tsBefore, _ := os.ReadFile(filepath.Join(f.repo, "metadata", "timestamp.json"))
	_, _, tgBefore := current(t, f.repo)
	_, err := Publish(t.Context(), PublishOptions{
		Repo: f.repo, Keys: f.keys, Channel: "stable", Version: 6,
		Artifacts: []ArtifactInput{{Name: "rootfs", Path: img}}, Params: testParams, Now: clock(0),
	})
	if err == nil {
		t.Fatal("publish succeeded with its target file blocked")
	}
	if !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("publish with its target file blocked: %v", err)
	}
	if ts, _ := os.ReadFile(filepath.Join(f.repo, "metadata", "timestamp.json")); !bytes.Equal(ts, tsBefore) {
		t.Fatal("timestamp.json changed by a failed publish")
	}
	if _, err := os.Stat(filepath.Join(f.repo, "metadata", versionedName(tgBefore.Signed.Version+1, "targets"))); err == nil {
		t.Fatal("a failed publish wrote the next targets metadata")
	}
}

// splitIndex chunks an image as the fixture publishes it.
func splitIndex(t *testing.T, img string) *chunker.Index {
	t.Helper()
	fh, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	ix, err := chunker.Split(t.Context(), fh, chunker.Options{Params: testParams, Hash: chunker.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func sha256Of(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
