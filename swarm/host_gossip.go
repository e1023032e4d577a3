package swarm

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"
)

// ValidationResult is a topic validator's verdict on an announcement.
type ValidationResult int

const (
	// Accept: the announcement verified; it is delivered and relayed.
	Accept ValidationResult = iota
	// Reject: the announcement is forged or malformed. It is dropped, not
	// relayed, and the peer it came from is penalised in gossipsub's
	// score (P4, see docs/swarm.md): honest peers never relay a message
	// that fails verification, because they verify it first.
	Reject
	// Ignore: the announcement may be genuine but is of no use (stale,
	// replayed, a duplicate, for a release already held). It is dropped
	// and not relayed; the sender is not penalised.
	Ignore
)

func (r ValidationResult) String() string {
	switch r {
	case Accept:
		return "accept"
	case Reject:
		return "reject"
	case Ignore:
		return "ignore"
	}
	return fmt.Sprintf("ValidationResult(%d)", int(r))
}

// Validator judges an announcement before gossipsub delivers or relays
// it. from is the peer that sent it to this host (this host for its own
// publications); data is the message as published. It runs concurrently
// for different messages; ctx ends after ValidatorTimeout. Any result
// other than Accept, Reject or Ignore counts as Ignore.
type Validator func(ctx context.Context, from peer.ID, data []byte) ValidationResult

// Announcement is a message that passed the validator.
type Announcement struct {
	// From is the peer that published the message (it signed it).
	From peer.ID
	// ReceivedFrom is the peer that relayed it to this host.
	ReceivedFrom peer.ID
	Data         []byte
}

// Gossip limits.
const (
	// MaxAnnouncementSize bounds one announcement's data, as
	// swarm/announce bounds an encoded announcement (the signed metadata:
	// roots, timestamp, snapshot, targets).
	MaxAnnouncementSize = 4 << 20
	// maxGossipRPC is gossipsub's limit on one message on the wire: an
	// announcement and its envelope (author, sequence number, signature,
	// topic), with room for control messages.
	maxGossipRPC = MaxAnnouncementSize + 64<<10
	// ValidatorTimeout bounds one validator call: a full release
	// verification from the message's own metadata.
	ValidatorTimeout = 30 * time.Second
	// scoreInspectPeriod is how often the host copies gossipsub's peer
	// scores for GossipScore.
	scoreInspectPeriod = time.Second
	// announcementBuffer is how many validated announcements wait for the
	// reader of Messages before gossipsub drops further ones for it.
	announcementBuffer = 32
)

// ReleasesTopic is the gossipsub topic of a fleet's channel,
// "/shoal/<fleet>/releases/<channel>".
func ReleasesTopic(fleet, channel string) string {
	return "/shoal/" + fleet + "/releases/" + channel
}

// Peer scoring (go-libp2p-pubsub's P1..P7; docs/swarm.md explains each
// number). Announcements are rare — a few a day — so mesh delivery-rate
// penalties (P3, P3b), which punish peers for not forwarding enough
// messages, are off: in a quiet topic they would punish honest peers.
// IP colocation (P6) is off because a whole site reaches the WAN from one
// NAT address. What remains rewards peers that stay in the mesh and
// deliver new announcements first, and punishes forged announcements
// (P4) hard: one costs 100, three (score -900) stop gossip with the
// sender, five (-2500) make this host ignore it entirely, and the count
// decays by 99% in an hour.
var (
	scoreThresholds = pubsub.PeerScoreThresholds{
		GossipThreshold:             -500,
		PublishThreshold:            -1000,
		GraylistThreshold:           -2500,
		AcceptPXThreshold:           10,
		OpportunisticGraftThreshold: 3,
	}
	topicScore = pubsub.TopicScoreParams{
		TopicWeight: 1,
		// P1: up to +10 after an hour in the mesh.
		TimeInMeshWeight:  10.0 / 3600,
		TimeInMeshQuantum: time.Second,
		TimeInMeshCap:     3600,
		// P2: +1 for each announcement first heard from the peer, up to
		// +20, decaying over a day.
		FirstMessageDeliveriesWeight: 1,
		FirstMessageDeliveriesDecay:  pubsub.ScoreParameterDecay(24 * time.Hour),
		FirstMessageDeliveriesCap:    20,
		// P4: -100 × (forged announcements)², decaying over an hour.
		InvalidMessageDeliveriesWeight: -100,
		InvalidMessageDeliveriesDecay:  pubsub.ScoreParameterDecay(time.Hour),
	}
)

func peerScoreParams(app func(peer.ID) float64) *pubsub.PeerScoreParams {
	if app == nil {
		app = func(peer.ID) float64 { return 0 }
	}
	return &pubsub.PeerScoreParams{
		Topics:        map[string]*pubsub.TopicScoreParams{},
		TopicScoreCap: 50,
		// P5: the application's own judgement (chunk protocol behaviour).
		AppSpecificScore:  app,
		AppSpecificWeight: 1,
		// P6 off (sites behind one NAT address).
		IPColocationFactorWeight: 0,
		// P7: gossipsub protocol misbehaviour (re-grafting too early,
		// unanswered IWANTs): -10 × (count over 6)², decaying in 10 min.
		BehaviourPenaltyWeight:    -10,
		BehaviourPenaltyThreshold: 6,
		BehaviourPenaltyDecay:     pubsub.ScoreParameterDecay(10 * time.Minute),
		DecayInterval:             pubsub.DefaultDecayInterval,
		DecayToZero:               pubsub.DefaultDecayToZero,
		RetainScore:               time.Hour,
	}
}

func (h *Host) gossipOptions(app func(peer.ID) float64) []pubsub.Option {
	th := scoreThresholds
	return []pubsub.Option{
		pubsub.WithPeerScore(peerScoreParams(app), &th),
		pubsub.WithPeerScoreInspect(pubsub.PeerScoreInspectFn(h.inspectScores), scoreInspectPeriod),
		// Messages are named by their content, so the same announcement
		// published by two nodes (the origin and a gateway re-announcing)
		// is delivered and relayed once.
		pubsub.WithMessageIdFn(func(m *pb.Message) string {
			sum := sha256.Sum256(m.Data)
			return string(sum[:])
		}),
		pubsub.WithMaxMessageSize(maxGossipRPC),
		// The publisher sends to every topic peer it knows, not only its
		// mesh (which is empty until the first heartbeat after joining):
		// announcements are rare and each one matters.
		pubsub.WithFloodPublish(true),
	}
}

func (h *Host) inspectScores(scores map[peer.ID]float64) {
	h.mu.Lock()
	h.scores = scores
	h.mu.Unlock()
}

// GossipScore is this host's gossipsub score of p as of the last second
// (0 for a peer it has no score for).
func (h *Host) GossipScore(p peer.ID) float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.scores[p]
}

// Releases is the host's membership in one channel's announcement topic.
type Releases struct {
	h       *Host
	name    string
	topic   *pubsub.Topic
	sub     *pubsub.Subscription
	out     chan Announcement
	cancel  context.CancelFunc
	done    chan struct{}
	closeMu sync.Mutex
	closed  bool
}

// JoinReleases joins the fleet's announcement topic for channel
// (ReleasesTopic) with v as its validator: every announcement, received
// or published here, passes v before it is delivered or relayed, so a
// forged, stale or replayed one dies at the first hop. Accepted
// announcements from other peers arrive on Messages. A channel can be
// joined once at a time.
func (h *Host) JoinReleases(channel string, v Validator) (_ *Releases, err error) {
	if err := CheckName("channel", channel); err != nil {
		return nil, fmt.Errorf("swarm: %v", err)
	}
	if v == nil {
		return nil, errors.New("swarm: join releases: no validator")
	}
	name := ReleasesTopic(h.fleet, channel)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errors.New("swarm: host closed")
	}
	if _, ok := h.topics[name]; ok {
		return nil, fmt.Errorf("swarm: already joined %s", name)
	}
	val := func(ctx context.Context, from peer.ID, m *pubsub.Message) pubsub.ValidationResult {
		switch v(ctx, from, m.Data) {
		case Accept:
			return pubsub.ValidationAccept
		case Reject:
			return pubsub.ValidationReject
		}
		return pubsub.ValidationIgnore
	}
	if err := h.ps.RegisterTopicValidator(name, val, pubsub.WithValidatorTimeout(ValidatorTimeout)); err != nil {
		return nil, fmt.Errorf("swarm: join %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			h.ps.UnregisterTopicValidator(name)
		}
	}()
	topic, err := h.ps.Join(name)
	if err != nil {
		return nil, fmt.Errorf("swarm: join %s: %w", name, err)
	}
	tsp := topicScore
	if err := topic.SetScoreParams(&tsp); err != nil {
		topic.Close()
		return nil, fmt.Errorf("swarm: join %s: %w", name, err)
	}
	sub, err := topic.Subscribe(pubsub.WithBufferSize(announcementBuffer))
	if err != nil {
		topic.Close()
		return nil, fmt.Errorf("swarm: join %s: %w", name, err)
	}
	ctx, cancel := context.WithCancel(h.ctx)
	r := &Releases{h: h, name: name, topic: topic, sub: sub, out: make(chan Announcement, announcementBuffer),
		cancel: cancel, done: make(chan struct{})}
	h.topics[name] = r
	h.wg.Add(1)
	go r.pump(ctx)
	return r, nil
}

// pump moves validated messages from other peers to Messages until the
// subscription ends.
func (r *Releases) pump(ctx context.Context) {
	defer r.h.wg.Done()
	defer close(r.done)
	defer close(r.out)
	self := r.h.h.ID()
	for {
		m, err := r.sub.Next(ctx)
		if err != nil {
			return
		}
		if m.ReceivedFrom == self {
			continue // our own publication
		}
		a := Announcement{From: m.GetFrom(), ReceivedFrom: m.ReceivedFrom, Data: m.Data}
		select {
		case r.out <- a:
		case <-ctx.Done():
			return
		}
	}
}

// Topic is the gossipsub topic's name.
func (r *Releases) Topic() string { return r.name }

// Messages delivers the announcements other peers sent that the validator
// accepted. It is closed when the Releases or its host closes.
func (r *Releases) Messages() <-chan Announcement { return r.out }

// Publish validates data with the topic's validator and, if accepted,
// sends it to the topic's peers.
func (r *Releases) Publish(ctx context.Context, data []byte) error {
	if len(data) > MaxAnnouncementSize {
		return fmt.Errorf("swarm: announcement of %d bytes exceeds %d", len(data), MaxAnnouncementSize)
	}
	if err := r.topic.Publish(ctx, data); err != nil {
		return fmt.Errorf("swarm: publish to %s: %w", r.name, err)
	}
	return nil
}

// Peers lists the peers this host knows to be in the topic.
func (r *Releases) Peers() []peer.ID { return r.topic.ListPeers() }

// Close leaves the topic. Calling it again does nothing.
func (r *Releases) Close() error {
	r.closeMu.Lock()
	defer r.closeMu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	r.sub.Cancel()
	r.cancel()
	<-r.done
	err := r.topic.Close()
	r.h.ps.UnregisterTopicValidator(r.name)
	r.h.mu.Lock()
	delete(r.h.topics, r.name)
	r.h.mu.Unlock()
	return err
}
