package exchange

import (
	"context"
	"sync"
	"time"
)

// bucket is a token bucket over bytes: take reserves n bytes at once
// (the balance may go negative, so a block larger than the burst still
// passes) and waits until the balance is back to zero.
type bucket struct {
	mu     sync.Mutex
	rate   float64 // bytes per second
	burst  float64
	tokens float64
	last   time.Time
	now    func() time.Time
}

// newBucket returns a bucket of rate bytes per second, or nil for no cap.
// Its burst is half a second's worth (at least 64 KiB), never more than
// maxBurst: sized by the frame limit instead, a node allowed 16 MiB frames
// would pass a small release at full speed. A block larger than the
// balance still goes through (the balance goes negative and the next
// waits), so the burst need not hold a whole frame.
func newBucket(rate int64, maxBurst int) *bucket {
	if rate <= 0 {
		return nil
	}
	burst := min(float64(maxBurst), max(float64(rate)/2, 64<<10))
	return &bucket{rate: float64(rate), burst: burst, tokens: burst, now: time.Now}
}

// take waits until n bytes may be sent; a nil bucket never waits.
func (b *bucket) take(ctx context.Context, n int) error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	now := b.now()
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	b.tokens -= float64(n)
	wait := time.Duration(0)
	if b.tokens < 0 {
		wait = time.Duration(-b.tokens / b.rate * float64(time.Second))
	}
	b.mu.Unlock()
	if wait == 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
