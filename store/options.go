package store

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// Option configures [Open].
type Option func(*config) error

type config struct {
	limit  int64 // cache limit in bytes; 0 means unbounded
	logger *slog.Logger
}

// WithCacheLimit turns on cache mode: the total size of stored chunks stays
// at or below limit bytes by evicting the least recently used chunks that
// no pinned index references. limit must be positive.
func WithCacheLimit(limit int64) Option {
	return func(c *config) error {
		if limit <= 0 {
			return fmt.Errorf("store: cache limit must be positive, got %d", limit)
		}
		c.limit = limit
		return nil
	}
}

// WithLogger sends the store's and badger's log messages to l. Without it,
// both are silent: badger's default logger writes every compaction to
// stderr, which is noise in a CLI and a daemon alike.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("store: WithLogger: nil logger")
		}
		c.logger = l
		return nil
	}
}

// Badger settings for devices with little RAM. Chunk bytes are not in
// badger at all (they live in pack files, read with pread: see pack.go), so
// the LSM tree holds only keys, chunk locations and small records, the
// value log only indexes, and badger's memory needs are small:
//
//   - memTableSize 4 MiB, numMemtables 2: badger allocates each memtable's
//     arena (about 5.2 MiB with batch headroom) in full, so this caps
//     memtables at about 10.5 MiB instead of the 5 x 64 MiB default.
//   - blockCacheSize 0 with compression off: the tree is tiny and reads hit
//     the OS page cache; badger needs a block cache only to avoid repeated
//     decompression, which we do not do. (Default: 256 MiB.)
//   - indexCacheSize 0: table indexes and bloom filters stay in memory; for
//     a few thousand chunks that is a few kilobytes.
//   - valueThreshold 1 KiB: indexes go to the value log; locations and
//     access records (16 bytes) and pins stay in the tree.
//   - valueLogFileSize 64 MiB: value-log GC frees space a file at a time, so
//     small files return space sooner on a small disk. It also bounds the
//     largest value: an index of about 1.8 million chunks.
//   - two compactors and two goroutines: the machines have two cores.
//   - conflict detection off: the store serializes its own writes.
const (
	memTableSize     = 4 << 20
	numMemtables     = 2
	valueThreshold   = 1 << 10
	valueLogFileSize = 64 << 20
	numCompactors    = 2
	numGoroutines    = 2
)

func badgerOptions(dir string, c config) badger.Options {
	o := badger.DefaultOptions(dir).
		WithMemTableSize(memTableSize).
		WithNumMemtables(numMemtables).
		WithBlockCacheSize(0).
		WithIndexCacheSize(0).
		WithCompression(options.None).
		WithValueThreshold(valueThreshold).
		WithValueLogFileSize(valueLogFileSize).
		WithNumCompactors(numCompactors).
		WithNumGoroutines(numGoroutines).
		WithDetectConflicts(false).
		WithMetricsEnabled(false).
		WithLogger(nil)
	if c.logger != nil {
		o = o.WithLogger(badgerLogger{c.logger.With("component", "badger")})
	}
	return o
}

// badgerLogger adapts slog to badger's printf-style logger.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) log(level slog.Level, format string, args []any) {
	if !b.l.Enabled(context.Background(), level) {
		return
	}
	b.l.Log(context.Background(), level, strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func (b badgerLogger) Errorf(f string, a ...any)   { b.log(slog.LevelError, f, a) }
func (b badgerLogger) Warningf(f string, a ...any) { b.log(slog.LevelWarn, f, a) }
func (b badgerLogger) Infof(f string, a ...any)    { b.log(slog.LevelInfo, f, a) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.log(slog.LevelDebug, f, a) }
