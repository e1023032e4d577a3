package fetch

import (
	"context"
	"fmt"
)

// Mem is a repository held in memory, path to content: the signed
// metadata a gossip announcement carried, say. Missing paths are
// ErrNotFound. Fetch returns a copy; the map must not change while in use.
type Mem map[string][]byte

// Fetch implements Fetcher.
func (m Mem) Fetch(ctx context.Context, p string, maxBytes int64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := CheckPath(p); err != nil {
		return nil, err
	}
	b, ok := m[p]
	if !ok {
		return nil, fmt.Errorf("%s: %w", p, ErrNotFound)
	}
	if int64(len(b)) > maxBytes {
		return nil, fmt.Errorf("%s: %w: %d bytes, at most %d", p, ErrTooLarge, len(b), maxBytes)
	}
	return append([]byte(nil), b...), nil
}
