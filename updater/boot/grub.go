package boot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
)

// The GRUB environment variables shoal owns; packaging/grub/shoal.cfg is
// the GRUB script that reads them.
const (
	grubDefault = "shoal_default"
	grubTrial   = "shoal_trial"
	grubTries   = "shoal_tries"
)

// GRUB is the adapter for GRUB 2: it keeps the A/B state in the GRUB
// environment block (grubenv) that packaging/grub/shoal.cfg loads at boot.
// Other variables in the block (saved_entry, ...) are kept as they are.
type GRUB struct {
	path string
	opts options
	mu   sync.Mutex
}

var (
	_ Adapter   = (*GRUB)(nil)
	_ Simulator = (*GRUB)(nil)
)

// CreateGRUBEnv writes an empty environment block at path, like
// `grub-editenv path create`, but never over an existing file. Of the
// options only WithFS matters.
func CreateGRUBEnv(path string, opts ...Option) error {
	o := buildOptions(opts)
	b, err := NewGRUBEnv().Encode()
	if err != nil {
		return err
	}
	if ok, err := o.exists(path); err != nil {
		return err
	} else if ok {
		return fmt.Errorf("boot: create GRUB environment %s: %w", path, fs.ErrExist)
	}
	return o.replaceFile(path, b)
}

// OpenGRUB returns the adapter for the environment block at path, which
// must exist (see CreateGRUBEnv) and parse.
func OpenGRUB(path string, opts ...Option) (*GRUB, error) {
	g := &GRUB{path: path, opts: buildOptions(opts)}
	if _, err := g.load(); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *GRUB) load() (*GRUBEnv, error) {
	b, err := g.opts.readFile(g.path)
	if err != nil {
		return nil, err
	}
	env, err := ParseGRUBEnv(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", g.path, err)
	}
	return env, nil
}

// store writes env if it differs from what is on disk.
func (g *GRUB) store(env *GRUBEnv, old []byte) error {
	b, err := env.Encode()
	if err != nil {
		return fmt.Errorf("%s: %w", g.path, err)
	}
	if string(b) == string(old) {
		return nil
	}
	return g.opts.replaceFile(g.path, b)
}

// grubView is the state the GRUB script derives from the variables.
type grubView struct {
	def, trial string
	tries      int
}

func grubRead(env *GRUBEnv) grubView {
	v := grubView{def: SlotA}
	if d, _ := env.Get(grubDefault); d == SlotB {
		v.def = SlotB
	}
	if t, _ := env.Get(grubTrial); t == SlotA || t == SlotB {
		v.trial = t
	}
	if n, _ := env.Get(grubTries); len(n) == 1 && n[0] >= '0' && n[0] <= '9' {
		v.tries = int(n[0] - '0')
	}
	return v
}

// Status implements Adapter.
func (g *GRUB) Status(ctx context.Context) (Status, error) {
	if err := ctxErr(ctx); err != nil {
		return Status{}, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	env, err := g.load()
	if err != nil {
		return Status{}, err
	}
	v := grubRead(env)
	booted, err := g.opts.bootedSlot()
	if err != nil {
		return Status{}, err
	}
	st := Status{Booted: booted, Default: v.def, Trial: v.trial}
	if v.trial != "" {
		st.TriesLeft = v.tries
	}
	return st, nil
}

// update reads the block, lets f change it, and writes it back if changed.
func (g *GRUB) update(ctx context.Context, f func(env *GRUBEnv, v grubView) error) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	old, err := g.opts.readFile(g.path)
	if err != nil {
		return err
	}
	env, err := ParseGRUBEnv(old)
	if err != nil {
		return fmt.Errorf("%s: %w", g.path, err)
	}
	if err := f(env, grubRead(env)); err != nil {
		return err
	}
	return g.store(env, old)
}

// SetTentative implements Adapter.
func (g *GRUB) SetTentative(ctx context.Context, slot string, tries int) error {
	if err := checkSlot(slot); err != nil {
		return err
	}
	if err := checkTries(tries); err != nil {
		return err
	}
	return g.update(ctx, func(env *GRUBEnv, v grubView) error {
		if slot == v.def {
			return fmt.Errorf("%w: %s in %s", ErrTrialOfDefault, slot, g.path)
		}
		return errors.Join(
			env.Set(grubDefault, v.def),
			env.Set(grubTrial, slot),
			env.Set(grubTries, fmt.Sprint(tries)))
	})
}

// MarkGood implements Adapter.
func (g *GRUB) MarkGood(ctx context.Context, slot string) error {
	if err := checkSlot(slot); err != nil {
		return err
	}
	return g.update(ctx, func(env *GRUBEnv, _ grubView) error {
		env.Unset(grubTrial)
		env.Unset(grubTries)
		return env.Set(grubDefault, slot)
	})
}

// MarkBad implements Adapter.
func (g *GRUB) MarkBad(ctx context.Context, slot string) error {
	if err := checkSlot(slot); err != nil {
		return err
	}
	return g.update(ctx, func(env *GRUBEnv, _ grubView) error {
		env.Unset(grubTrial)
		env.Unset(grubTries)
		return env.Set(grubDefault, other(slot))
	})
}

// PowerOn implements Simulator, step for step as packaging/grub/shoal.cfg:
// load the variables, start from the default slot, and if a trial is set
// either take one of its tries or, with none left, end it; save the trial
// variables before booting; boot with shoal.slot= on the command line.
func (g *GRUB) PowerOn(ctx context.Context) (string, error) {
	if err := g.opts.simulated(); err != nil {
		return "", err
	}
	var slot string
	err := g.update(ctx, func(env *GRUBEnv, v grubView) error {
		slot = v.def
		t, _ := env.Get(grubTrial)
		if t != SlotA && t != SlotB {
			return nil
		}
		n, _ := env.Get(grubTries)
		if len(n) == 1 && n[0] >= '1' && n[0] <= '9' {
			slot = t
			return errors.Join(env.Set(grubTries, string(n[0]-1)), env.Set(grubTrial, t))
		}
		return errors.Join(env.Set(grubTrial, ""), env.Set(grubTries, "0"))
	})
	if err != nil {
		return "", err
	}
	if err := g.opts.writeCmdline("root=PARTLABEL=shoal-root-" + slot + " ro " + cmdlineKey + slot); err != nil {
		return "", err
	}
	return slot, nil
}
