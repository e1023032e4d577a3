package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/fleet"
)

// faultRun stages a run's faults (fleet.Faults) from waitFlips's poll
// loop, one step per poll, and fills their reports. Every method is a
// no-op for a fault that was not asked for.
type faultRun struct {
	r         *run
	res       *fleet.Result
	positions int // the release index's positions, once a transfer shows them

	cutPhase int // 0 waiting, 1 down, 2 restored
	cutRx    int64

	victims   []*nodeRun
	killPhase int // 0 waiting, 1 down, 2 restarted
	killAt    float64

	off      *nodeRun
	offPhase int // 0 on, 1 off, 2 on again, 3 flipped
	offRx    int64
}

func newFaultRun(r *run, res *fleet.Result) *faultRun {
	f := &faultRun{r: r, res: res}
	t := r.t
	if t.Faults.Cut != nil {
		res.Cut = &fleet.CutReport{Site: 1, DownAt: -1, UpAt: -1}
	}
	if t.Faults.Kill > 0 {
		res.Kill = &fleet.KillReport{Site: 1, Fraction: t.Faults.Kill}
		for _, v := range t.KillVictims() {
			f.victims = append(f.victims, r.node(v.Name))
		}
	}
	if n, ok := t.PowerOffNode(); ok {
		f.off = r.node(n.Name)
		res.PowerOff = &fleet.PowerOffReport{Device: n.Name, Site: n.Site, OffAt: -1, OnAt: -1, FlippedAt: -1, OthersDoneAt: -1}
	}
	return f
}

// node returns the running node named name.
func (r *run) node(name string) *nodeRun {
	for _, n := range r.nodes {
		if n.Name == name {
			return n
		}
	}
	panic("harness: no node " + name)
}

// step stages whatever is due at now (seconds since the announcement):
// sts holds this poll's status of each device (nil: flipped, down, or no
// answer), flipped each device's flip time (-1: not yet).
func (f *faultRun) step(ctx context.Context, now float64, devs []*nodeRun, sts []*status, flipped []float64) error {
	for _, s := range sts {
		if s != nil && f.positions == 0 {
			if tr, ok := s.transfer(f.r.index); ok {
				f.positions = tr.Total
			}
		}
	}
	return joinErrs([]error{f.stepCut(ctx, now, devs, sts, flipped), f.stepKill(ctx, now, devs, sts, flipped), f.stepPowerOff(ctx, now, devs, sts, flipped)})
}

// held returns the positions device i holds by this poll: all of them
// once it flipped, -1 before its transfer shows.
func (f *faultRun) held(i int, sts []*status, flipped []float64) int {
	if flipped[i] >= 0 {
		return f.positions
	}
	if sts[i] != nil {
		if tr, ok := sts[i].transfer(f.r.index); ok {
			return tr.Held
		}
	}
	return -1
}

// siteRx reads what has entered site k over its uplink (0 on loopback).
func (f *faultRun) siteRx(ctx context.Context, k int) (int64, error) {
	if f.r.t.Loopback {
		return 0, nil
	}
	rx, _, err := counters(ctx, f.r.t.Sites[k-1].Router, fleet.IfUplink)
	return rx, err
}

func (f *faultRun) stepCut(ctx context.Context, now float64, devs []*nodeRun, sts []*status, flipped []float64) error {
	w, c := f.r.t.Faults.Cut, f.res.Cut
	if w == nil {
		return nil
	}
	held := func() []int {
		var h []int
		for i, n := range devs {
			if n.Site == c.Site {
				h = append(h, f.held(i, sts, flipped))
			}
		}
		return h
	}
	switch {
	case f.cutPhase == 0 && now >= w.At.Seconds():
		c.HeldAtCut = held()
		for _, cmd := range f.r.t.CutCommands(c.Site, true) {
			if err := ipCommand(ctx, cmd); err != nil {
				return err
			}
		}
		// Counted from once the routes are down: on a loaded machine the
		// two ip(8) commands take a few hundred milliseconds, during which
		// the uplink still runs at its rate.
		rx, err := f.siteRx(ctx, c.Site)
		if err != nil {
			return err
		}
		f.cutRx = rx
		c.DownAt, c.Positions, f.cutPhase = now, f.positions, 1
		f.r.progress("site %d's uplink cut at %.1f s; positions held %v", c.Site, now, c.HeldAtCut)
	case f.cutPhase == 1 && now >= (w.At+w.For).Seconds():
		c.HeldAtRestore = held()
		return f.restore(ctx, now, devs, flipped)
	}
	return nil
}

// restore brings the cut uplink back and completes the cut's report.
func (f *faultRun) restore(ctx context.Context, now float64, devs []*nodeRun, flipped []float64) error {
	c := f.res.Cut
	rx, err := f.siteRx(ctx, c.Site)
	c.UplinkBytesDuring = rx - f.cutRx
	for _, cmd := range f.r.t.CutCommands(c.Site, false) {
		if cerr := ipCommand(ctx, cmd); cerr != nil {
			err = joinErrs([]error{err, cerr})
		}
	}
	for i, n := range devs {
		if n.Site == c.Site && flipped[i] >= c.DownAt {
			c.FlippedDuringCut++
		}
	}
	c.UpAt, f.cutPhase = now, 2
	f.r.progress("site %d's uplink back at %.1f s; positions held %v", c.Site, now, c.HeldAtRestore)
	return err
}

// kill kills n's node (SIGKILL) after reading its status, and returns
// that status's transfer (zero when it had none).
func (f *faultRun) kill(ctx context.Context, n *nodeRun) (transferStatus, error) {
	var tr transferStatus
	if s, err := n.api.status(ctx); err == nil {
		tr, _ = s.transfer(f.r.index)
	}
	n.proc.cmd.Process.Kill()
	select {
	case <-n.proc.done:
	case <-time.After(10 * time.Second):
		return tr, fmt.Errorf("%s survives SIGKILL", n.Name)
	}
	n.down = true
	n.api.reset()
	if n.carried == nil {
		n.carried = map[string]int64{}
	}
	for k, v := range tr.Bytes {
		n.carried[k] += v
	}
	return tr, nil
}

// restart starts a killed node again on the same config, store and slots.
func (f *faultRun) restart(n *nodeRun) error {
	if err := f.r.startNode(n); err != nil {
		return err
	}
	n.down = false
	return nil
}

func (f *faultRun) stepKill(ctx context.Context, now float64, devs []*nodeRun, sts []*status, flipped []float64) error {
	k := f.res.Kill
	if k == nil {
		return nil
	}
	switch f.killPhase {
	case 0:
		// Due once the victims have fetched a third of the new chunks on
		// average, or one of them is about to finish.
		fetched, anyFlipped := 0, false
		for i, n := range devs {
			for _, v := range f.victims {
				if v != n {
					continue
				}
				anyFlipped = anyFlipped || flipped[i] >= 0
				if sts[i] != nil {
					if tr, ok := sts[i].transfer(f.r.index); ok {
						fetched += fleet.Sum(tr.Chunks)
					}
				}
			}
		}
		if !anyFlipped && 3*fetched < f.r.newChunks*len(f.victims) {
			return nil
		}
		for i, n := range devs {
			for _, v := range f.victims {
				if v != n || flipped[i] >= 0 {
					continue
				}
				tr, err := f.kill(ctx, n)
				if err != nil {
					return err
				}
				placed, missing, err := f.r.slotScan(ctx, n)
				if err != nil {
					return err
				}
				k.Devices = append(k.Devices, fleet.KilledDevice{Name: n.Name, KilledAt: now, Restarted: -1,
					Positions: tr.Total, HeldBefore: tr.Held, ChunksBefore: tr.Chunks,
					PlacedAtKill: placed, LostUnwritten: max(0, tr.Held-placed), MostAfter: missing})
			}
		}
		f.killAt, f.killPhase = now, 1
		f.r.progress("killed %d nodes of site %d at %.1f s (SIGKILL)", len(k.Devices), k.Site, now)
	case 1:
		if now < f.killAt+fleet.KillRestart.Seconds() {
			return nil
		}
		for j := range k.Devices {
			d := &k.Devices[j]
			if err := f.restart(f.r.node(d.Name)); err != nil {
				return err
			}
			d.Restarted = now
		}
		f.killPhase = 2
		f.r.progress("restarted the killed nodes at %.1f s", now)
	}
	return nil
}

func (f *faultRun) stepPowerOff(ctx context.Context, now float64, devs []*nodeRun, sts []*status, flipped []float64) error {
	p := f.res.PowerOff
	if p == nil {
		return nil
	}
	w := f.r.t.Faults.PowerOff
	me, others := -1, true
	for i, n := range devs {
		if n == f.off {
			me = i
		} else {
			others = others && flipped[i] >= 0
		}
	}
	if others && p.OthersDoneAt < 0 {
		p.OthersDoneAt = now
	}
	switch f.offPhase {
	case 0:
		if now < w.At.Seconds() {
			return nil
		}
		if flipped[me] >= 0 {
			f.offPhase = 3
			f.res.Errors = append(f.res.Errors, fmt.Sprintf("--power-off: %s flipped before %v: nothing to cut", p.Device, w.At))
			return nil
		}
		tr, err := f.kill(ctx, f.off)
		if err != nil {
			return err
		}
		p.Positions, p.HeldAtOff = tr.Total, tr.Held
		if p.PlacedAtOff, _, err = f.r.slotScan(ctx, f.off); err != nil {
			return err
		}
		// The power cycle: the bootloader runs again (nothing flipped, so
		// it boots the running slot); the install resumes at the restart.
		if _, err := f.r.shoal(ctx, "device", "reboot", "--config", f.off.deviceConfig()); err != nil {
			return err
		}
		p.OffAt, f.offPhase = now, 1
		f.r.progress("%s powered off at %.1f s holding %d of %d positions", p.Device, now, tr.Held, tr.Total)
	case 1:
		if w.UntilDone && !others || !w.UntilDone && now < (w.At+w.For).Seconds() {
			return nil
		}
		// The devices that flipped meanwhile serve the new release from
		// the slot they flipped to, rebooted or not.
		rx, err := f.siteRx(ctx, p.Site)
		if err != nil {
			return err
		}
		f.offRx = rx
		if err := f.restart(f.off); err != nil {
			return err
		}
		p.OnAt, f.offPhase = now, 2
		f.r.progress("%s powered on at %.1f s", p.Device, now)
	case 2:
		if flipped[me] < 0 {
			return nil
		}
		rx, err := f.siteRx(ctx, p.Site)
		if err != nil {
			return err
		}
		p.SiteUplinkBytesAfterOn = rx - f.offRx
		p.FlippedAt, f.offPhase = flipped[me], 3
	}
	return nil
}

// end runs when the poll loop ends: an uplink still cut (every device
// flipped while it was down, or the run failed) is restored.
func (f *faultRun) end(ctx context.Context, now float64, devs []*nodeRun, flipped []float64) {
	if f.cutPhase != 1 {
		return
	}
	c := f.res.Cut
	c.HeldAtRestore = nil
	for i, n := range devs {
		if n.Site == c.Site {
			c.HeldAtRestore = append(c.HeldAtRestore, f.held(i, make([]*status, len(devs)), flipped))
		}
	}
	if err := f.restore(context.WithoutCancel(ctx), now, devs, flipped); err != nil {
		f.res.Errors = append(f.res.Errors, err.Error())
	}
}

// account completes the reports from each node's final transfer (by
// name; a node's restarted process reports only what it fetched itself).
func (f *faultRun) account(final map[string]transferStatus) {
	if k := f.res.Kill; k != nil {
		k.NoRefetch = len(k.Devices) > 0
		for j := range k.Devices {
			d := &k.Devices[j]
			d.ChunksAfter = final[d.Name].Chunks
			if d.Restarted < 0 || fleet.Sum(d.ChunksAfter) > d.MostAfter {
				k.NoRefetch = false
			}
		}
	}
	if p := f.res.PowerOff; p != nil && p.OnAt >= 0 {
		p.BytesAfterOn = final[p.Device].Bytes
		if f.r.t.Loopback {
			p.SiteUplinkBytesAfterOn = p.BytesAfterOn["wan"] + p.BytesAfterOn["origin"]
		}
	}
}

// slotScan hashes the slot device n is filling (the one its updater is
// not running) against the new release's index, as the installer does
// when it resumes: it returns the positions whose bytes verify, and the
// distinct chunks that still lack a verified position — the most a
// resumed install may fetch. Run it while the node is down (the device's
// lock is free).
func (r *run) slotScan(ctx context.Context, n *nodeRun) (placed, missing int, err error) {
	out, err := r.shoal(ctx, "update", "status", "--config", n.deviceConfig(), "--json")
	if err != nil {
		return 0, 0, err
	}
	var st struct {
		ActiveSlot string `json:"active_slot"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return 0, 0, fmt.Errorf("%s: status: %w", n.Name, err)
	}
	target := "a"
	if strings.EqualFold(st.ActiveSlot, "a") {
		target = "b"
	}
	f, err := os.Open(filepath.Join(n.dir, "device", "slot-"+target+".img"))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	ix := r.next
	off := ix.Offsets()
	lack := map[chunker.Digest]bool{}
	var buf []byte
	for i, e := range ix.Chunks {
		buf = slices.Grow(buf[:0], int(e.Size))[:e.Size]
		if _, err := f.ReadAt(buf, off[i]); err == nil && ix.Hash.Sum(buf) == e.Digest {
			placed++
			continue
		}
		lack[e.Digest] = true
	}
	return placed, len(lack), nil
}
