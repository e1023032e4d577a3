package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/shoalnet/shoal/fleet"
)

// applyAll is the plain-HTTP baseline: every device, in its own
// namespace, runs `shoal update apply --source ORIGIN` at once, so each
// fetches every chunk it lacks from the origin, no node running. It
// returns each device's time from the start to its flip (apply returns
// once the slot is verified and the boot switched), by site, and the
// last; the devices' fetched bytes count as from the origin.
func (r *run) applyAll(ctx context.Context) ([][]float64, float64, error) {
	devs := r.devices()
	secs := make([]float64, len(devs))
	fetched := make([]int64, len(devs))
	r.fetched = fetched
	t0 := time.Now()
	r.sampler = r.startSampler(ctx, t0)
	err := parallel(len(devs), len(devs), func(i int) error {
		secs[i] = -1
		n := devs[i]
		args := []string{"update", "apply", "--config", n.deviceConfig(), "--source", r.repoURL, "--json"}
		cmd := r.command(ctx, n.Namespace, args...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: shoal %s: %w: %s", n.Name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
		}
		var a struct {
			Version uint64 `json:"version"`
			State   string `json:"state"`
			Stats   struct {
				FetchedBytes int64 `json:"fetched_bytes"`
			} `json:"stats"`
		}
		if err := json.Unmarshal(out.Bytes(), &a); err != nil {
			return fmt.Errorf("%s: update apply: %w: %s", n.Name, err, out.String())
		}
		if a.Version != r.version || a.State != "tentative" {
			return fmt.Errorf("%s: update apply ended %s on v%d, want tentative on v%d", n.Name, a.State, a.Version, r.version)
		}
		secs[i], fetched[i] = time.Since(t0).Seconds(), a.Stats.FetchedBytes
		r.progress("%s flipped at %.1f s", n.Name, secs[i])
		return nil
	})
	r.sampler.finish()
	bySite := make([][]float64, len(r.t.Sites))
	last := 0.0
	for i, n := range devs {
		bySite[n.Site-1] = append(bySite[n.Site-1], secs[i])
		last = max(last, secs[i])
	}
	return bySite, last, err
}

// accountHTTP counts the baseline's fetched bytes as from the origin (on
// loopback, also as the sites' uplink bytes and the origin's egress).
func (r *run) accountHTTP(res *fleet.Result) {
	for i, n := range r.devices() {
		b := r.fetched[i]
		res.BytesBySource["origin"] += b
		if r.t.Loopback {
			res.UplinkBytes[n.Site-1] += b
			res.OriginEgressBytes += b
		}
	}
}
