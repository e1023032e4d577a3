package tlog

import (
	"context"
	"testing"

	"github.com/shoalnet/shoal/fetch"
)

// BenchmarkAppend10000 appends 10,000 records in one batch to a new log:
// tiles, bundles, lookup shards and checkpoint, every file fsynced.
func BenchmarkAppend10000(b *testing.B) {
	k := newTestKey(b, "shoal.bench/log")
	recs := records(b, "stable", 0, 10000)
	for b.Loop() {
		if _, err := Append(context.Background(), b.TempDir(), k.signer, recs...); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendOne appends one record to a log of 100,000 entries, the
// publisher's cost per release.
func BenchmarkAppendOne(b *testing.B) {
	k := newTestKey(b, "shoal.bench/log")
	dir := b.TempDir()
	mustAppend(b, dir, k, records(b, "stable", 0, 100000)...)
	more := records(b, "more", 0, b.N+1000)
	i := 0
	for b.Loop() {
		mustAppend(b, dir, k, more[i])
		i++
	}
}

// BenchmarkProveInclusion100k proves one record of a 100,000-entry log,
// reading lookup shard and tiles from a directory, as a device does.
func BenchmarkProveInclusion100k(b *testing.B) {
	k := newTestKey(b, "shoal.bench/log")
	dir := b.TempDir()
	recs := records(b, "stable", 0, 100000)
	cp := mustAppend(b, dir, k, recs...)
	r := NewReader(fetch.Dir(dir), k.verifiers)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		j := (i * 7919) % len(recs)
		if idx, err := r.ProveInclusion(ctx, cp.Tree, recs[j]); err != nil || idx != int64(j) {
			b.Fatalf("record %d: %d, %v", j, idx, err)
		}
		i++
	}
}

// BenchmarkAudit100k audits a 100,000-entry log from a directory.
func BenchmarkAudit100k(b *testing.B) {
	k := newTestKey(b, "shoal.bench/log")
	dir := b.TempDir()
	mustAppend(b, dir, k, records(b, "stable", 0, 100000)...)
	r := NewReader(fetch.Dir(dir), k.verifiers)
	for b.Loop() {
		if _, err := r.Audit(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
