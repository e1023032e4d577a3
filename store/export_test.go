package store

import badger "github.com/dgraph-io/badger/v4"

// rawUpdate is the tests' hook into badger, to damage stored bytes the way
// a failing disk would, below the store's own checks.
func (db *DB) rawUpdate(fn func(txn *badger.Txn) error) error { return db.bdb.Update(fn) }

// flipByte XORs one byte of the value stored under key.
func (db *DB) flipByte(key []byte, off int) error {
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
