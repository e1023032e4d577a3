package sim

// Event kinds.
const (
	evStart        uint8 = iota // a: device hears the announcement
	evReqArrive                 // a: request reaches its source
	evDeliver                   // a: request's block reaches its device
	evHaveLAN                   // a: device, b: piece: its site hears it holds b
	evHaveWAN                   // a: device, b: batch: its WAN peers hear the batch
	evWANFlush                  // the once-a-second flush of WAN haves
	evWants                     // a: device, b: 1/0: its site hears it fetches (or stopped)
	evTick                      // the scheduler tick
	evSample                    // a time-series sample
	evSleep                     // a: device, c: generation
	evWake                      // a: device
	evPowerBack                 // a: device
	evOriginResume              // a: device, c: generation: its origin delay ended
	evUplink                    // a: site or -1, b: 1 up / 0 down
	evOrigin                    // b: 1 up / 0 down
	evInstalled                 // a: device: its install time is over
)

// event is one timed event; ties in time go to the one scheduled first.
type event struct {
	t    int64
	seq  uint64
	kind uint8
	a, b int32
	c    uint32
}

type eventHeap []event

func (h eventHeap) less(i, j int) bool {
	return h[i].t < h[j].t || h[i].t == h[j].t && h[i].seq < h[j].seq
}

func (h *eventHeap) push(ev event) {
	*h = append(*h, ev)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !s.less(i, p) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *eventHeap) pop() event {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(s) && s.less(l, m) {
			m = l
		}
		if r < len(s) && s.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

func (e *engine) at(t int64, kind uint8, a, b int32, c uint32) {
	e.seq++
	e.events.push(event{t: t, seq: e.seq, kind: kind, a: a, b: b, c: c})
}
