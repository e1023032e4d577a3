package updater

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"time"
)

// HealthConfig is the [health] table of the device config: what must hold
// after booting a new release before it is committed.
type HealthConfig struct {
	Commands []string `toml:"commands"` // shell commands that must exit 0
	HTTP     []string `toml:"http"`     // URLs that must answer 2xx
	Units    []string `toml:"units"`    // systemd units that must be active
	Deadline Duration `toml:"deadline"` // all checks must pass within this (default 2m)
	// Interval between attempts while checks fail (default 2s). A check
	// that fails keeps being retried until the deadline, since services
	// take a while to come up after boot.
	Interval Duration `toml:"interval"`
}

// Empty reports whether no check is configured.
func (h HealthConfig) Empty() bool {
	return len(h.Commands) == 0 && len(h.HTTP) == 0 && len(h.Units) == 0
}

// ErrUnhealthy is wrapped by health check failures.
var ErrUnhealthy = errors.New("updater: health check failed")

// HealthError says which check failed and how.
type HealthError struct{ Detail string }

func (e *HealthError) Error() string { return "updater: health check failed: " + e.Detail }
func (e *HealthError) Unwrap() error { return ErrUnhealthy }

// Duration is a time.Duration written as "90s" or "2m" in TOML and JSON.
type Duration struct{ time.Duration }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	if v < 0 {
		return fmt.Errorf("negative duration %q", b)
	}
	d.Duration = v
	return nil
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// RunHealth runs every configured check until all pass or the deadline
// passes. It returns nil when healthy, otherwise an error wrapping
// ErrUnhealthy that names the first check still failing and why.
func RunHealth(ctx context.Context, h HealthConfig) error {
	deadline := h.Deadline.Duration
	if deadline <= 0 {
		deadline = 2 * time.Minute
	}
	interval := h.Interval.Duration
	if interval <= 0 {
		interval = 2 * time.Second
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	var last error
	for {
		last = healthOnce(ctx, h)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			if err := parent.Err(); err != nil {
				// Interrupted (shutdown, Ctrl-C): not a verdict on the slot.
				return err
			}
			return &HealthError{Detail: fmt.Sprintf("%v (still failing after %v)", last, deadline)}
		case <-time.After(interval):
		}
	}
}

func healthOnce(ctx context.Context, h HealthConfig) error {
	for _, c := range h.Commands {
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", c)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.WaitDelay = time.Second
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("command %q: %v%s", c, err, tailOf(out.String()))
		}
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for _, u := range h.HTTP {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return fmt.Errorf("http %q: %v", u, err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("http %q: %v", u, err)
		}
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return fmt.Errorf("http %q: status %s", u, resp.Status)
		}
	}
	for _, unit := range h.Units {
		out, err := exec.CommandContext(ctx, "systemctl", "is-active", unit).CombinedOutput()
		if state := strings.TrimSpace(string(out)); err != nil || state != "active" {
			if state == "" && err != nil {
				state = err.Error()
			}
			return fmt.Errorf("unit %s is %s", unit, state)
		}
	}
	return nil
}

func tailOf(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	if len(s) > 200 {
		s = "..." + s[len(s)-200:]
	}
	return ": " + s
}
