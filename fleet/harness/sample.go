package harness

import (
	"context"
	"sync"
	"time"

	"github.com/shoalnet/shoal/fleet"
)

// sampler reads each site's uplink (what entered the site) about every
// second, on a goroutine of its own, from the announcement to the last
// flip: the uplink's rate over time shows where it idled.
type sampler struct {
	stop chan struct{}
	done chan struct{}
	once sync.Once
	t0   time.Time
	// rates is, per site, the bytes per second over each interval;
	// ends the intervals' ends in seconds from t0.
	rates [][]int64
	ends  []float64
}

// startSampler starts reading; nil on loopback (no interfaces).
func (r *run) startSampler(ctx context.Context, t0 time.Time) *sampler {
	if r.t.Loopback {
		return nil
	}
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{}), t0: t0, rates: make([][]int64, len(r.t.Sites))}
	read := func() ([]int64, time.Time, bool) {
		rx := make([]int64, len(r.t.Sites))
		for i, site := range r.t.Sites {
			v, _, err := counters(context.WithoutCancel(ctx), site.Router, fleet.IfUplink)
			if err != nil {
				return nil, time.Time{}, false
			}
			rx[i] = v
		}
		return rx, time.Now(), true
	}
	go func() {
		defer close(s.done)
		last, at, ok := read()
		if !ok {
			return
		}
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for stopping := false; !stopping; {
			select {
			case <-s.stop:
				stopping = true
			case <-tick.C:
			}
			rx, now, ok := read()
			if !ok {
				return
			}
			if dt := now.Sub(at).Seconds(); dt > 0 {
				for i := range rx {
					s.rates[i] = append(s.rates[i], int64(float64(rx[i]-last[i])/dt))
				}
				s.ends = append(s.ends, now.Sub(s.t0).Seconds())
			}
			last, at = rx, now
		}
	}()
	return s
}

// finish stops the sampler (once) and returns what it read.
func (s *sampler) finish() ([][]int64, []float64) {
	if s == nil {
		return nil, nil
	}
	s.once.Do(func() { close(s.stop) })
	<-s.done
	return s.rates, s.ends
}
