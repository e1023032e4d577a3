package sched

import (
	"errors"
	"math/rand/v2"
	"testing"
)

func TestConfig(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	s, err := New(Config{}, "a", 10, rng)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Window: 8, OriginWindow: 16, EndgameThreshold: 32, EndgameDuplicates: 2,
		StallTicks: 20, ShareStallTicks: 40, MaxStrikes: 3, RarityCap: 8}
	if got := s.Config(); got != want {
		t.Errorf("defaults: %+v, want %+v", got, want)
	}
	if got := (Config{StallTicks: 5}); got.validate() != nil || got.ShareStallTicks != 10 {
		t.Errorf("share stall follows stall: %+v", got)
	}
	for _, c := range []Config{
		{Window: -1}, {OriginWindow: -1}, {MaxOutstanding: -1}, {EndgameThreshold: -1},
		{EndgameDuplicates: -1}, {StallTicks: -1}, {ShareStallTicks: -1}, {MaxStrikes: -1},
		{RarityCap: -1}, {RarityCap: 256}, {Strategy: 2},
	} {
		if _, err := New(c, "a", 10, rng); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%+v: got %v, want ErrBadConfig", c, err)
		}
	}
	for _, f := range []func() (*Session, error){
		func() (*Session, error) { return New(Config{}, "", 10, rng) },
		func() (*Session, error) { return New(Config{}, "a", -1, rng) },
		func() (*Session, error) { return New(Config{}, "a", MaxPieces+1, rng) },
		func() (*Session, error) { return New(Config{}, "a", 10, nil) },
		func() (*Session, error) { return NewDedup(Config{}, "a", []int{0, 2, 2}, rng) },
		func() (*Session, error) { return NewDedup(Config{}, "a", []int{0, 0, 1}, rng) },
		func() (*Session, error) { return NewDedup(Config{}, "a", []int{-1}, rng) },
	} {
		if _, err := f(); !errors.Is(err, ErrBadConfig) {
			t.Errorf("got %v, want ErrBadConfig", err)
		}
	}
	s, err = NewDedup(Config{}, "a", []int{0, 1, 0, 1, 4}, rng)
	if err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Held != 2 || st.Pieces != 5 {
		t.Errorf("dedup: %v", st)
	}
	if got := s.Next().Request; len(got) != 3 {
		t.Errorf("dedup: requests %v, want the three first positions", got)
	}
}

func TestStrings(t *testing.T) {
	for v, want := range map[interface{ String() string }]string{
		LAN: "lan", WAN: "wan", Origin: "origin", Class(7): "class(7)",
		RarestFirst: "rarest-first", Random: "random", Strategy(5): "strategy(5)",
		Request{Piece: 3, Source: "b", Class: LAN}: "3@b/lan",
		Request{Piece: 4, Class: Origin}:           "4@origin",
	} {
		if got := v.String(); got != want {
			t.Errorf("%#v: %q, want %q", v, got, want)
		}
	}
}
