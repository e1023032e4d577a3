package sched

// request is one outstanding request. The requests for a piece form a
// chain from Session.head, newest first.
type request struct {
	q      int32
	src    int32 // peer slot, -1 for the origin
	next   int32 // the piece's next request, -1
	issued int64
	live   bool
	head   bool // the first of its chain (Session.head)
}

// hold marks q held; its requests are cancelled, except the one with
// index answered, which a block just answered.
func (s *Session) hold(q int32, answered int32) {
	st := &s.pcs[q]
	if st.place == placeRequested {
		for ri := s.head[q]; ri >= 0; {
			next := s.reqs[ri].next
			if ri != answered {
				s.cancel(ri)
			}
			s.freeReq(ri)
			ri = next
		}
		delete(s.head, q)
		st.place = placeNone
	} else {
		s.leave(q)
	}
	st.place = placeHeld
	s.held++
}

// find returns the request for q outstanding at p (nil: the origin), or -1.
func (s *Session) find(q int32, p *peer) int32 {
	if s.pcs[q].place != placeRequested {
		return -1
	}
	src := int32(-1)
	if p != nil {
		src = int32(p.idx)
	}
	for ri := s.head[q]; ri >= 0; ri = s.reqs[ri].next {
		if s.reqs[ri].src == src {
			return ri
		}
	}
	return -1
}

// issue asks src (nil: the origin) for q, and returns the request's
// index.
func (s *Session) issue(q int32, p *peer) int32 {
	st := &s.pcs[q]
	next := int32(-1)
	if st.place == placeRequested {
		next = s.head[q]
		s.reqs[next].head = false
	} else {
		s.holder = p
		s.leave(q)
		s.holder = nil
		st.place = placeRequested
	}
	var ri int32
	if k := len(s.freeReqs); k > 0 {
		ri = s.freeReqs[k-1]
		s.freeReqs = s.freeReqs[:k-1]
	} else {
		ri = int32(len(s.reqs))
		s.reqs = append(s.reqs, request{})
	}
	r := request{q: q, src: -1, next: next, issued: s.tick, live: true, head: true}
	c := Origin
	if p != nil {
		r.src = int32(p.idx)
		c = p.class
		p.out++
		s.mark(p)
		s.stallAt = min(s.stallAt, s.tick+int64(s.cfg.StallTicks))
	} else {
		s.originOut++
	}
	s.reqs[ri] = r
	s.head[q] = ri
	s.out++
	s.stats.Requested[c]++
	s.dupsChanged()
	s.acts.Request = append(s.acts.Request, s.request(r))
	return ri
}

func (s *Session) request(r request) Request {
	if r.src < 0 {
		return Request{Piece: s.ord.pos(r.q), Class: Origin}
	}
	p := s.slots[r.src]
	return Request{Piece: s.ord.pos(r.q), Source: p.id, Class: p.class}
}

func (s *Session) cancel(ri int32) {
	s.cancels = append(s.cancels, s.request(s.reqs[ri]))
	s.stats.Cancelled++
}

// freeReq forgets request ri (its piece's chain is the caller's).
func (s *Session) freeReq(ri int32) {
	r := &s.reqs[ri]
	if r.src < 0 {
		s.originOut--
	} else {
		p := s.slots[r.src]
		p.out--
		s.mark(p)
	}
	s.out--
	s.dupsChanged()
	r.live = false
	s.freeReqs = append(s.freeReqs, ri)
}

// release gives request ri up (with a cancel if asked); a piece with no
// request left goes back where it belongs.
func (s *Session) release(ri int32, cancel bool) {
	r := s.reqs[ri]
	if cancel {
		s.cancel(ri)
	}
	if r.head {
		if r.next >= 0 {
			s.head[r.q] = r.next
			s.reqs[r.next].head = true
		} else {
			delete(s.head, r.q)
		}
	} else {
		for pi := s.head[r.q]; ; pi = s.reqs[pi].next {
			if s.reqs[pi].next == ri {
				s.reqs[pi].next = r.next
				break
			}
		}
	}
	s.freeReq(ri)
	if r.head && r.next < 0 { // it was the piece's only request
		s.pcs[r.q].place = placeNone
		s.reconcile(r.q)
	}
}
