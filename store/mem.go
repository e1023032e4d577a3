package store

import (
	"context"
	"sync"

	"github.com/ipfs/go-cid"
)

// Mem is an in-memory chunk store: the twin of [DB] for tests, the
// simulator and short-lived tools. The zero value is not usable; call
// [NewMem].
type Mem struct {
	mu     sync.RWMutex
	chunks map[cid.Cid][]byte
	bytes  int64
}

var (
	_ Source     = (*Mem)(nil)
	_ ReadWriter = (*Mem)(nil)
)

// NewMem returns an empty in-memory store.
func NewMem() *Mem { return &Mem{chunks: make(map[cid.Cid][]byte)} }

// Put stores a copy of data under id after checking that it hashes to id.
func (m *Mem) Put(ctx context.Context, id cid.Cid, data []byte) error {
	if err := ctxErr(ctx, "put", id); err != nil {
		return err
	}
	if err := checkPut(id, data); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.chunks[id]; !ok {
		m.chunks[id] = append([]byte(nil), data...)
		m.bytes += int64(len(data))
	}
	return nil
}

// Get returns a copy of the chunk.
func (m *Mem) Get(ctx context.Context, id cid.Cid) ([]byte, error) {
	if err := ctxErr(ctx, "get", id); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	b, ok := m.chunks[id]
	if !ok {
		return nil, notFound(id)
	}
	return append([]byte(nil), b...), nil
}

// Has reports whether the chunk is held.
func (m *Mem) Has(ctx context.Context, id cid.Cid) (bool, error) {
	if err := ctxErr(ctx, "has", id); err != nil {
		return false, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, ok := m.chunks[id]
	return ok, nil
}

// Delete removes the chunk; deleting an absent chunk is not an error.
func (m *Mem) Delete(ctx context.Context, id cid.Cid) error {
	if err := ctxErr(ctx, "delete", id); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if b, ok := m.chunks[id]; ok {
		m.bytes -= int64(len(b))
		delete(m.chunks, id)
	}
	return nil
}

// Len returns the number of chunks and their total size in bytes.
func (m *Mem) Len() (chunks int, bytes int64) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.chunks), m.bytes
}
