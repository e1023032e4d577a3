package bundle

import (
	"context"
	"errors"
	"sync"
)

// runOrdered calls work for items 0..n-1 with up to workers running at
// once and hands each result to emit in item order, so a caller can
// fetch or decode in parallel yet write a deterministic file and report
// the first failing item in order. At most 4*workers results wait for
// emit, which bounds memory. The first error (from work, in item order,
// or from emit) stops the run and is returned.
func runOrdered[T any](ctx context.Context, n, workers int, work func(ctx context.Context, i int) (T, error), emit func(i int, v T) error) error {
	if workers < 1 {
		workers = 1
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		v   T
		err error
	}
	queue := make(chan chan result, 4*workers)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(queue)
		sem := make(chan struct{}, workers)
		for i := range n {
			c := make(chan result, 1)
			select {
			case queue <- c:
			case <-ctx.Done():
				return
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				c <- result{err: ctx.Err()}
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				v, err := work(ctx, i)
				c <- result{v, err}
			}()
		}
	}()
	var err error
	i := 0
	for c := range queue {
		r := <-c
		if r.err != nil {
			err = r.err
			break
		}
		if err = emit(i, r.v); err != nil {
			break
		}
		i++
	}
	cancel()
	for range queue { // let the producer see the cancellation and stop
	}
	wg.Wait()
	if err == nil && i < n {
		if err = parent.Err(); err == nil {
			err = errors.New("bundle: internal error: run stopped early")
		}
	}
	return err
}
