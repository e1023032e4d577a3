package updater

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func dur(d time.Duration) Duration { return Duration{d} }

func TestHealthPasses(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	h := HealthConfig{Commands: []string{"true", "test 1 -eq 1"}, HTTP: []string{srv.URL}, Deadline: dur(5 * time.Second)}
	if err := CheckHealth(context.Background(), h); err != nil {
		t.Fatal(err)
	}
}

func TestHealthFailsWithReason(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	defer srv.Close()
	for name, c := range map[string]struct {
		h    HealthConfig
		want string
	}{
		"command": {HealthConfig{Commands: []string{"echo disk missing >&2; exit 3"}}, "disk missing"},
		"http":    {HealthConfig{HTTP: []string{srv.URL}}, "503"},
		"refused": {HealthConfig{HTTP: []string{"http://127.0.0.1:1/"}}, "refused"},
		"unit":    {HealthConfig{Units: []string{"shoal-no-such-unit.service"}}, "shoal-no-such-unit.service"},
	} {
		err := CheckHealth(context.Background(), c.h)
		if !errors.Is(err, ErrUnhealthy) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want ErrUnhealthy mentioning %q", name, err, c.want)
		}
	}
}

// An interrupted check is no verdict on the slot.
func TestHealthInterrupted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := CheckHealth(ctx, HealthConfig{Commands: []string{"sleep 5"}})
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrUnhealthy) {
		t.Fatalf("got %v, want the context's error and no verdict", err)
	}
}

func TestHealthTicks(t *testing.T) {
	for _, c := range []struct {
		deadline, interval time.Duration
		ticks, every       int
	}{
		{0, 0, 120, 2},
		{300 * time.Millisecond, 50 * time.Millisecond, 1, 1},
		{30 * time.Second, 1500 * time.Millisecond, 30, 2},
	} {
		h := HealthConfig{Deadline: dur(c.deadline), Interval: dur(c.interval)}
		if h.deadlineTicks() != c.ticks || h.intervalTicks() != c.every {
			t.Errorf("%v/%v: %d ticks every %d, want %d every %d", c.deadline, c.interval, h.deadlineTicks(), h.intervalTicks(), c.ticks, c.every)
		}
	}
}
