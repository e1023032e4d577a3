package bundle

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

func TestRunOrderedKeepsOrderAndFirstError(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	delays := make([]time.Duration, 200)
	for i := range delays {
		delays[i] = time.Duration(rng.IntN(300)) * time.Microsecond
	}
	work := func(bad map[int]bool) func(context.Context, int) (int, error) {
		return func(ctx context.Context, i int) (int, error) {
			time.Sleep(delays[i]) // finish out of order
			if bad[i] {
				return 0, fmt.Errorf("item %d", i)
			}
			return i * i, nil
		}
	}
	var got []int
	err := runOrdered(ctx, len(delays), 7, work(nil), func(i, v int) error {
		if v != i*i || i != len(got) {
			t.Fatalf("emit %d = %d after %d items", i, v, len(got))
		}
		got = append(got, i)
		return nil
	})
	if err != nil || len(got) != len(delays) {
		t.Fatalf("%d items, %v", len(got), err)
	}

	// Items 150 and 60 fail; 60 comes first in order, whichever finishes
	// first, and nothing after it is emitted.
	emitted := 0
	err = runOrdered(ctx, len(delays), 7, work(map[int]bool{150: true, 60: true}), func(i, v int) error {
		emitted++
		return nil
	})
	if err == nil || err.Error() != "item 60" || emitted != 60 {
		t.Fatalf("err %v after %d emitted", err, emitted)
	}

	stop := errors.New("stop")
	err = runOrdered(ctx, len(delays), 3, work(nil), func(i, v int) error {
		if i == 10 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("emit error: %v", err)
	}

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	err = runOrdered(canceled, 5, 2, func(ctx context.Context, i int) (int, error) { return i, ctx.Err() }, func(int, int) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled: %v", err)
	}
	if err := runOrdered(ctx, 0, 2, work(nil), func(int, int) error { return nil }); err != nil {
		t.Fatalf("no items: %v", err)
	}
}
