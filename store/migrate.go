package store

import (
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
)

// migrateBatch bounds one step of the layout 1 migration: chunks moved per
// badger transaction (each adds a location and deletes the old value), and
// bytes read into memory at once.
const (
	migrateBatch      = 256
	migrateBatchBytes = 16 << 20
)

// migrateV1 moves the chunks of a layout 1 store, kept in badger's value
// log under 'c' keys, into packs. Each step appends a batch of chunks to
// the active pack, syncs it, and then, in one transaction, sets each
// chunk's location and deletes its old value. A crash between steps
// leaves a store that is still layout 1 with fewer old values; Open picks
// up where it stopped (the records appended by the step that did not
// commit are dead space for compaction). Access records keep their format.
// The version becomes 2 when no 'c' key is left. The value-log space of
// the old values returns through later GCs.
func (db *DB) migrateV1() error {
	db.pickActive()
	var moved, bytes int64
	for {
		type old struct {
			key  []byte
			data []byte
		}
		var batch []old
		var size int
		err := db.bdb.View(func(txn *badger.Txn) error {
			return scan(txn, prefixChunkV1, func(item *badger.Item) error {
				if len(batch) == migrateBatch || size >= migrateBatchBytes {
					return errStopScan
				}
				v, err := item.ValueCopy(nil)
				if err != nil {
					return fmt.Errorf("read chunk %x: %w", item.Key()[1:], err)
				}
				batch = append(batch, old{item.KeyCopy(nil), v})
				size += len(v)
				return nil
			})
		})
		if err != nil && !errors.Is(err, errStopScan) {
			return err
		}
		if len(batch) == 0 {
			break
		}
		locs := make([][]byte, len(batch))
		for i, o := range batch {
			p, off, err := db.appendLocked(string(o.key[1:]), o.data)
			if err != nil {
				return err
			}
			locs[i] = encodeLoc(loc{p.num, off, int64(len(o.data))})
		}
		if err := db.syncPack(db.active); err != nil {
			return err
		}
		err = db.bdb.Update(func(txn *badger.Txn) error {
			for i, o := range batch {
				if err := txn.Set(append([]byte{prefixChunk}, o.key[1:]...), locs[i]); err != nil {
					return err
				}
				if err := txn.Delete(o.key); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("commit moved chunks: %w", err)
		}
		moved += int64(len(batch))
		bytes += int64(size)
	}
	if err := db.setVersion(); err != nil {
		return err
	}
	db.log.Info("store: moved chunks from badger's value log to packs (layout 1 to 2)",
		"dir", db.dir, "chunks", moved, "bytes", bytes)
	return nil
}

// errStopScan ends a scan early.
var errStopScan = errors.New("stop scan")
