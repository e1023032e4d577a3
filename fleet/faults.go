package fleet

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// ErrWindow is a fault window that does not parse.
var ErrWindow = errors.New("fleet: bad fault window")

// Window is when a fault strikes: At after the first announcement, for
// For. UntilDone (a powered-off device only) ends it once every other
// device has flipped, however long that takes.
type Window struct {
	At, For   time.Duration
	UntilDone bool
}

// ParseWindow reads AT:FOR ("3s:5s", "2.5s:1m"); with done, FOR may be
// "done": until every other device has flipped.
func ParseWindow(s string, done bool) (Window, error) {
	at, dur, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return Window{}, fmt.Errorf("%w %q: want AT:FOR, e.g. 3s:5s", ErrWindow, s)
	}
	var w Window
	var err error
	if w.At, err = time.ParseDuration(at); err != nil || w.At < 0 {
		return Window{}, fmt.Errorf("%w %q: AT %q is not a duration (3s, 500ms)", ErrWindow, s, at)
	}
	if done && dur == "done" {
		w.UntilDone = true
		return w, nil
	}
	if w.For, err = time.ParseDuration(dur); err != nil || w.For <= 0 {
		want := "a positive duration"
		if done {
			want += " or done"
		}
		return Window{}, fmt.Errorf("%w %q: FOR %q is not %s", ErrWindow, s, dur, want)
	}
	return w, nil
}

// String writes the window back as ParseWindow reads it.
func (w Window) String() string {
	if w.UntilDone {
		return w.At.String() + ":done"
	}
	return w.At.String() + ":" + w.For.String()
}

// Faults are what a run does to the fleet while the release travels
// (docs/fleet.md, "Faults"). The zero value does nothing.
type Faults struct {
	// Cut takes site 1's uplink down (both directions) for a while.
	Cut *Window
	// Kill is the fraction of site 1's devices whose nodes are killed
	// (SIGKILL) once they have fetched a third of the new chunks, and
	// restarted KillRestart later.
	Kill float64
	// PowerOff cuts the last device of the last site: its node is killed,
	// its virtual device power-cycled and its node started again after
	// For (or once every other device has flipped).
	PowerOff *Window
}

// KillRestart is how long a killed node stays down.
const KillRestart = 2 * time.Second

// Any tells whether any fault is asked for.
func (f Faults) Any() bool { return f.Cut != nil || f.Kill > 0 || f.PowerOff != nil }

// Baselines are the distributions a run can use instead of the swarm:
// "http" has every device fetch the whole release from the origin with
// `shoal update apply --source URL`, no node running.
const BaselineHTTP = "http"

// checkFaults refuses faults the fleet cannot stage.
func (c Config) checkFaults() error {
	f := c.Faults
	switch {
	case c.Baseline != "" && c.Baseline != BaselineHTTP:
		return fmt.Errorf("%w: --baseline %q (http)", ErrConfig, c.Baseline)
	case c.Baseline != "" && (f.Any() || c.CacheNode):
		return fmt.Errorf("%w: --baseline runs no nodes: no faults, no cache node", ErrConfig)
	case f.Cut != nil && c.Loopback:
		return fmt.Errorf("%w: --cut-uplink: --loopback has no uplink to cut", ErrConfig)
	case f.Kill < 0 || f.Kill > 1 || math.IsNaN(f.Kill):
		return fmt.Errorf("%w: --kill %g (a fraction of a site's devices, in (0, 1])", ErrConfig, f.Kill)
	case f.PowerOff != nil && c.Devices < 2:
		return fmt.Errorf("%w: --power-off: the device needs a LAN peer to catch up from (--devices 2 at least)", ErrConfig)
	}
	if f.Kill > 0 {
		if n := killCount(f.Kill, c.Devices); f.PowerOff != nil && c.Sites == 1 && n >= c.Devices {
			return fmt.Errorf("%w: --kill %g and --power-off need %d devices at site 1, it has %d", ErrConfig, f.Kill, n+1, c.Devices)
		}
	}
	return nil
}

// killCount is how many of m devices a kill fraction f takes: f × m
// rounded up, at least one.
func killCount(f float64, m int) int {
	return max(1, int(math.Ceil(f*float64(m)-1e-9)))
}

// PowerOffNode is the device a power-off takes: the last device of the
// last site.
func (t *Topology) PowerOffNode() (Node, bool) {
	if t.Faults.PowerOff == nil {
		return Node{}, false
	}
	d := t.Sites[len(t.Sites)-1].Devices()
	return d[len(d)-1], true
}

// KillVictims are the devices a kill takes: ⌈fraction × M⌉ of site 1's,
// from its second device on, its first (the site's seed) last, never the
// powered-off device.
func (t *Topology) KillVictims() []Node {
	if t.Faults.Kill <= 0 {
		return nil
	}
	off, _ := t.PowerOffNode()
	devs := t.Sites[0].Devices()
	order := append(append([]Node{}, devs[1:]...), devs[0])
	var v []Node
	for _, n := range order {
		if len(v) < killCount(t.Faults.Kill, t.Devices) && n.Name != off.Name {
			v = append(v, n)
		}
	}
	return v
}

// CutCommands returns the commands that cut site k's uplink (down) or
// restore it: a blackhole route for everything leaving the site in its
// router and for the site's LAN in the WAN, so both directions drop
// silently while the link stays up, as when a line fails beyond the
// router. Restoring puts the plan's routes back.
func (t *Topology) CutCommands(k int, down bool) [][]string {
	if t.Loopback {
		return nil
	}
	s := t.Sites[k-1]
	if down {
		return [][]string{
			{"ip", "-n", s.Router, "route", "replace", "blackhole", "default"},
			{"ip", "-n", t.WAN, "route", "replace", "blackhole", s.Prefix},
		}
	}
	return [][]string{
		{"ip", "-n", s.Router, "route", "replace", "default", "via", s.WANIP},
		{"ip", "-n", t.WAN, "route", "replace", s.Prefix, "via", s.UplinkIP},
	}
}
