package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/manifest/tlog"
	"github.com/shoalnet/shoal/swarm"
	"github.com/shoalnet/shoal/swarm/announce"
)

// Verdict is what the validator concluded about one announcement, for the
// node's loop and its metrics.
type Verdict struct {
	From     peer.ID
	Result   swarm.ValidationResult
	Verified *manifest.Verified // set when Result is Accept
	Err      error              // why, when not accepted
	// Channel and Data are the topic's channel and the announcement's
	// bytes, which the node keeps to pick an interrupted install up again
	// after a restart.
	Channel string
	Data    []byte
}

// validator checks release announcements of one fleet channel before
// gossipsub delivers or relays them: the strict decoder, then the full
// verification a device runs (TUF chain from the node's trusted state,
// expiry, rollback, channel, hardware, architecture, rollout through the
// client's Rollout, the transparency log when the client's witness
// requires it, from the log slice the announcement carries), and the log
// slice's shape whether the log is required or not. It has its own manifest.Client with its own remembered
// state: gossipsub runs validators concurrently, and a device's audit log
// must not grow with every junk message.
type validator struct {
	fleet, channel string
	client         *manifest.Client
	self           func() manifest.Device
	log            *slog.Logger

	// A Client's verifications must not overlap: each reads and then
	// replaces the remembered state.
	mu sync.Mutex
	// accepted receives each accepted announcement's verification.
	accepted func(Verdict)

	// verdicts counts the validator's results, indexed by
	// swarm.ValidationResult (Accept, Reject, Ignore).
	verdicts [3]atomic.Int64
}

// counts is how many announcements the validator accepted, rejected and
// ignored since it started.
func (v *validator) counts() (accepted, rejected, ignored int64) {
	return v.verdicts[swarm.Accept].Load(), v.verdicts[swarm.Reject].Load(), v.verdicts[swarm.Ignore].Load()
}

// newValidator builds the validator of fleet's channel from the node's
// trust (its root, log witness and own remembered state). rollout, if
// set, is the device's rollout check.
func newValidator(fleet, channel string, trust *manifest.Trust, now func() time.Time, self func() manifest.Device,
	rollout func(*manifest.Release, manifest.Device) error, log *slog.Logger, accepted func(Verdict)) (*validator, error) {
	cfg := trust.ClientConfig()
	cfg.VerifyEvery = true // it vouches for the bytes it relays
	cfg.Now, cfg.Rollout = now, rollout
	c, err := manifest.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	return &validator{fleet: fleet, channel: channel, client: c, self: self, log: log, accepted: accepted}, nil
}

// Validate implements swarm.Validator. Malformed, forged or foreign
// announcements are rejected (the sender is penalised); stale, replayed or
// valid-but-not-for-us ones are ignored (an honest peer may be behind), and
// so are those whose log only a node that requires it can fault
// (logFailure).
func (v *validator) Validate(ctx context.Context, from peer.ID, data []byte) swarm.ValidationResult {
	verdict := v.check(ctx, from, data)
	if r := verdict.Result; r >= 0 && int(r) < len(v.verdicts) {
		v.verdicts[r].Add(1)
	}
	switch verdict.Result {
	case swarm.Accept:
		if v.accepted != nil {
			v.accepted(verdict)
		}
	default:
		v.log.Info("announcement dropped", "from", from, "channel", v.channel, "result", verdict.Result.String(), "reason", verdict.Err)
	}
	return verdict.Result
}

func (v *validator) check(ctx context.Context, from peer.ID, data []byte) Verdict {
	out := Verdict{From: from, Result: swarm.Reject}
	a, err := announce.Decode(data)
	if err != nil {
		out.Err = err
		return out
	}
	if a.Fleet != v.fleet || a.Channel != v.channel {
		out.Err = fmt.Errorf("announcement for %s/%s on the topic of %s/%s", a.Fleet, a.Channel, v.fleet, v.channel)
		return out
	}
	v.mu.Lock()
	verified, err := v.client.VerifyMetadata(ctx, v.self(), []fetch.Fetcher{a.Fetcher()})
	v.mu.Unlock()
	if err != nil {
		out.Err = err
		out.Result = classify(err)
		if isLogFailure(err) {
			out.Result, out.Err = logFailure(ctx, a, err)
		}
		return out
	}
	// The node vouches for the log files it relays too, whether it
	// requires the log or not.
	if err := a.CheckLog(ctx, verified.TargetsVersion, verified.Targets); err != nil {
		out.Err = err
		return out
	}
	out.Result, out.Verified = swarm.Accept, verified
	out.Channel, out.Data = v.channel, data
	return out
}

// isLogFailure tells whether a verification failed at the transparency
// log (a node that requires it: manifest.LogWitness), after the TUF chain
// up to the targets had held.
func isLogFailure(err error) bool {
	return errors.Is(err, tlog.ErrNotFound) || errors.Is(err, tlog.ErrBadCheckpoint) ||
		errors.Is(err, tlog.ErrInconsistent) || errors.Is(err, tlog.ErrCorrupt)
}

// logFailure judges an announcement whose signed metadata verified but
// whose log did not prove the targets, for a node that requires the log.
// Log files that are not the slice of those targets are rejected: every
// node checks that much (Announcement.CheckLog) before it relays, so an
// honest peer never sends them. What only a node holding the log key and
// its remembered checkpoint can see is ignored, since a peer that does
// not require the log relays it in good faith: no log files at all (a
// stripped announcement, or one from a node that collects none), a
// checkpoint not signed by a trusted key, a log that forked from the one
// this node remembered. The error says which.
func logFailure(ctx context.Context, a *announce.Announcement, err error) (swarm.ValidationResult, error) {
	if !a.HasLog() {
		return swarm.Ignore, fmt.Errorf("the announcement carries no transparency-log files, and this node requires the log: %w", err)
	}
	if version, targets, ok := a.Targets(); ok {
		if lerr := a.CheckLog(ctx, version, targets); lerr != nil {
			return swarm.Reject, lerr
		}
	}
	return swarm.Ignore, err
}

// classify maps a verification failure to what gossipsub does with the
// message: Reject for what no honest publisher sends (bad signatures,
// malformed or mismatched metadata, damaged limits), Ignore for what an
// honest but late or differently-targeted peer may relay (older versions,
// expired metadata, a release for other hardware or not in our rollout),
// and for failures of our own (interrupted, damaged local state).
func classify(err error) swarm.ValidationResult {
	switch {
	case errors.Is(err, manifest.ErrBadState), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return swarm.Ignore
	case errors.Is(err, manifest.ErrThreshold), errors.Is(err, manifest.ErrBadMetadata),
		errors.Is(err, manifest.ErrMixAndMatch), errors.Is(err, manifest.ErrTooLarge),
		errors.Is(err, fetch.ErrNotFound):
		return swarm.Reject
	}
	return swarm.Ignore
}
