package manifest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest/tlog"
)

// Limits bound what a client fetches and walks. Every length a client
// reads from outside is capped by one of these or by a length that signed
// metadata gives.
type Limits struct {
	Timestamp     int64 // timestamp.json, which nothing signed bounds
	Root          int64 // each N.root.json
	Metadata      int64 // snapshot/targets when the parent gives no length; upper cap always
	Index         int64 // upper cap on an index's signed length
	RootRotations int   // root versions walked in one verification
}

// DefaultLimits fit a repository with thousands of releases and images of
// several TiB.
var DefaultLimits = Limits{
	Timestamp:     16 << 10,
	Root:          512 << 10,
	Metadata:      32 << 20,
	Index:         256 << 20,
	RootRotations: 32,
}

var defaultLimits = DefaultLimits

func (l *Limits) fill() {
	d := DefaultLimits
	if l.Timestamp <= 0 {
		l.Timestamp = d.Timestamp
	}
	if l.Root <= 0 {
		l.Root = d.Root
	}
	if l.Metadata <= 0 {
		l.Metadata = d.Metadata
	}
	if l.Index <= 0 {
		l.Index = d.Index
	}
	if l.RootRotations <= 0 {
		l.RootRotations = d.RootRotations
	}
}

// Device is what a device knows about itself when it checks a release.
type Device struct {
	ID        string // stable device identity, for rollout decisions
	Channel   string
	Hardware  string // empty: unknown (then only releases for any hardware fit)
	Arch      string
	Installed uint64 // release version running now; 0: none
}

// TargetsWitness is the hook for the transparency log (manifest/tlog): it
// sees every targets metadata a client is about to trust, with the mirror
// it came from, and may demand proof that the log includes it. An error
// rejects the metadata before anything is remembered; one wrapping
// tlog.ErrInconsistent (a forked log) rejects every mirror. [LogWitness]
// is the implementation devices use.
type TargetsWitness interface {
	Witness(ctx context.Context, f fetch.Fetcher, version int64, targets []byte) error
}

// ClientConfig configures a [Client].
type ClientConfig struct {
	// TrustedRoot is the root.json the device was provisioned with.
	TrustedRoot []byte
	// State remembers trusted metadata between runs (root, timestamp,
	// snapshot, targets). Nil: nothing is remembered, so rollback
	// protection covers only the provisioned root. What it holds must
	// load: a remembered file that does not parse, is of the wrong type,
	// or carries a broken signature by a key the root trusts, is an error
	// wrapping ErrBadState (never silently forgotten).
	State StateStore
	// StateDir, if State is nil, sets State to DirState(StateDir). Setting
	// both is an error.
	StateDir string
	// Mirrors serve the repository, for Verify (VerifyFrom takes its own
	// instead, so a client built once can read whatever serves it now).
	// Each is walked from the trusted state; the one with the newest root, then the newest valid
	// timestamp, wins, so one mirror serving stale or broken files cannot
	// hold a device back.
	Mirrors []fetch.Fetcher
	// Now is the clock for expiry; nil means time.Now.
	Now    func() time.Time
	Limits Limits
	// Rollout, if set, decides whether this device takes the release now.
	// It is where manifest/rollout plugs in; an error rejects the release.
	Rollout func(r *Release, d Device) error
	// Witness, if set, checks each targets metadata before it is trusted.
	Witness TargetsWitness
	// VerifyEvery makes the client verify every file a mirror serves
	// instead of reusing a remembered copy the newer metadata pins: a
	// gossip validator must vouch for the exact bytes it relays, or an
	// honest node would pass on a forged file and be penalised for it.
	VerifyEvery bool
}

// Client verifies releases the way a device does before installing.
type Client struct {
	cfg ClientConfig
}

// NewClient checks the configuration and the provisioned root.
func NewClient(cfg ClientConfig) (*Client, error) {
	switch {
	case cfg.State != nil && cfg.StateDir != "":
		return nil, errors.New("manifest: client config sets both State and StateDir")
	case cfg.State == nil:
		cfg.State = StateIn(cfg.StateDir)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Limits.fill()
	if _, err := trustedmetadata.New(cfg.TrustedRoot); err != nil {
		return nil, fmt.Errorf("trusted root: %w", classify("root.json", err))
	}
	return &Client{cfg: cfg}, nil
}

// Verified is a release that passed every check, with its decoded indexes.
type Verified struct {
	Release *Release
	Indexes []*chunker.Index // parallel to Release.Artifacts
	// UpToDate: the release is the one installed; nothing to do.
	UpToDate bool

	RootVersion      int64
	TimestampVersion int64
	SnapshotVersion  int64
	TargetsVersion   int64
	Mirror           int    // index of the mirror whose metadata was used
	Targets          []byte // the verified targets metadata, kept as proof of what was offered

	// indexTargets are the signed target files of the artifacts' indexes,
	// parallel to Release.Artifacts, for FetchIndexes.
	indexTargets []*metadata.TargetFiles
	// deltas are the release's signed delta targets (Delta).
	deltas map[deltaKey]DeltaTarget
}

// State file names in ClientConfig.State.
var stateFiles = struct{ root, timestamp, snapshot, targets string }{
	"root.json", "timestamp.json", "snapshot.json", "targets.json",
}

// trustedState is what the device trusted last time, each file already
// parsed (ts, snap and tgt are nil when not remembered).
type trustedState struct {
	root, timestamp, snapshot, targets []byte

	ts   *metadata.Metadata[metadata.TimestampType]
	snap *metadata.Metadata[metadata.SnapshotType]
	tgt  *metadata.Metadata[metadata.TargetsType]
}

// loadState reads what the device trusted last time. A missing state is
// the provisioned root alone; a state file that cannot be read, does not
// parse as metadata of its role, or (root.json) is not signed by its own
// threshold, is an error naming the file, not a reason to forget it:
// forgetting would let a replayed older release through.
func (c *Client) loadState() (*trustedState, error) {
	st := &trustedState{root: c.cfg.TrustedRoot}
	store := c.cfg.State
	if store == nil {
		return st, nil
	}
	read := func(name string, max int64) ([]byte, error) {
		b, err := store.ReadFile(name, max)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, nil
		case err != nil:
			return nil, fmt.Errorf("%w: %s: %w", ErrBadState, stateName(store, name), err)
		}
		return b, nil
	}
	bad := func(name string, err error) error {
		return fmt.Errorf("%w: %s: %w", ErrBadState, stateName(store, name), err)
	}
	var err error
	rb, err := read(stateFiles.root, c.cfg.Limits.Root)
	if err != nil {
		return nil, err
	}
	if rb != nil {
		stored, err := metadata.Root().FromBytes(rb)
		if err != nil {
			return nil, bad(stateFiles.root, classify("root.json", err))
		}
		prov, _ := metadata.Root().FromBytes(c.cfg.TrustedRoot)
		if stored.Signed.Version >= prov.Signed.Version {
			if _, err := trustedmetadata.New(rb); err != nil {
				return nil, bad(stateFiles.root, classify("root.json", err))
			}
			st.root = rb
		}
	}
	if st.timestamp, err = read(stateFiles.timestamp, c.cfg.Limits.Timestamp); err != nil {
		return nil, err
	}
	if st.timestamp != nil {
		if st.ts, err = parseRole(metadata.Timestamp(), st.timestamp, metadata.TIMESTAMP); err != nil {
			return nil, bad(stateFiles.timestamp, err)
		}
	}
	if st.snapshot, err = read(stateFiles.snapshot, c.cfg.Limits.Metadata); err != nil {
		return nil, err
	}
	if st.snapshot != nil {
		if st.snap, err = parseRole(metadata.Snapshot(), st.snapshot, metadata.SNAPSHOT); err != nil {
			return nil, bad(stateFiles.snapshot, err)
		}
	}
	if st.targets, err = read(stateFiles.targets, c.cfg.Limits.Metadata); err != nil {
		return nil, err
	}
	if st.targets != nil {
		if st.tgt, err = parseRole(metadata.Targets(), st.targets, metadata.TARGETS); err != nil {
			return nil, bad(stateFiles.targets, err)
		}
	}
	// A signature by a key the remembered root trusts that does not
	// verify: the file changed after it was signed.
	root, err := metadata.Root().FromBytes(st.root)
	if err != nil {
		return nil, fmt.Errorf("trusted root: %w", classify("root.json", err))
	}
	broken := func(name, role string) error {
		return bad(name, fmt.Errorf("%w: a signature by a trusted %s key does not verify", ErrThreshold, role))
	}
	switch {
	case st.ts != nil && brokenSignature(root, metadata.TIMESTAMP, st.ts):
		return nil, broken(stateFiles.timestamp, metadata.TIMESTAMP)
	case st.snap != nil && brokenSignature(root, metadata.SNAPSHOT, st.snap):
		return nil, broken(stateFiles.snapshot, metadata.SNAPSHOT)
	case st.tgt != nil && brokenSignature(root, metadata.TARGETS, st.tgt):
		return nil, broken(stateFiles.targets, metadata.TARGETS)
	}
	return st, nil
}

// parseRole parses b as metadata of role, type field included.
func parseRole[T metadata.Roles](p *metadata.Metadata[T], b []byte, role string) (*metadata.Metadata[T], error) {
	md, err := p.FromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadMetadata, err)
	}
	if typ := roleType(md); typ != role {
		return nil, fmt.Errorf("%w: type %q, want %q", ErrBadMetadata, typ, role)
	}
	return md, nil
}

func roleType(md any) string {
	switch m := md.(type) {
	case *metadata.Metadata[metadata.TimestampType]:
		return m.Signed.Type
	case *metadata.Metadata[metadata.SnapshotType]:
		return m.Signed.Type
	case *metadata.Metadata[metadata.TargetsType]:
		return m.Signed.Type
	case *metadata.Metadata[metadata.RootType]:
		return m.Signed.Type
	}
	return ""
}

// brokenSignature reports whether md carries a signature by one of the
// keys root trusts for role that does not verify: its bytes changed after
// they were signed. Signatures by keys the root does not (or no longer)
// trust for the role prove nothing either way: metadata remembered before
// a key rotation, or short of a raised threshold, is stale, not damaged.
func brokenSignature[T metadata.Roles](root *metadata.Metadata[metadata.RootType], role string, md *metadata.Metadata[T]) bool {
	r := root.Signed.Roles[role]
	if r == nil {
		return false
	}
	for _, sig := range md.Signatures {
		if !slices.Contains(r.KeyIDs, sig.KeyID) {
			continue
		}
		probe := &metadata.Metadata[metadata.RootType]{Signed: metadata.RootType{
			Keys:  root.Signed.Keys,
			Roles: map[string]*metadata.Role{role: {KeyIDs: []string{sig.KeyID}, Threshold: 1}},
		}}
		if probe.VerifyDelegate(role, md) != nil {
			return true
		}
	}
	return false
}

// rememberedErr decides what a failure to load remembered metadata
// (name, of role) into tm means. Expired, superseded (a version the new
// timestamp does not pin) and stale (signed by keys the root no longer
// trusts for the role) remembered metadata is legitimate: nil. Anything
// else, a broken signature by a trusted key above all, is damaged state:
// an error wrapping ErrBadState.
func rememberedErr[T metadata.Roles](c *Client, name, role string, tm *trustedmetadata.TrustedMetadata, md *metadata.Metadata[T], err error) error {
	switch {
	case errors.Is(err, &metadata.ErrExpiredMetadata{}), errors.Is(err, &metadata.ErrBadVersionNumber{}):
		return nil
	case errors.Is(err, &metadata.ErrUnsignedMetadata{}) && !brokenSignature(tm.Root, role, md):
		return nil
	}
	return fmt.Errorf("%w: %s: %w", ErrBadState, stateName(c.cfg.State, name), classify(name, err))
}

// saveState remembers a verified chain: root first, timestamp last, each
// file replaced atomically; a file that already holds the bytes is not
// written again.
func (c *Client) saveState(ch *chain) error {
	store := c.cfg.State
	if store == nil {
		return nil
	}
	for _, f := range []struct {
		name string
		data []byte
		max  int64
	}{
		{stateFiles.root, ch.rootBytes, c.cfg.Limits.Root},
		{stateFiles.targets, ch.targets, c.cfg.Limits.Metadata},
		{stateFiles.snapshot, ch.snapshot, c.cfg.Limits.Metadata},
		{stateFiles.timestamp, ch.timestamp, c.cfg.Limits.Timestamp},
	} {
		if old, err := store.ReadFile(f.name, f.max); err == nil && bytes.Equal(old, f.data) {
			continue
		}
		if err := store.WriteFile(f.name, f.data); err != nil {
			return fmt.Errorf("%s: %w", stateName(store, f.name), err)
		}
	}
	return nil
}

// chain is the outcome of walking one mirror's metadata.
type chain struct {
	tm                           *trustedmetadata.TrustedMetadata
	rootBytes                    []byte
	timestamp, snapshot, targets []byte
	mirror                       int
}

// ErrNoMirror: a verification was given no mirror to read.
var ErrNoMirror = errors.New("manifest: no mirror to verify from")

// Verify walks the TUF chain from the trusted state over the configured
// mirrors, remembers the newly trusted metadata, picks the device's
// channel's newest release, checks it against the device, and fetches and
// checks every artifact's index.
func (c *Client) Verify(ctx context.Context, dev Device) (*Verified, error) {
	return c.VerifyFrom(ctx, dev, c.cfg.Mirrors)
}

// VerifyFrom is Verify over the given mirrors instead of the configured
// ones: a long-running device builds its Client once and verifies from
// whatever serves the metadata this time (an origin, a bundle, a peer's
// announcement held in memory). Verifications of one Client must not
// overlap: each reads and then replaces the remembered state.
func (c *Client) VerifyFrom(ctx context.Context, dev Device, mirrors []fetch.Fetcher) (*Verified, error) {
	v, err := c.VerifyMetadata(ctx, dev, mirrors)
	if err != nil {
		return nil, err
	}
	// The mirror whose metadata won first, then the others.
	order := append([]fetch.Fetcher{mirrors[v.Mirror]}, mirrors[:v.Mirror]...)
	order = append(order, mirrors[v.Mirror+1:]...)
	if err := c.FetchIndexes(ctx, v, order...); err != nil {
		return nil, err
	}
	return v, nil
}

// VerifyMetadata is VerifyFrom without the indexes: the TUF chain, the
// remembered state, the release picked and checked against the device.
// It is all a node's gossip validator can check from an announcement,
// which carries the signed metadata but not the (large) indexes;
// FetchIndexes completes the Verified later, from any source.
func (c *Client) VerifyMetadata(ctx context.Context, dev Device, mirrors []fetch.Fetcher) (*Verified, error) {
	if len(mirrors) == 0 {
		return nil, ErrNoMirror
	}
	st, err := c.loadState()
	if err != nil {
		return nil, err
	}
	var best *chain
	var errs []error
	// rootSeen is the newest root any mirror proved, even one whose later
	// metadata failed: once a rotation is verified, chains still on the
	// older root may be signed by keys it revoked.
	var rootSeen int64
	for i, m := range mirrors {
		ch, err := c.walk(ctx, m, st, &rootSeen)
		if err != nil {
			if len(mirrors) > 1 {
				err = fmt.Errorf("mirror %d: %w", i, err)
			}
			if errors.Is(err, tlog.ErrInconsistent) {
				// Two signed checkpoints that fork: the log equivocated,
				// and no other mirror can make that right.
				return nil, err
			}
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		ch.mirror = i
		// A newer root wins first: a mirror that withholds a rotation
		// must not get metadata signed by keys the rotation revoked
		// past a device that has just verified it elsewhere.
		if best == nil || newerChain(ch, best) {
			best = ch
		}
	}
	if best == nil {
		return nil, errors.Join(errs...)
	}
	if v := best.tm.Root.Signed.Version; v < rootSeen {
		errs = append([]error{fmt.Errorf("%w: a mirror proved root version %d, but only chains on root %d verified completely; they may be signed by keys that rotation revoked", ErrRollback, rootSeen, v)}, errs...)
		return nil, errors.Join(errs...)
	}
	if err := c.saveState(best); err != nil {
		return nil, fmt.Errorf("remember trusted metadata: %w", err)
	}
	v := &Verified{
		RootVersion:      best.tm.Root.Signed.Version,
		TimestampVersion: best.tm.Timestamp.Signed.Version,
		SnapshotVersion:  best.tm.Snapshot.Signed.Version,
		TargetsVersion:   best.tm.Targets[metadata.TARGETS].Signed.Version,
		Mirror:           best.mirror,
		Targets:          best.targets,
	}
	targets := best.tm.Targets[metadata.TARGETS]
	r, err := c.pick(targets, dev)
	if err != nil {
		return nil, err
	}
	v.Release = r
	v.UpToDate = r.Version == dev.Installed
	for _, a := range r.Artifacts {
		v.indexTargets = append(v.indexTargets, targets.Signed.Targets[TargetPath(r.Channel, r.Version, a.Name)])
	}
	if v.deltas, err = deltasOf(&targets.Signed, r); err != nil {
		return nil, err
	}
	return v, nil
}

// FetchIndexes fetches every artifact index of a release VerifyMetadata
// verified, from the mirrors in order (an index is pinned by its signed
// length and hashes, so any source will do: an origin, a bundle, a peer),
// checks each against its signed target and the release's fields, and
// fills v.Indexes.
func (c *Client) FetchIndexes(ctx context.Context, v *Verified, mirrors ...fetch.Fetcher) error {
	if len(mirrors) == 0 {
		return ErrNoMirror
	}
	if v == nil || v.Release == nil || len(v.indexTargets) != len(v.Release.Artifacts) {
		return errors.New("manifest: FetchIndexes needs a release verified by this package")
	}
	r := v.Release
	indexes := make([]*chunker.Index, 0, len(r.Artifacts))
	for i, a := range r.Artifacts {
		ix, err := c.fetchIndex(ctx, mirrors, 0, a, v.indexTargets[i])
		if err != nil {
			return fmt.Errorf("release %s/%d artifact %s: %w", r.Channel, r.Version, a.Name, err)
		}
		indexes = append(indexes, ix)
	}
	v.Indexes = indexes
	return nil
}

// newerChain reports whether a should be preferred over b: a newer root,
// then a newer timestamp.
func newerChain(a, b *chain) bool {
	ra, rb := a.tm.Root.Signed.Version, b.tm.Root.Signed.Version
	if ra != rb {
		return ra > rb
	}
	return a.tm.Timestamp.Signed.Version > b.tm.Timestamp.Signed.Version
}

// walk verifies one mirror's metadata: root versions one by one, then
// timestamp, snapshot and targets, each bounded and checked against its
// signed parent and against the trusted state.
func (c *Client) walk(ctx context.Context, f fetch.Fetcher, st *trustedState, rootSeen *int64) (*chain, error) {
	lim := c.cfg.Limits
	tm, err := trustedmetadata.New(st.root)
	if err != nil {
		return nil, fmt.Errorf("trusted root: %w", classify("root.json", err))
	}
	tm.RefTime = c.cfg.Now().UTC()
	start := tm.Root
	ch := &chain{tm: tm, rootBytes: st.root}

	// Root rotation: N+1, N+2, ... each signed by the threshold of the
	// previous root and of itself, until the repository has no next one.
	for range lim.RootRotations {
		next := tm.Root.Signed.Version + 1
		p := metaPath(metadata.ROOT, next)
		b, err := f.Fetch(ctx, p, lim.Root)
		if errors.Is(err, fetch.ErrNotFound) {
			break
		}
		if err != nil {
			return nil, err
		}
		if _, err := tm.UpdateRoot(b); err != nil {
			return nil, classify(p, err)
		}
		*rootSeen = max(*rootSeen, tm.Root.Signed.Version)
		ch.rootBytes = b
	}

	// Fast-forward recovery (TUF 5.3.11): when the timestamp or snapshot
	// keys changed, what they signed before proves nothing now, and a
	// version pushed far ahead by a stolen key must not block the
	// legitimate one.
	localTS, localSnap := st.timestamp, st.snapshot
	if keysChanged(start, tm.Root, metadata.TIMESTAMP) || keysChanged(start, tm.Root, metadata.SNAPSHOT) {
		localTS, localSnap = nil, nil
	}

	// Timestamp. A remembered one that expired still bounds versions; one
	// signed only by keys the root no longer trusts is stale; one that is
	// damaged is an error (rememberedErr).
	if localTS != nil {
		if _, err := tm.UpdateTimestamp(localTS); err != nil {
			if err := rememberedErr(c, stateFiles.timestamp, metadata.TIMESTAMP, tm, st.ts, err); err != nil {
				return nil, err
			}
		}
	}
	tsPath := metaDir + "/" + timestampName
	b, err := f.Fetch(ctx, tsPath, lim.Timestamp)
	if err != nil {
		return nil, err
	}
	ch.timestamp = b
	if _, err := tm.UpdateTimestamp(b); err != nil {
		if !errors.Is(err, &metadata.ErrEqualVersionNumber{}) || tm.Timestamp == nil {
			return nil, classify(tsPath, err)
		}
		// Same version as remembered: keep the remembered bytes. When
		// every served byte must verify, the served file must be that one:
		// two different timestamps of one version are never honest.
		if c.cfg.VerifyEvery && !bytes.Equal(b, localTS) {
			return nil, fmt.Errorf("%s: %w: differs from the trusted timestamp of the same version %d", tsPath, ErrMixAndMatch, tm.Timestamp.Signed.Version)
		}
		ch.timestamp = localTS
		if tm.Timestamp.Signed.IsExpired(tm.RefTime) {
			return nil, classify(tsPath, &metadata.ErrExpiredMetadata{Msg: "timestamp.json is expired"})
		}
	}
	sm := tm.Timestamp.Signed.Meta["snapshot.json"]
	if sm == nil {
		return nil, fmt.Errorf("%s: %w: no snapshot.json entry", tsPath, ErrBadMetadata)
	}

	// Snapshot, consistent: N.snapshot.json with N from the timestamp.
	snapPath := metaPath(metadata.SNAPSHOT, sm.Version)
	if localSnap != nil {
		// The remembered snapshot is reused when it is the one the
		// timestamp pins. One the timestamp supersedes (or expired) stays
		// loaded, so the new one cannot roll back what it lists.
		_, err := tm.UpdateSnapshot(localSnap, true)
		if err == nil && !c.cfg.VerifyEvery {
			ch.snapshot = localSnap
		} else if err != nil {
			if err := rememberedErr(c, stateFiles.snapshot, metadata.SNAPSHOT, tm, st.snap, err); err != nil {
				return nil, err
			}
		}
	}
	if ch.snapshot == nil {
		b, err := f.Fetch(ctx, snapPath, bound(sm.Length, lim.Metadata))
		if err != nil {
			return nil, err
		}
		before := tm.Snapshot
		if _, err := tm.UpdateSnapshot(b, false); err != nil {
			// go-tuf installs the new snapshot before its last check, the
			// version against the timestamp's: if it got that far, the
			// files never belonged together; otherwise a version went down.
			if errors.Is(err, &metadata.ErrBadVersionNumber{}) && tm.Snapshot != before && tm.Snapshot.Signed.Version != sm.Version {
				return nil, fmt.Errorf("%s: %w: version %d, timestamp says %d", snapPath, ErrMixAndMatch, tm.Snapshot.Signed.Version, sm.Version)
			}
			return nil, classify(snapPath, err)
		}
		ch.snapshot = b
	}
	tmeta := tm.Snapshot.Signed.Meta["targets.json"]
	if tmeta == nil {
		return nil, fmt.Errorf("%s: %w: no targets.json entry", snapPath, ErrBadMetadata)
	}

	// Targets. The remembered copy is reused when it is the one the
	// snapshot pins; it must not be damaged either way.
	tPath := metaPath(metadata.TARGETS, tmeta.Version)
	if st.tgt != nil && brokenSignature(tm.Root, metadata.TARGETS, st.tgt) {
		return nil, fmt.Errorf("%w: %s: %w: a signature by a trusted targets key does not verify", ErrBadState, stateName(c.cfg.State, stateFiles.targets), ErrThreshold)
	}
	tb := st.targets
	if tb == nil || len(tmeta.Hashes) == 0 || tmeta.VerifyLengthHashes(tb) != nil || c.cfg.VerifyEvery {
		if tb, err = f.Fetch(ctx, tPath, bound(tmeta.Length, lim.Metadata)); err != nil {
			return nil, err
		}
	}
	if _, err := tm.UpdateTargets(tb); err != nil {
		if errors.Is(err, &metadata.ErrBadVersionNumber{}) {
			return nil, fmt.Errorf("%s: %w: %v", tPath, ErrMixAndMatch, err)
		}
		return nil, classify(tPath, err)
	}
	ch.targets = tb
	if c.cfg.Witness != nil {
		if err := c.cfg.Witness.Witness(ctx, f, tmeta.Version, tb); err != nil {
			return nil, fmt.Errorf("%s: transparency log: %w", tPath, err)
		}
	}
	return ch, nil
}

// bound is the fetch limit for a file whose signed length is n (0: not
// given), never above max.
func bound(n, max int64) int64 {
	if n > 0 && n < max {
		return n
	}
	return max
}

func keysChanged(a, b *metadata.Metadata[metadata.RootType], role string) bool {
	ra, rb := a.Signed.Roles[role], b.Signed.Roles[role]
	if ra == nil || rb == nil {
		return ra != rb
	}
	x := slices.Clone(ra.KeyIDs)
	y := slices.Clone(rb.KeyIDs)
	sort.Strings(x)
	sort.Strings(y)
	return !slices.Equal(x, y)
}

// pick chooses the device's channel's newest release and checks it
// against the device.
func (c *Client) pick(targets *metadata.Metadata[metadata.TargetsType], dev Device) (*Release, error) {
	byChannel, err := releasesIn(&targets.Signed)
	if err != nil {
		return nil, err
	}
	if len(byChannel) == 0 {
		return nil, fmt.Errorf("targets version %d: %w", targets.Signed.Version, ErrNoRelease)
	}
	rs := byChannel[dev.Channel]
	if len(rs) == 0 {
		var chs []string
		for ch := range byChannel {
			chs = append(chs, ch)
		}
		sort.Strings(chs)
		return nil, fmt.Errorf("device channel %q: %w: repository offers %s", dev.Channel, ErrWrongChannel, strings.Join(chs, ", "))
	}
	r := rs[0]
	if err := r.Fits(dev); err != nil {
		return nil, err
	}
	if c.cfg.Rollout != nil {
		if err := c.cfg.Rollout(r, dev); err != nil {
			return nil, fmt.Errorf("release %s/%d: rollout: %w", r.Channel, r.Version, err)
		}
	}
	return r, nil
}

// fetchIndex fetches an artifact's index, from the chosen mirror first and
// then the others (the index is pinned by hash, so any mirror will do),
// and checks it against the signed target and release fields.
func (c *Client) fetchIndex(ctx context.Context, mirrors []fetch.Fetcher, first int, a Artifact, tf *metadata.TargetFiles) (*chunker.Index, error) {
	order := []int{first}
	for i := range mirrors {
		if i != first {
			order = append(order, i)
		}
	}
	var errs []error
	for _, i := range order {
		ix, err := c.fetchIndexFrom(ctx, mirrors[i], a, tf)
		if err == nil {
			return ix, nil
		}
		if len(order) > 1 {
			err = fmt.Errorf("mirror %d: %w", i, err)
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func (c *Client) fetchIndexFrom(ctx context.Context, f fetch.Fetcher, a Artifact, tf *metadata.TargetFiles) (*chunker.Index, error) {
	p := IndexPath(a.Index)
	if tf.Length > c.cfg.Limits.Index {
		return nil, fmt.Errorf("%s: %w: signed length %d exceeds the limit %d", p, ErrTooLarge, tf.Length, c.cfg.Limits.Index)
	}
	b, err := f.Fetch(ctx, p, tf.Length)
	if err != nil {
		return nil, err
	}
	if err := tf.VerifyLengthHashes(b); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", p, ErrIndexHash, err)
	}
	ix, err := chunker.DecodeIndex(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if got := ix.CID(); !got.Equals(a.Index) {
		return nil, fmt.Errorf("%s: %w: content ID is %s", p, ErrIndexHash, got)
	}
	if got := ix.Root(); got != a.Root {
		return nil, fmt.Errorf("%s: %w: index root %s, release says %s", p, ErrMerkleRoot, got, a.Root)
	}
	switch {
	case ix.Size != a.Size:
		return nil, fmt.Errorf("%s: %w: size %d, release says %d", p, ErrIndexMismatch, ix.Size, a.Size)
	case ix.Params != a.Params:
		return nil, fmt.Errorf("%s: %w: chunk params %v, release says %v", p, ErrIndexMismatch, ix.Params, a.Params)
	case ix.Hash != a.Hash:
		return nil, fmt.Errorf("%s: %w: chunk hash %v, release says %v", p, ErrIndexMismatch, ix.Hash, a.Hash)
	case len(ix.Chunks) != a.Chunks:
		return nil, fmt.Errorf("%s: %w: %d chunks, release says %d", p, ErrIndexMismatch, len(ix.Chunks), a.Chunks)
	}
	return ix, nil
}
