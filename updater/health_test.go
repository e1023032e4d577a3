package updater

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func dur(d time.Duration) Duration { return Duration{d} }

func TestHealthPasses(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	h := HealthConfig{Commands: []string{"true", "test 1 -eq 1"}, HTTP: []string{srv.URL}, Deadline: dur(5 * time.Second)}
	if err := RunHealth(context.Background(), h); err != nil {
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
		c.h.Deadline, c.h.Interval = dur(300*time.Millisecond), dur(50*time.Millisecond)
		err := RunHealth(context.Background(), c.h)
		if !errors.Is(err, ErrUnhealthy) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want ErrUnhealthy mentioning %q", name, err, c.want)
		}
	}
}

// A check that starts failing and recovers before the deadline passes.
func TestHealthRetriesUntilDeadline(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "ready")
	go func() {
		time.Sleep(200 * time.Millisecond)
		os.WriteFile(flag, nil, 0o644)
	}()
	h := HealthConfig{Commands: []string{"test -e " + flag}, Deadline: dur(10 * time.Second), Interval: dur(50 * time.Millisecond)}
	if err := RunHealth(context.Background(), h); err != nil {
		t.Fatal(err)
	}
}
