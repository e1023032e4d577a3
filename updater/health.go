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
	Commands []string `toml:"commands,omitempty"` // shell commands that must exit 0
	HTTP     []string `toml:"http,omitempty"`     // URLs that must answer 2xx
	Units    []string `toml:"units,omitempty"`    // systemd units that must be active
	// Deadline: all checks must pass within this (default 2m), counted in
	// ticks of TickPeriod by the state machine.
	Deadline Duration `toml:"deadline,omitempty"`
	// Interval between attempts while checks fail (default 2s). A check
	// that fails keeps being retried until the deadline, since services
	// take a while to come up after boot.
	Interval Duration `toml:"interval,omitempty"`
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

// Defaults of [health].
const (
	DefaultHealthDeadline = 2 * time.Minute
	DefaultHealthInterval = 2 * time.Second
)

// deadlineTicks is the health deadline in ticks of TickPeriod, rounded up:
// the state machine, not a wall clock, decides when it has passed.
func (h HealthConfig) deadlineTicks() int { return ticksOf(h.Deadline.Duration, DefaultHealthDeadline) }

// intervalTicks is the pause between attempts in ticks, at least one.
func (h HealthConfig) intervalTicks() int { return ticksOf(h.Interval.Duration, DefaultHealthInterval) }

func ticksOf(d, def time.Duration) int {
	if d <= 0 {
		d = def
	}
	return max(1, int((d+TickPeriod-1)/TickPeriod))
}

// CheckHealth runs every configured check once. It returns nil when all
// pass, a *HealthError (wrapping ErrUnhealthy) naming the first that
// fails and why, or the context's error when interrupted, which is no
// verdict on the slot. Retrying until the deadline is BootCheck's job.
func CheckHealth(ctx context.Context, h HealthConfig) error {
	err := healthOnce(ctx, h)
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return &HealthError{Detail: err.Error()}
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
