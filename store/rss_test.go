package store_test

import (
	"bufio"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
)

// rssFile returns the process's resident file-backed pages (RssFile in
// /proc/self/status), in bytes, or false where there is no such file.
func rssFile() (int64, bool) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "RssFile:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

// TestDBServesWithoutMapping checks what pack files are for: chunks put
// and read back do not stay mapped into the process. With chunks in
// badger's value log, each one read counted in the resident set as a
// mapped file page; through pread they are only page cache.
func TestDBServesWithoutMapping(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 64 MiB")
	}
	before, ok := rssFile()
	if !ok {
		t.Skip("no RssFile in /proc/self/status")
	}
	db := openDB(t)
	h := chunker.SHA256
	const n, size = 1024, 64 << 10
	ctx := context.Background()
	chunks := testChunks(16, 1, size)
	buf := chunks[0]
	list := make([]cid.Cid, 0, n)
	for i := range n {
		buf[0], buf[1] = byte(i), byte(i>>8)
		id := h.ID(h.Sum(buf))
		if err := db.Put(ctx, id, buf); err != nil {
			t.Fatal(err)
		}
		list = append(list, id)
	}
	for range 2 {
		for _, id := range list {
			if _, err := db.Get(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
	}
	after, _ := rssFile()
	grew := after - before
	t.Logf("mapped file pages grew by %.1f MiB putting and reading %d MiB of chunks", float64(grew)/(1<<20), n*size>>20)
	if grew > 16<<20 {
		t.Fatalf("mapped file pages grew by %d MiB for %d MiB of chunks; want under 16 MiB", grew>>20, n*size>>20)
	}
}
