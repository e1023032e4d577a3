package sim

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/shoalnet/shoal/sim/flow"
	"github.com/shoalnet/shoal/sim/scenario"
	"github.com/shoalnet/shoal/swarm/sched"
)

// device is one simulated node.
type device struct {
	id             string
	site           int32
	up, down       flow.LinkID
	upCap, downCap float64
	hasBase        bool
	start          int64 // when it hears the announcement
	install        int64 // from holding the release to running it

	have []uint64 // pieces it holds
	held int

	sess       *sched.Session
	rng        *rand.Rand // the scheduler's seed stream, one draw per session
	gen        uint32     // bumped when it goes offline: stale events are dropped
	started    bool
	done       bool
	asleep     bool
	off        bool // power cut
	originRest bool // the origin delay after a session starts
	dirty      bool

	wan      []int32 // WAN peers
	dropped  []int32 // peers the current session dropped
	reqs     []int32 // its outstanding requests
	npeer    int     // of them, to peers
	in, out  []int32 // connections it receives on, sends on
	inSrc    []int32 // the source of each of in (a scan reads no connection)
	pending  []int32 // pieces its WAN peers have not heard of
	inFlush  bool
	need     int64 // bytes it must receive
	got      int64
	cutAt    int64 // the power cut comes once got reaches it (-1: none)
	churn    *rand.Rand
	complete int64
	row      DeviceRow
}

func (d *device) online() bool     { return !d.asleep && !d.off }
func (d *device) has(p int32) bool { return d.have[p>>6]&(1<<(p&63)) != 0 }

// wants: it fetches the release now (its peers' PeerWants).
func (d *device) wants() bool { return d.sess != nil }

// Request states.
const (
	reqTravel   uint8 = iota // on its way to the source
	reqQueued                // in a connection's queue (its head is being sent)
	reqInflight              // sent, on its way back
	reqDead                  // given up; freed when its pending event fires
	reqFree
)

type req struct {
	dst, src int32 // src -1: the origin
	piece    int32
	conn     int32
	gen      uint32
	state    uint8
	class    sched.Class
	nak      bool  // answered dont-have
	at       int32 // its position in its device's reqs while listed
	bytes    float64
}

// conn is a connection from a source to a device: it sends the blocks
// asked of it one after the other, as a real stream does, so one flow
// carries them and its rate changes only when the connection starts,
// stops or something around it changes.
type conn struct {
	src, dst int32
	class    sched.Class
	queue    []int32
	head     int
	flow     flow.FlowID
	live     bool
}

type engine struct {
	ctx      context.Context
	sc       *scenario.Scenario
	seed     int64
	hasBase  float64
	cfg      sched.Config
	window   int // cfg.Window with the default filled in
	tick     int64
	limit    int64
	lat      [3]int64
	progress func(completed, devices int)

	now    int64
	seq    uint64
	events eventHeap
	nev    int64

	net        *flow.Network
	originLink flow.LinkID
	wanLink    flow.LinkID
	rel        *release
	sites      []site
	devs       []device
	originUp   bool

	reqs      []req
	freeReqs  []int32
	conns     []conn
	freeConns []int32
	flowConn  []int32
	batches   [][]int32
	freeBatch []int32
	flushList []int32
	dirty     []int32
	pathBuf   []flow.LinkID
	bitmap    []byte

	completed int
	res       *Result
	lanBytes  int64
	wanBytes  int64
	uplinkSum int64
}

// OriginDelay is how long a session waits before it asks the origin
// anything: swarm/exchange's Download waits 3 ticks by default, so that
// the haves of peers already connected arrive first, and a device ticks
// every 100 ms. It is simulated time whatever the run's tick: a tick
// coarsened for speed must not keep the origin away longer than a
// device does.
const OriginDelay = 300 * time.Millisecond

// Device timing: swarm/exchange ticks every 100 ms and the scheduler's
// defaults give a peer 20 ticks without a block before a request stalls
// and a LAN wanter 40 ticks without a new piece before it is left out of
// the split.
const (
	deviceTick       = 100 * time.Millisecond
	deviceStall      = 20
	deviceShareStall = 40
)

// wanFlush is how often a node tells its WAN peers what it gained (one
// have per index), as swarm/exchange does.
const wanFlush = int64(time.Second)

// Run simulates one run of a scenario and returns what it measured. It is
// single-threaded and deterministic: the same run gives the same Result,
// but for WallSeconds and EventsPerSecond. progress, if not nil, hears
// how many devices have completed now and then. It returns an error
// wrapping ErrInvalid for a scenario it cannot run, and ctx's error if ctx
// ends first.
func Run(ctx context.Context, run scenario.Run, progress func(completed, devices int)) (*Result, error) {
	if run.Scenario == nil {
		return nil, fmt.Errorf("%w: no scenario", ErrInvalid)
	}
	wall := time.Now()
	e, err := newEngine(ctx, run)
	if err != nil {
		return nil, err
	}
	e.progress = progress
	if err := e.loop(); err != nil {
		return nil, err
	}
	r := e.result()
	r.WallSeconds = time.Since(wall).Seconds()
	if r.WallSeconds > 0 {
		r.EventsPerSecond = float64(r.Events) / r.WallSeconds
	}
	return r, nil
}

func newEngine(ctx context.Context, run scenario.Run) (*engine, error) {
	sc := run.Scenario
	e := &engine{ctx: ctx, sc: sc, seed: run.Seed, originUp: true, res: &Result{Seed: run.Seed}}
	e.hasBase = sc.Initial.HasBase
	if !(e.hasBase >= 0 && e.hasBase <= 1) {
		return nil, fmt.Errorf("%w: has-base fraction %v", ErrInvalid, e.hasBase)
	}
	e.limit = int64(sc.Limit)
	if e.limit == 0 {
		e.limit = int64(24 * time.Hour)
	}
	if e.limit < 0 || sc.SampleEvery < 0 || sc.Strategy.Tick < 0 {
		return nil, fmt.Errorf("%w: a negative limit, sample period or tick", ErrInvalid)
	}
	var err error
	if e.rel, err = buildRelease(sc, run.Seed); err != nil {
		return nil, err
	}
	if len(e.rel.full) > sched.MaxPieces {
		return nil, fmt.Errorf("%w: %d pieces", ErrInvalid, len(e.rel.full))
	}
	if err := e.config(); err != nil {
		return nil, err
	}
	if err := e.build(); err != nil {
		return nil, err
	}
	return e, e.setup()
}

// config maps the scenario's strategy onto the scheduler's Config.
func (e *engine) config() error {
	st := e.sc.Strategy
	e.tick = int64(st.Tick)
	if e.tick == 0 {
		e.tick = int64(100 * time.Millisecond)
	}
	var strat sched.Strategy
	switch st.Rarity {
	case "", "rarest":
		strat = sched.RarestFirst
	case "random":
		strat = sched.Random
	default:
		return fmt.Errorf("%w: rarity %q", ErrInvalid, st.Rarity)
	}
	// A device declares a stall after 2 s without a block (20 ticks of
	// 100 ms), blocks being chunks of about 64 KiB. A piece larger than
	// that arrives here as one block, so the wait grows with the piece.
	perPiece := max(1, float64(e.rel.totalFull)/float64(len(e.rel.full))/(64<<10))
	e.cfg = sched.Config{
		Window:           st.Window,
		OriginWindow:     st.OriginWindow,
		SiteOriginWindow: st.SiteOriginWindow,
		NoEndgame:        !st.Endgame,
		StallTicks:       ticksFor(deviceStall, perPiece, e.tick),
		ShareStallTicks:  ticksFor(deviceShareStall, perPiece, e.tick),
		NoSplit:          !st.Split,
		OriginFirst:      st.OriginFirst,
		Strategy:         strat,
	}
	s, err := sched.New(e.cfg, "check", 1, rand.New(rand.NewPCG(0, 0)))
	if err != nil {
		return fmt.Errorf("%w: strategy: %w", ErrInvalid, err)
	}
	e.window = s.Config().Window
	return nil
}

// ticksFor converts a device's threshold of n ticks of 100 ms (n × scale
// for pieces of scale chunks) into ticks of tick ns. A threshold counts
// ticks from the one in which a request was issued (or the last progress),
// so on a device it fires after between n-1 and n ticks: never before
// (n-1) × 100 ms. In ticks of T it fires after between k-1 and k of them;
// k is the least with (k-1)·T at least that, so a coarse tick makes
// detection coarser, never earlier than on a device (an early stall makes a
// session forget what a slow peer holds, and an early exclusion re-divides
// the split).
func ticksFor(n int, scale float64, tick int64) int {
	least := (float64(n)*scale - 1) * float64(deviceTick)
	return max(1, int(math.Ceil(least/float64(tick)-1e-9))+1)
}

// setup gives every device what it holds at the start and schedules the
// run's first events.
func (e *engine) setup() error {
	n := len(e.rel.full)
	words := (n + 63) / 64
	e.bitmap = make([]byte, (n+7)/8)
	sc := e.sc
	churn := !sc.Churn.Awake.IsZero()
	if !(sc.Churn.PowerCut >= 0 && sc.Churn.PowerCut <= 1) {
		return fmt.Errorf("%w: power-cut probability %v", ErrInvalid, sc.Churn.PowerCut)
	}
	for i := range e.devs {
		d := &e.devs[i]
		d.have = make([]uint64, words)
		cost := e.rel.full
		if d.hasBase {
			cost = e.rel.fresh
		}
		for p, b := range cost {
			if b == 0 {
				d.have[p>>6] |= 1 << (p & 63)
				d.held++
			}
			d.need += b
		}
		d.rng = stream(e.seed, streamSched, i)
		d.churn = stream(e.seed, streamChurn, i)
		d.cutAt = -1
		d.complete = -1
		if sc.Churn.PowerCut > 0 && d.churn.Float64() < sc.Churn.PowerCut {
			d.cutAt = int64(d.churn.Float64() * float64(d.need))
		}
		if churn {
			// The first awake spell is cut at a uniform point, so devices
			// do not all fall asleep together.
			a, err := draw(sc.Churn.Awake, d.churn)
			if err != nil {
				return fmt.Errorf("churn: %w", err)
			}
			if !(a > 0) {
				return fmt.Errorf("%w: awake session of %v s", ErrInvalid, a)
			}
			e.at(int64(d.churn.Float64()*a*1e9), evSleep, int32(i), 0, 0)
		}
		e.at(d.start, evStart, int32(i), 0, 0)
	}
	for k := range e.sites {
		s := &e.sites[k]
		s.newBytes = e.rel.totalFull
		for i := s.first; i < s.first+s.n; i++ {
			if e.devs[i].hasBase {
				s.newBytes = e.rel.totalFresh
				break
			}
		}
	}
	for _, f := range sc.Failures {
		if f.At < 0 || f.For < 0 {
			return fmt.Errorf("%w: failure at %v for %v", ErrInvalid, f.At, f.For)
		}
		switch f.Kind {
		case scenario.FailUplink:
			if f.Site < -1 || f.Site >= len(e.sites) {
				return fmt.Errorf("%w: uplink failure of site %d (%d sites)", ErrInvalid, f.Site, len(e.sites))
			}
			e.at(int64(f.At), evUplink, int32(f.Site), 0, 0)
			e.at(int64(f.At+f.For), evUplink, int32(f.Site), 1, 0)
		case scenario.FailOrigin:
			e.at(int64(f.At), evOrigin, 0, 0, 0)
			e.at(int64(f.At+f.For), evOrigin, 0, 1, 0)
		default:
			return fmt.Errorf("%w: failure kind %q", ErrInvalid, f.Kind)
		}
	}
	e.at(e.tick, evTick, 0, 0, 0)
	if sc.Topology.WANPeers > 0 {
		e.at(wanFlush, evWANFlush, 0, 0, 0)
	}
	e.at(0, evSample, 0, 0, 0)
	return nil
}

func (e *engine) sampleEvery() int64 {
	if e.sc.SampleEvery > 0 {
		return int64(e.sc.SampleEvery)
	}
	return int64(time.Second)
}

// loop runs the events in time order. At each instant it handles the
// events due, the transfers that finished, the scheduling decisions of the
// devices that heard something, and then recomputes the rates once.
func (e *engine) loop() error {
	for e.completed < len(e.devs) {
		t := e.net.NextFinish()
		if len(e.events) > 0 && e.events[0].t < t {
			t = e.events[0].t
		}
		if t == flow.Never || t > e.limit {
			e.now = e.limit
			return nil
		}
		e.now = t
		for {
			busy := false
			for len(e.events) > 0 && e.events[0].t == t {
				if err := e.handle(e.events.pop()); err != nil {
					return err
				}
				busy = true
			}
			for _, f := range e.net.PopFinished(t) {
				e.nev++
				e.finished(f)
				busy = true
			}
			if len(e.dirty) > 0 {
				e.decide()
				busy = true
			}
			if !busy {
				break
			}
			e.net.Settle(t)
		}
		if e.nev&0xfff == 0 || e.completed == len(e.devs) {
			if err := e.ctx.Err(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (e *engine) handle(ev event) error {
	e.nev++
	if e.nev&0x3fff == 0 {
		if err := e.ctx.Err(); err != nil {
			return err
		}
	}
	switch ev.kind {
	case evStart:
		d := &e.devs[ev.a]
		d.started = true
		if d.held == len(e.rel.full) {
			e.finish(ev.a)
		} else if d.online() {
			return e.open(ev.a)
		}
	case evReqArrive:
		e.arrive(ev.a)
	case evDeliver:
		return e.deliver(ev.a)
	case evHaveLAN:
		e.haveLAN(ev.a, ev.b)
	case evHaveWAN:
		e.haveWAN(ev.a, ev.b)
	case evWANFlush:
		e.flushWAN()
	case evWants:
		e.wantsLAN(ev.a, ev.b == 1)
	case evTick:
		e.tickAll()
		e.at(e.now+e.tick, evTick, 0, 0, 0)
	case evSample:
		e.sample()
		e.at(e.now+e.sampleEvery(), evSample, 0, 0, 0)
	case evSleep:
		d := &e.devs[ev.a]
		was := d.online()
		d.asleep = true
		d.row.Sleeps++
		if was {
			e.offline(ev.a)
		}
		v, err := draw(e.sc.Churn.Asleep, d.churn)
		if err != nil {
			return fmt.Errorf("churn: %w", err)
		}
		e.at(e.now+int64(max(v, 0)*1e9), evWake, ev.a, 0, 0)
	case evWake:
		d := &e.devs[ev.a]
		d.asleep = false
		if d.online() {
			if err := e.online(ev.a); err != nil {
				return err
			}
		}
		v, err := draw(e.sc.Churn.Awake, d.churn)
		if err != nil {
			return fmt.Errorf("churn: %w", err)
		}
		e.at(e.now+int64(max(v, 1e-3)*1e9), evSleep, ev.a, 0, 0)
	case evPowerBack:
		d := &e.devs[ev.a]
		d.off = false
		if d.online() {
			return e.online(ev.a)
		}
	case evInstalled:
		e.installed(ev.a)
	case evOriginResume:
		d := &e.devs[ev.a]
		if d.gen == ev.c && d.sess != nil && d.originRest {
			d.originRest = false
			if e.originUp {
				d.sess.SetOrigin(true)
				e.markDirty(ev.a)
			}
		}
	case evUplink:
		for k := range e.sites {
			if ev.a >= 0 && int32(k) != ev.a {
				continue
			}
			s := &e.sites[k]
			up, down := 0.0, 0.0
			if ev.b == 1 {
				up, down = s.upCap, s.downCap
			}
			if err := e.net.SetCapacity(e.now, s.upUp, up); err != nil {
				return err
			}
			if err := e.net.SetCapacity(e.now, s.upDown, down); err != nil {
				return err
			}
		}
	case evOrigin:
		e.originUp = ev.b == 1
		for i := range e.devs {
			if d := &e.devs[i]; d.sess != nil {
				d.sess.SetOrigin(e.originUp && !d.originRest)
				e.markDirty(int32(i))
			}
		}
	}
	return nil
}

func (e *engine) markDirty(i int32) {
	if d := &e.devs[i]; !d.dirty {
		d.dirty = true
		e.dirty = append(e.dirty, i)
	}
}

// open starts a device's download session: what it holds, the peers it
// is connected to and what they hold and fetch, and its own announcement
// to its site.
func (e *engine) open(i int32) error {
	d := &e.devs[i]
	s, err := sched.New(e.cfg, d.id, len(e.rel.full), d.rng)
	if err != nil {
		return fmt.Errorf("sim: device %d: %w", i, err)
	}
	for w, word := range d.have {
		for word != 0 {
			p := w<<6 + bits.TrailingZeros64(word)
			word &= word - 1
			if err := s.Have(p); err != nil {
				return fmt.Errorf("sim: device %d: %w", i, err)
			}
		}
	}
	d.sess = s
	d.dropped = d.dropped[:0]
	d.originRest = true
	s.SetOrigin(false)
	e.at(e.now+int64(OriginDelay), evOriginResume, i, 0, d.gen)
	st := &e.sites[d.site]
	for m := st.first; m < st.first+st.n; m++ {
		if md := &e.devs[m]; m != i && md.online() {
			if err := e.connect(i, m, sched.LAN); err != nil {
				return err
			}
		}
	}
	for _, m := range d.wan {
		if e.devs[m].online() {
			if err := e.connect(i, m, sched.WAN); err != nil {
				return err
			}
		}
	}
	e.markDirty(i)
	if st.n > 1 {
		e.at(e.now+e.lat[sched.LAN], evWants, i, 1, 0)
	}
	return nil
}

// connect tells device i's session of peer m: what m holds that i lacks
// (what i holds already can never be asked for, so it is left out), and
// whether m fetches the release too.
func (e *engine) connect(i, m int32, class sched.Class) error {
	d, md := &e.devs[i], &e.devs[m]
	if err := d.sess.AddPeer(md.id, class); err != nil {
		return fmt.Errorf("sim: device %d: %w", i, err)
	}
	clear(e.bitmap)
	some := false
	for w, word := range md.have {
		x := word &^ d.have[w]
		for x != 0 {
			p := w<<6 + bits.TrailingZeros64(x)
			x &= x - 1
			e.bitmap[p>>3] |= 0x80 >> (p & 7)
			some = true
		}
	}
	if some {
		if err := d.sess.PeerHasBitmap(md.id, e.bitmap); err != nil {
			return fmt.Errorf("sim: device %d: %w", i, err)
		}
	}
	if class == sched.LAN && md.wants() {
		if err := d.sess.PeerWants(md.id, true); err != nil {
			return fmt.Errorf("sim: device %d: %w", i, err)
		}
	}
	return nil
}

// knows reports whether device i's session counts m as a peer now.
func (e *engine) knows(i, m int32) bool {
	d := &e.devs[i]
	if d.sess == nil || !e.devs[m].online() {
		return false
	}
	for _, x := range d.dropped {
		if x == m {
			return false
		}
	}
	return true
}

// offline takes a device away (asleep or without power): its transfers
// stop, what was in flight to it is lost, and its peers see it leave.
func (e *engine) offline(i int32) {
	d := &e.devs[i]
	d.gen++
	for len(d.reqs) > 0 {
		e.kill(d.reqs[len(d.reqs)-1])
	}
	for len(d.out) > 0 {
		c := &e.conns[d.out[len(d.out)-1]]
		for len(c.queue) > c.head {
			e.kill(c.queue[len(c.queue)-1])
		}
	}
	// Its peers see it leave.
	e.forEachPeer(i, func(m int32) {
		md := &e.devs[m]
		if md.sess == nil {
			return
		}
		for k, x := range md.dropped {
			if x == i {
				md.dropped = append(md.dropped[:k], md.dropped[k+1:]...)
				return
			}
		}
		e.killFrom(m, i)
		_ = md.sess.RemovePeer(d.id) // it knew d: d was online
		e.markDirty(m)
	})
	e.endSession(d)
	d.pending = d.pending[:0]
}

// online brings a device back: its peers connect to it again and, if it
// still needs the release, it starts a new session (a reboot or a wake-up
// starts the download afresh from what it holds).
func (e *engine) online(i int32) error {
	d := &e.devs[i]
	var err error
	e.forEachPeer(i, func(m int32) {
		if md := &e.devs[m]; err == nil && md.sess != nil && md.online() {
			class := sched.WAN
			if md.site == d.site {
				class = sched.LAN
			}
			err = e.connect(m, i, class)
			e.markDirty(m)
		}
	})
	if err != nil {
		return err
	}
	if d.started && !d.done {
		return e.open(i)
	}
	return nil
}

func (e *engine) forEachPeer(i int32, f func(m int32)) {
	d := &e.devs[i]
	st := &e.sites[d.site]
	for m := st.first; m < st.first+st.n; m++ {
		if m != i {
			f(m)
		}
	}
	for _, m := range d.wan {
		f(m)
	}
}

// killFrom gives up device i's requests to source src.
func (e *engine) killFrom(i, src int32) {
	d := &e.devs[i]
	for k := 0; k < len(d.reqs); {
		if id := d.reqs[k]; e.reqs[id].src == src {
			e.kill(id)
			continue
		}
		k++
	}
}

// decide runs the scheduler of every device that heard something at this
// instant and carries out what it says.
func (e *engine) decide() {
	for k := 0; k < len(e.dirty); k++ {
		i := e.dirty[k]
		d := &e.devs[i]
		d.dirty = false
		if d.sess == nil {
			continue
		}
		acts := d.sess.Next()
		e.res.Engine.Decisions++
		for _, c := range acts.Cancel {
			e.cancel(i, c)
		}
		for _, r := range acts.Request {
			e.issue(i, r)
		}
		for _, id := range acts.Dropped {
			m := peerIndex(id)
			d.dropped = append(d.dropped, m)
			e.killFrom(i, m)
		}
	}
	e.dirty = e.dirty[:0]
}

// windowFull reports whether device i has a full window of requests
// outstanding at peer src. Then news that src holds one more piece cannot
// make i's scheduler ask anything now: src may not be asked more, and the
// piece is no new choice for any other source (a piece src holds can be
// asked only of src, or of a peer that held it before and was passed over
// at the last decision). So the decision waits for the next event that
// can change it (a block from src frees the window); this saves most
// decisions in a busy site and decides exactly as deciding now would.
func (e *engine) windowFull(i, src int32) bool {
	d := &e.devs[i]
	if d.npeer < e.window {
		return false
	}
	n := 0
	for _, id := range d.reqs {
		if e.reqs[id].src == src {
			if n++; n >= e.window {
				return true
			}
		}
	}
	return false
}

// peerIndex parses a device ID ("d" and its index).
func peerIndex(id string) int32 {
	n, _ := strconv.Atoi(id[1:])
	return int32(n)
}

func (e *engine) issue(i int32, r sched.Request) {
	d := &e.devs[i]
	src := int32(-1)
	if r.Class != sched.Origin {
		src = peerIndex(r.Source)
		d.npeer++
	}
	b := e.rel.full[r.Piece]
	if d.hasBase {
		b = e.rel.fresh[r.Piece]
	}
	id := e.newReq(req{dst: i, src: src, piece: int32(r.Piece), conn: -1, gen: d.gen, class: r.Class, bytes: float64(b)})
	e.reqs[id].at = int32(len(d.reqs))
	d.reqs = append(d.reqs, id)
	e.at(e.now+e.lat[r.Class], evReqArrive, id, 0, 0)
}

func (e *engine) newReq(r req) int32 {
	if k := len(e.freeReqs); k > 0 {
		id := e.freeReqs[k-1]
		e.freeReqs = e.freeReqs[:k-1]
		e.reqs[id] = r
		return id
	}
	e.reqs = append(doubled(e.reqs), r)
	return int32(len(e.reqs) - 1)
}

func (e *engine) freeReq(id int32) {
	e.reqs[id].state = reqFree
	e.freeReqs = append(e.freeReqs, id)
}

// cancel withdraws the request a session cancelled. A block already sent
// is left to arrive (the session welcomes it).
func (e *engine) cancel(i int32, c sched.Request) {
	d := &e.devs[i]
	src := int32(-1)
	if c.Class != sched.Origin {
		src = peerIndex(c.Source)
	}
	for _, id := range d.reqs {
		if r := &e.reqs[id]; r.src == src && r.piece == int32(c.Piece) && r.state != reqInflight {
			e.kill(id)
			return
		}
	}
}

// unlist takes request id off its device's list.
func (e *engine) unlist(id int32) {
	r := &e.reqs[id]
	d := &e.devs[r.dst]
	if k := int(r.at); k >= 0 && k < len(d.reqs) && d.reqs[k] == id {
		last := d.reqs[len(d.reqs)-1]
		d.reqs[k] = last
		e.reqs[last].at = int32(k)
		d.reqs = d.reqs[:len(d.reqs)-1]
		r.at = -1
	}
	if r.src >= 0 {
		d.npeer--
	}
}

// kill gives a request up wherever it is: on its way (dropped when it
// arrives), in a queue (taken out; bytes of it already sent count on the
// links they crossed), or on its way back (dropped on arrival).
func (e *engine) kill(id int32) {
	r := &e.reqs[id]
	e.unlist(id)
	switch r.state {
	case reqTravel, reqInflight:
		r.state = reqDead
	case reqQueued:
		c := &e.conns[r.conn]
		if c.queue[c.head] == id {
			left, _ := e.net.Remove(e.now, c.flow)
			c.live = false
			e.account(c, r.bytes-left, false)
			c.head++
			if c.head < len(c.queue) {
				e.startFlow(r.conn)
			} else {
				e.closeConn(r.conn)
			}
		} else {
			for k := c.head; k < len(c.queue); k++ {
				if c.queue[k] == id {
					c.queue = append(c.queue[:k], c.queue[k+1:]...)
					break
				}
			}
		}
		e.freeReq(id)
	}
}

// arrive: a request reached its source, which queues it on its connection
// to the requester.
func (e *engine) arrive(id int32) {
	r := &e.reqs[id]
	if r.state == reqDead {
		e.freeReq(id)
		return
	}
	if r.src >= 0 && !e.devs[r.src].has(r.piece) {
		// The peer lacks it: it answers dont-have.
		e.res.Engine.DontHaves++
		r.state, r.nak = reqInflight, true
		e.at(e.now+e.lat[r.class], evDeliver, id, 0, 0)
		return
	}
	d := &e.devs[r.dst]
	var ci int32 = -1
	for k, s := range d.inSrc {
		if s == r.src {
			ci = d.in[k]
			break
		}
	}
	if ci < 0 {
		ci = e.openConn(r.src, r.dst, r.class)
	}
	c := &e.conns[ci]
	c.queue = append(c.queue, id)
	r.state, r.conn = reqQueued, ci
	if !c.live {
		e.startFlow(ci)
	}
}

func (e *engine) openConn(src, dst int32, class sched.Class) int32 {
	var ci int32
	if k := len(e.freeConns); k > 0 {
		ci = e.freeConns[k-1]
		e.freeConns = e.freeConns[:k-1]
	} else {
		e.conns = append(doubled(e.conns), conn{})
		ci = int32(len(e.conns) - 1)
	}
	c := &e.conns[ci]
	c.src, c.dst, c.class, c.queue, c.head, c.live = src, dst, class, c.queue[:0], 0, false
	e.devs[dst].in = append(e.devs[dst].in, ci)
	e.devs[dst].inSrc = append(e.devs[dst].inSrc, src)
	if src >= 0 {
		e.devs[src].out = append(e.devs[src].out, ci)
	}
	return ci
}

// doubled returns s with room for one more, doubling its capacity when
// full: the engine's request and connection tables reach millions of
// entries at scale, where append's gentler growth for large slices copies
// them several times over.
func doubled[T any](s []T) []T {
	if len(s) < cap(s) {
		return s
	}
	t := make([]T, len(s), max(2*cap(s), 64))
	copy(t, s)
	return t
}

func drop(list []int32, x int32) []int32 {
	for k, v := range list {
		if v == x {
			list[k] = list[len(list)-1]
			return list[:len(list)-1]
		}
	}
	return list
}

func (e *engine) closeConn(ci int32) {
	c := &e.conns[ci]
	c.live = false
	d := &e.devs[c.dst]
	for k, x := range d.in {
		if x == ci {
			last := len(d.in) - 1
			d.in[k], d.inSrc[k] = d.in[last], d.inSrc[last]
			d.in, d.inSrc = d.in[:last], d.inSrc[:last]
			break
		}
	}
	if c.src >= 0 {
		e.devs[c.src].out = drop(e.devs[c.src].out, ci)
	}
	e.freeConns = append(e.freeConns, ci)
}

// startFlow starts a flow for the block at the head of a connection.
func (e *engine) startFlow(ci int32) {
	c := &e.conns[ci]
	if c.head > 64 && c.head*2 > len(c.queue) {
		n := copy(c.queue, c.queue[c.head:])
		c.queue, c.head = c.queue[:n], 0
	}
	b := e.reqs[c.queue[c.head]].bytes
	if c.live {
		_ = e.net.Continue(e.now, c.flow, b)
		return
	}
	e.pathBuf = e.path(e.pathBuf, c.src, c.dst)
	f, err := e.net.Add(e.now, e.pathBuf, b)
	if err != nil {
		panic(fmt.Sprintf("sim: a path the engine built was refused: %v", err)) // a bug, not input
	}
	for int(f) >= len(e.flowConn) {
		e.flowConn = append(e.flowConn, -1)
	}
	e.flowConn[f] = ci
	c.flow, c.live = f, true
}

// finished: the block at the head of a connection is through; it reaches
// its device after the path's latency, and the next block starts.
func (e *engine) finished(f flow.FlowID) {
	ci := e.flowConn[f]
	c := &e.conns[ci]
	id := c.queue[c.head]
	r := &e.reqs[id]
	e.account(c, r.bytes, true)
	r.state = reqInflight
	e.at(e.now+e.lat[c.class], evDeliver, id, 0, 0)
	c.head++
	if c.head < len(c.queue) {
		e.startFlow(ci)
		return
	}
	_, _ = e.net.Remove(e.now, f)
	c.live = false
	e.closeConn(ci)
}

// account counts bytes sent on a connection on every link they crossed.
func (e *engine) account(c *conn, bytes float64, whole bool) {
	b := int64(math.Round(bytes))
	if b <= 0 {
		return
	}
	dst := &e.sites[e.devs[c.dst].site]
	switch c.class {
	case sched.Origin:
		e.res.OriginEgressBytes += b
		dst.uplinkDown += b
		e.uplinkSum += b
	case sched.WAN:
		src := &e.devs[c.src]
		src.row.Sent += b
		e.sites[src.site].uplinkUp += b
		dst.uplinkDown += b
		e.uplinkSum += b
		e.wanBytes += b
	default:
		e.devs[c.src].row.Sent += b
		e.lanBytes += b
	}
}

// deliver: a block reached its device.
func (e *engine) deliver(id int32) error {
	r := e.reqs[id]
	if r.state == reqDead {
		e.freeReq(id)
		return nil
	}
	e.unlist(id)
	e.freeReq(id)
	i := r.dst
	d := &e.devs[i]
	if r.nak {
		if d.sess != nil && e.knows(i, r.src) {
			if err := d.sess.DontHave(e.devs[r.src].id, int(r.piece)); err != nil {
				return fmt.Errorf("sim: device %d: %w", i, err)
			}
			e.markDirty(i)
		}
		return nil
	}
	b := int64(r.bytes)
	switch r.class {
	case sched.LAN:
		d.row.Received.LAN += b
	case sched.WAN:
		d.row.Received.WAN += b
	default:
		d.row.Received.Origin += b
	}
	fresh := !d.has(r.piece)
	if fresh {
		d.have[r.piece>>6] |= 1 << (r.piece & 63)
		d.held++
		d.got += b
		e.announce(i, r.piece)
	}
	if d.sess != nil {
		var err error
		if r.src < 0 || e.knows(i, r.src) {
			src := ""
			if r.src >= 0 {
				src = e.devs[r.src].id
			}
			err = d.sess.Received(src, int(r.piece))
		} else {
			err = d.sess.Have(int(r.piece))
		}
		if err != nil {
			return fmt.Errorf("sim: device %d: %w", i, err)
		}
		e.markDirty(i)
	}
	if !fresh {
		return nil
	}
	if d.held == len(e.rel.full) {
		e.finish(i)
		return nil
	}
	if d.cutAt >= 0 && d.got >= d.cutAt {
		// The power goes: what it had not written is lost.
		d.cutAt = -1
		d.row.PowerCuts++
		v, err := draw(e.sc.Churn.PowerOff, d.churn)
		if err != nil {
			return fmt.Errorf("power off: %w", err)
		}
		was := d.online()
		d.off = true
		if was {
			e.offline(i)
		}
		e.at(e.now+int64(max(v, 0)*1e9), evPowerBack, i, 0, 0)
	}
	return nil
}

// finish: device i holds the whole release. Its download ends; it
// completes (runs the release) after its install time, serving its peers
// meanwhile.
func (e *engine) finish(i int32) {
	d := &e.devs[i]
	d.done = true
	if d.install > 0 {
		e.at(e.now+d.install, evInstalled, i, 0, 0)
	} else {
		e.installed(i)
	}
	for len(d.reqs) > 0 {
		e.kill(d.reqs[len(d.reqs)-1])
	}
	had := d.sess != nil
	e.endSession(d)
	if had && e.sites[d.site].n > 1 {
		e.at(e.now+e.lat[sched.LAN], evWants, i, 0, 0)
	}
}

// endSession ends device d's session, adding its scheduler's counters to
// the run's.
func (e *engine) endSession(d *device) {
	if d.sess == nil {
		return
	}
	st := d.sess.Stats()
	x := &e.res.Engine
	x.Stalled += int64(st.Stalled)
	x.Excluded += int64(st.Excluded)
	x.Dropped += int64(st.Dropped)
	x.Duplicate += int64(st.Duplicate)
	d.sess = nil
}

// installed: device i runs the release.
func (e *engine) installed(i int32) {
	e.devs[i].complete = e.now
	e.completed++
}

// announce: device i holds piece p now. Its site hears at once (after the
// LAN's latency), its WAN peers at the next once-a-second flush.
func (e *engine) announce(i, p int32) {
	d := &e.devs[i]
	if e.sites[d.site].n > 1 {
		e.at(e.now+e.lat[sched.LAN], evHaveLAN, i, p, 0)
	}
	if len(d.wan) > 0 {
		d.pending = append(d.pending, p)
		if !d.inFlush {
			d.inFlush = true
			e.flushList = append(e.flushList, i)
		}
	}
}

func (e *engine) haveLAN(i, p int32) {
	d := &e.devs[i]
	if !d.online() || !d.has(p) {
		return
	}
	st := &e.sites[d.site]
	for m := st.first; m < st.first+st.n; m++ {
		md := &e.devs[m]
		if m == i || md.sess == nil || md.has(p) || !e.knows(m, i) {
			continue
		}
		_ = md.sess.PeerHas(d.id, int(p)) // known peer, piece in range
		if !e.windowFull(m, i) {
			e.markDirty(m)
		}
	}
}

func (e *engine) flushWAN() {
	for _, i := range e.flushList {
		d := &e.devs[i]
		d.inFlush = false
		if len(d.pending) == 0 || !d.online() {
			d.pending = d.pending[:0]
			continue
		}
		var bi int32
		if k := len(e.freeBatch); k > 0 {
			bi = e.freeBatch[k-1]
			e.freeBatch = e.freeBatch[:k-1]
		} else {
			e.batches = append(e.batches, nil)
			bi = int32(len(e.batches) - 1)
		}
		e.batches[bi] = append(e.batches[bi][:0], d.pending...)
		d.pending = d.pending[:0]
		e.at(e.now+e.lat[sched.WAN], evHaveWAN, i, bi, 0)
	}
	e.flushList = e.flushList[:0]
	e.at(e.now+wanFlush, evWANFlush, 0, 0, 0)
}

func (e *engine) haveWAN(i, bi int32) {
	d := &e.devs[i]
	batch := e.batches[bi]
	e.freeBatch = append(e.freeBatch, bi)
	if !d.online() {
		return
	}
	for _, m := range d.wan {
		md := &e.devs[m]
		if md.sess == nil || !e.knows(m, i) {
			continue
		}
		for _, p := range batch {
			if !md.has(p) {
				_ = md.sess.PeerHas(d.id, int(p))
				if !e.windowFull(m, i) {
					e.markDirty(m)
				}
			}
		}
	}
}

func (e *engine) wantsLAN(i int32, wants bool) {
	d := &e.devs[i]
	if !d.online() || wants != d.wants() {
		return // stale: what it does now reaches its peers by its own event
	}
	st := &e.sites[d.site]
	for m := st.first; m < st.first+st.n; m++ {
		if md := &e.devs[m]; m != i && md.sess != nil && e.knows(m, i) {
			_ = md.sess.PeerWants(d.id, wants)
			e.markDirty(m)
		}
	}
}

// tickAll ticks the sessions that have something a tick can change:
// requests outstanding at peers (stalls), or pieces awaited from a LAN
// wanter (share stalls). For the others a tick changes nothing but the
// session's tick count, and the session compares only differences of
// ticks, so skipping them is equivalent.
func (e *engine) tickAll() {
	split := !e.cfg.NoSplit
	for i := range e.devs {
		d := &e.devs[i]
		if d.sess == nil {
			continue
		}
		if d.npeer > 0 || split && d.sess.Stats().Awaiting > 0 {
			d.sess.Tick()
			e.res.Engine.Ticks++
			e.markDirty(int32(i))
		}
	}
}

func (e *engine) sample() {
	e.res.Series = append(e.res.Series, Sample{
		Seconds:           seconds(e.now),
		Completed:         e.completed,
		OriginEgressBytes: e.res.OriginEgressBytes,
		UplinkBytes:       e.uplinkSum,
		LANBytes:          e.lanBytes,
		ActiveFlows:       e.net.Live(),
	})
	if e.progress != nil {
		e.progress(e.completed, len(e.devs))
	}
}
