package announce_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	sumtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/manifest/tlog"
	"github.com/shoalnet/shoal/swarm/announce"
)

// logPaths lists an announcement's log files, sorted.
func logPaths(a *announce.Announcement) []string {
	var ps []string
	for p := range a.Files {
		if strings.HasPrefix(p, "log/") {
			ps = append(ps, p)
		}
	}
	sort.Strings(ps)
	return ps
}

// logVerifier is a client that requires the log, trusting keys' root and
// log key, with its own remembered state.
func logVerifier(t testing.TB, keys *manifest.Keyring, state manifest.StateStore) (*manifest.Client, *manifest.LogWitness) {
	t.Helper()
	w, err := manifest.NewLogWitness([]string{keys.LogVerifierKey()}, state)
	if err != nil {
		t.Fatal(err)
	}
	root, err := os.ReadFile(filepath.Join(keys.Dir(), "roots", "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := manifest.NewClient(manifest.ClientConfig{TrustedRoot: root, State: state, Witness: w, VerifyEvery: true})
	if err != nil {
		t.Fatal(err)
	}
	return c, w
}

var stable = manifest.Device{ID: "d", Channel: "stable"}

// TestAnnouncementCarriesLog: the announcement of a logged repository
// carries the log slice of its targets, and a node that requires the log
// verifies the release from the announcement alone — from nothing, and
// from a log it remembered; one of a repository without a log carries
// none.
func TestAnnouncementCarriesLog(t *testing.T) {
	ctx := context.Background()
	r, keys := logRepo(t, 1, true)
	state := &manifest.MemState{}
	c, w := logVerifier(t, keys, state)
	for v := uint64(1); v <= 3; v++ {
		if v > 1 {
			publish(t, r, keys, v, true)
		}
		a, err := announce.Collect(ctx, fetch.Dir(r), "fleet-1", "stable")
		if err != nil {
			t.Fatal(err)
		}
		b, err := a.Encode()
		if err != nil {
			t.Fatal(err)
		}
		got, err := announce.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if !got.HasLog() || !maps.EqualFunc(got.Files, a.Files, func(x, y []byte) bool { return string(x) == string(y) }) {
			t.Fatalf("v%d: round trip lost files: %v", v, logPaths(got))
		}
		// Every file of the slice is there, and in the repository.
		for _, p := range logPaths(got) {
			disk, err := os.ReadFile(filepath.Join(r, filepath.FromSlash(p)))
			if err != nil || string(disk) != string(got.Files[p]) {
				t.Fatalf("v%d: %s differs from the repository's: %v", v, p, err)
			}
		}
		ver, err := c.VerifyMetadata(ctx, stable, []fetch.Fetcher{got.Fetcher()})
		if err != nil {
			t.Fatalf("v%d: %v", v, err)
		}
		if ver.Release.Version != v {
			t.Fatalf("verified v%d, want %d", ver.Release.Version, v)
		}
		p, ok := w.Proof(ver.TargetsVersion, ver.Targets)
		if !ok || p.Tree.N != int64(v) || p.Entry != int64(v)-1 {
			t.Fatalf("v%d: witness proof %+v %v", v, p, ok)
		}
		if err := got.CheckLog(ctx, ver.TargetsVersion, ver.Targets); err != nil {
			t.Fatalf("v%d: %v", v, err)
		}
		tv, tb, ok := got.Targets()
		if !ok || tv != ver.TargetsVersion || string(tb) != string(ver.Targets) {
			t.Fatalf("v%d: Targets() = %d, %v", v, tv, ok)
		}
	}
	if cp, err := w.Remembered(); err != nil || cp.Tree.N != 3 {
		t.Fatalf("remembered %+v, %v", cp.Tree, err)
	}

	plain, _ := repo(t, 1)
	a, err := announce.Collect(ctx, fetch.Dir(plain), "fleet-1", "stable")
	if err != nil {
		t.Fatal(err)
	}
	if a.HasLog() || len(logPaths(a)) != 0 {
		t.Fatalf("a repository without a log: %v", logPaths(a))
	}
	if err := a.CheckLog(ctx, 1, []byte("anything")); err != nil {
		t.Fatalf("CheckLog without log files: %v", err)
	}
}

// TestCheckLogRefuses: log files that are not exactly the slice of the
// verified targets — stale, with a file missing or extra, damaged, or
// without a checkpoint — wrap ErrBadLog; a node that requires the log
// refuses a stripped slice and a checkpoint signed by another key.
func TestCheckLogRefuses(t *testing.T) {
	ctx := context.Background()
	r, keys := logRepo(t, 1, true)
	old, err := announce.Collect(ctx, fetch.Dir(r), "fleet-1", "stable")
	if err != nil {
		t.Fatal(err)
	}
	publish(t, r, keys, 2, true)
	good, err := announce.Collect(ctx, fetch.Dir(r), "fleet-1", "stable")
	if err != nil {
		t.Fatal(err)
	}
	tv, tb, ok := good.Targets()
	if !ok {
		t.Fatal("no targets")
	}
	edit := func(f func(files map[string][]byte)) *announce.Announcement {
		a := *good
		a.Files = maps.Clone(good.Files)
		f(a.Files)
		return &a
	}
	withoutLog := func(files map[string][]byte) {
		for p := range files {
			if strings.HasPrefix(p, "log/") {
				delete(files, p)
			}
		}
	}
	for name, a := range map[string]*announce.Announcement{
		"stale": edit(func(files map[string][]byte) {
			withoutLog(files)
			for _, p := range logPaths(old) {
				files[p] = old.Files[p]
			}
		}),
		"tile missing": edit(func(files map[string][]byte) { delete(files, "log/tile/8/0/000.p/2") }),
		"extra tile":   edit(func(files map[string][]byte) { files["log/tile/8/0/000.p/1"] = old.Files["log/tile/8/0/000.p/1"] }),
		"damaged tile": edit(func(files map[string][]byte) {
			b := []byte(string(files["log/tile/8/0/000.p/2"]))
			b[0] ^= 1
			files["log/tile/8/0/000.p/2"] = b
		}),
		"no checkpoint": edit(func(files map[string][]byte) { delete(files, "log/checkpoint") }),
	} {
		if err := a.CheckLog(ctx, tv, tb); !errors.Is(err, announce.ErrBadLog) {
			t.Errorf("%s: %v, want ErrBadLog", name, err)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}

	// What a node that requires the log makes of slices no relay can
	// fault: none at all, and one signed by a key it does not trust.
	stripped := edit(withoutLog)
	if err := stripped.CheckLog(ctx, tv, tb); err != nil || stripped.HasLog() {
		t.Fatalf("stripped: %v", err)
	}
	cp := good.Files["log/checkpoint"]
	tree, err := manifest.UnverifiedCheckpoint(cp)
	if err != nil {
		t.Fatal(err)
	}
	skey, _, err := tlog.GenerateKey("attacker")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	forgedCP, err := note.Sign(&note.Note{Text: string(sumtlog.FormatTree(tree))}, signer)
	if err != nil {
		t.Fatal(err)
	}
	forged := edit(func(files map[string][]byte) { files["log/checkpoint"] = forgedCP })
	if err := forged.CheckLog(ctx, tv, tb); err != nil {
		t.Fatalf("a forged signature is no error of the slice's shape: %v", err)
	}
	for name, a := range map[string]*announce.Announcement{"stripped": stripped, "forged checkpoint": forged} {
		c, _ := logVerifier(t, keys, &manifest.MemState{})
		_, err := c.VerifyMetadata(ctx, stable, []fetch.Fetcher{a.Fetcher()})
		want := map[string]error{"stripped": tlog.ErrNotFound, "forged checkpoint": tlog.ErrBadCheckpoint}[name]
		if !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// TestDecodeLogBounds: log files only at the paths of a slice, each
// within its own bound; metadata files within theirs; at most one
// snapshot and one targets; the metadata and log file counts bounded
// apart.
func TestDecodeLogBounds(t *testing.T) {
	enc := func(files map[string][]byte) []byte {
		var b strings.Builder
		b.WriteString(`{"v":1,"fleet":"f","channel":"stable","files":{"metadata/timestamp.json":"e30="`)
		ps := make([]string, 0, len(files))
		for p := range files {
			ps = append(ps, p)
		}
		sort.Strings(ps)
		for _, p := range ps {
			fmt.Fprintf(&b, ",%q:%q", p, base64.StdEncoding.EncodeToString(files[p]))
		}
		b.WriteString("}}")
		return []byte(b.String())
	}
	ok := map[string][]byte{
		"log/checkpoint":          make([]byte, tlog.MaxCheckpointSize),
		"log/lookup/0a":           []byte("x"),
		"log/tile/8/0/000":        make([]byte, 8192),
		"log/tile/8/0/001.p/3":    make([]byte, 96),
		"log/tile/8/1/000.p/2":    make([]byte, 64),
		"log/tile/8/data/001.p/3": make([]byte, 300),
	}
	a, err := announce.Decode(enc(ok))
	if err != nil {
		t.Fatalf("good: %v", err)
	}
	if !a.HasLog() {
		t.Fatal("HasLog")
	}
	for name, files := range map[string]map[string][]byte{
		"lock file":           {"log/.lock": nil},
		"journal":             {"log/.append": nil},
		"tile height 9":       {"log/tile/9/0/000": make([]byte, 32)},
		"tile not canonical":  {"log/tile/8/0/0": make([]byte, 32)},
		"upper-case shard":    {"log/lookup/0A": nil},
		"log directory":       {"log/": nil},
		"other directory":     {"logs/checkpoint": nil},
		"checkpoint too big":  {"log/checkpoint": make([]byte, tlog.MaxCheckpointSize+1)},
		"tile too big":        {"log/tile/8/0/000.p/3": make([]byte, 97)},
		"full tile too big":   {"log/tile/8/0/000": make([]byte, 8193)},
		"bundle too big":      {"log/tile/8/data/000.p/1": make([]byte, 2+tlog.MaxRecordSize+1)},
		"timestamp too big":   {"metadata/timestamp.json": make([]byte, manifest.DefaultLimits.Timestamp+1)},
		"root too big":        {"metadata/1.root.json": make([]byte, manifest.DefaultLimits.Root+1)},
		"two targets":         {"metadata/3.targets.json": nil, "metadata/4.targets.json": nil},
		"two snapshots":       {"metadata/3.snapshot.json": nil, "metadata/4.snapshot.json": nil},
		"too many log files":  tiles(announce.MaxLogFiles + 1),
		"too many root files": roots(announce.MaxMetadataFiles),
	} {
		if _, err := announce.Decode(enc(files)); !errors.Is(err, announce.ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	if _, err := announce.Decode(enc(tiles(announce.MaxLogFiles))); err != nil {
		t.Errorf("MaxLogFiles log files: %v", err)
	}
	if _, err := announce.Decode(enc(roots(announce.MaxMetadataFiles - 1))); err != nil {
		t.Errorf("MaxMetadataFiles metadata files: %v", err)
	}
}

// tiles makes n one-hash tiles.
func tiles(n int) map[string][]byte {
	m := map[string][]byte{}
	for i := range n {
		m["log/"+sumtlog.Tile{H: tlog.TileHeight, L: 0, N: int64(i), W: 1}.Path()] = make([]byte, 32)
	}
	return m
}

// roots makes n root versions.
func roots(n int) map[string][]byte {
	m := map[string][]byte{}
	for i := 1; i <= n; i++ {
		m[fmt.Sprintf("metadata/%d.root.json", i)] = []byte("{}")
	}
	return m
}

// TestLimitsFit: the log files of the largest log an announcement
// carries are MaxLogFiles, and with them at their largest a slice still
// leaves over a MiB of MaxSize to the metadata.
func TestLimitsFit(t *testing.T) {
	tree := int64(announce.MaxLogEntries)
	ts := sumtlog.NewTiles(tlog.TileHeight, 0, tree)
	if n := len(ts) + 3; n != announce.MaxLogFiles {
		t.Fatalf("a slice of a log of %d entries has %d files, MaxLogFiles is %d", tree, n, announce.MaxLogFiles)
	}
	files := map[string][]byte{"metadata/timestamp.json": []byte("{}")}
	for _, tl := range ts {
		files["log/"+tl.Path()] = make([]byte, tl.W*sumtlog.HashSize)
	}
	// A targets record is about 110 bytes; the shard holds a line for
	// each of its 1/256th of the log.
	files["log/tile/8/data/255"] = make([]byte, 256*(2+110))
	files["log/lookup/00"] = make([]byte, (tree/256)*(64+1+5+1))
	files["log/checkpoint"] = make([]byte, 200)
	a := &announce.Announcement{Version: announce.Version, Fleet: "f", Channel: "stable", Files: files}
	b, err := a.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if spare := announce.MaxSize - len(b); spare < 1<<20 {
		t.Fatalf("the largest slice leaves %d bytes for the metadata", spare)
	}
	t.Logf("the largest slice encodes to %d bytes; %d left for the metadata", len(b), announce.MaxSize-len(b))
}

// TestLargestLog: the announcement of a repository whose log holds
// MaxLogEntries entries fits in MaxSize, decodes, and proves the release
// to a node that requires the log; one entry more and Collect refuses,
// saying why.
func TestLargestLog(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a log of 65,536 entries")
	}
	ctx := context.Background()
	r, keys := logRepo(t, 0, false)
	// Earlier entries: anything distinct (LastLogged reads no targets
	// version from them).
	filler := make([][]byte, announce.MaxLogEntries-1)
	for i := range filler {
		filler[i] = fmt.Appendf(nil, "filler %d\n", i)
	}
	if _, err := tlog.Append(ctx, filepath.Join(r, tlog.RepoDir), keys.LogSigner(), filler...); err != nil {
		t.Fatal(err)
	}
	publish(t, r, keys, 1, true)
	a, err := announce.Collect(ctx, fetch.Dir(r), "fleet-1", "stable")
	if err != nil {
		t.Fatal(err)
	}
	b, err := a.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := announce.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d files, %d bytes", len(got.Files), len(b))
	c, _ := logVerifier(t, keys, &manifest.MemState{})
	v, err := c.VerifyMetadata(ctx, stable, []fetch.Fetcher{got.Fetcher()})
	if err != nil {
		t.Fatal(err)
	}
	if err := got.CheckLog(ctx, v.TargetsVersion, v.Targets); err != nil {
		t.Fatal(err)
	}
	publish(t, r, keys, 2, true)
	if _, err := announce.Collect(ctx, fetch.Dir(r), "fleet-1", "stable"); !errors.Is(err, tlog.ErrTooLarge) {
		t.Fatalf("a log of %d entries: %v", announce.MaxLogEntries+1, err)
	} else {
		t.Log(err)
	}
}
