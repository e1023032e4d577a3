package store

import (
	"os"

	badger "github.com/dgraph-io/badger/v4"
)

// rawUpdate is the tests' hook into badger, to damage stored bytes the way
// a failing disk would, below the store's own checks. Chunks still pending
// are committed first, so that the damage is not overwritten by their
// commit.
func (db *DB) rawUpdate(fn func(txn *badger.Txn) error) error {
	db.wmu.Lock()
	defer db.wmu.Unlock()
	if err := db.commitLocked(); err != nil {
		return err
	}
	return db.bdb.Update(fn)
}

// flipByte XORs one byte of the value stored under key. A chunk's bytes
// are in a pack, not in badger: for a chunk key the byte is flipped there,
// through a file of its own, as a failing disk would.
func (db *DB) flipByte(key []byte, off int) error {
	if key[0] == prefixChunk {
		db.mu.Lock()
		e := db.chunks[string(key[1:])]
		db.mu.Unlock()
		if e == nil {
			return os.ErrNotExist
		}
		f, err := os.OpenFile(e.pack.path, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		b := make([]byte, 1)
		if _, err := f.ReadAt(b, e.off+int64(off)); err != nil {
			return err
		}
		b[0] ^= 0x40
		if _, err := f.WriteAt(b, e.off+int64(off)); err != nil {
			return err
		}
		return f.Close()
	}
	return db.rawUpdate(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		v[off] ^= 0x40
		return txn.Set(key, v)
	})
}
