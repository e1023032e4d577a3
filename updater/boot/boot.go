package boot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/shoalnet/shoal/updater/fsys"
)

// The two slots.
const (
	SlotA = "A"
	SlotB = "B"
)

// MaxTries is the most boot attempts SetTentative accepts. The GRUB script
// has no arithmetic and counts down with one branch per value; every
// adapter shares the bound so the updater need not know which it drives.
const MaxTries = 9

// DefaultCmdline is where a running Linux system shows the command line the
// bootloader gave it; the bootloader scripts put shoal.slot=X on it.
const DefaultCmdline = "/proc/cmdline"

// Errors callers may branch on; each is wrapped with the path and detail.
var (
	// ErrBadSlot: a slot name other than A or B.
	ErrBadSlot = errors.New("boot: slot must be A or B")
	// ErrBadTries: tries outside 1..MaxTries.
	ErrBadTries = errors.New("boot: tries out of range")
	// ErrTrialOfDefault: SetTentative named the slot that already boots by
	// default; a trial needs the other one.
	ErrTrialOfDefault = errors.New("boot: slot is already the default")
	// ErrCorrupt: the boot state on disk cannot be read; it is left as is.
	ErrCorrupt = errors.New("boot: corrupt boot state")
	// ErrTooLarge: the new state does not fit the fixed-size store (GRUB
	// environment block, U-Boot environment).
	ErrTooLarge = errors.New("boot: boot state too large")
	// ErrUnsupported: the bootloader is configured in a way the adapter
	// cannot drive safely (it could not tell which slot boots).
	ErrUnsupported = errors.New("boot: unsupported bootloader configuration")
	// ErrNotSimulated: PowerOn on an adapter that reads the real kernel
	// command line; simulation needs WithCmdline pointing at a test file.
	ErrNotSimulated = errors.New("boot: simulation needs a command line file")
)

// Status is what the bootloader's stored state says, plus the slot the
// running system came from.
type Status struct {
	// Booted is the slot the running system was booted from, "" when the
	// running system does not say (no shoal.slot= on its command line).
	Booted string
	// Default is the slot the bootloader boots when no trial is pending,
	// and falls back to when a trial runs out of tries.
	Default string
	// Trial is the slot on trial ("" if none): set by SetTentative, ended
	// by MarkGood, MarkBad, or the bootloader falling back.
	Trial string
	// TriesLeft is how many more boots the bootloader gives Trial.
	TriesLeft int
}

// Tentative reports whether the running system is a trial boot that has
// not been marked good yet.
func (s Status) Tentative() bool { return s.Trial != "" && s.Trial == s.Booted }

// Adapter drives one bootloader's A/B state. Every method persists its
// change before returning (atomically, or through the store's own
// redundancy), so a power cut leaves either the old or the new state.
// Every method is idempotent: calling it again with the same arguments
// changes nothing more. Methods may be called from several goroutines.
type Adapter interface {
	// SetTentative makes the next tries power-ons (1..MaxTries) boot slot;
	// after that the bootloader falls back to the default slot, which is
	// the other one (ErrTrialOfDefault otherwise). Calling it again
	// restarts the count.
	SetTentative(ctx context.Context, slot string, tries int) error
	// Status reads the stored state and the booted slot.
	Status(ctx context.Context) (Status, error)
	// MarkGood makes slot the default and ends any trial: every later
	// power-on boots slot.
	MarkGood(ctx context.Context, slot string) error
	// MarkBad makes sure slot is not booted again until SetTentative or
	// MarkGood names it: the other slot becomes the default and any trial
	// ends.
	MarkBad(ctx context.Context, slot string) error
}

// Simulator does what the bootloader does at power-on, as the scripts in
// packaging/ describe it: choose the slot from the stored state, count a
// trial boot down (persisting the counter as the bootloader does), fall
// back when the tries are used up, and hand the kernel a command line
// naming the slot. The virtual device and the tests use it in place of a
// reboot.
type Simulator interface {
	PowerOn(ctx context.Context) (slot string, err error)
}

// Option configures an adapter.
type Option func(*options)

type options struct {
	cmdline   string
	blsPrefix string
	fs        fsys.FS
}

// WithFS makes the adapter and its simulator do all their file I/O
// through f instead of the real filesystem (fsys.OS), so that a test can
// cut the power at any write, rename or sync of the boot state with
// fsys.Crash. Every path the adapter is given is a path in f.
func WithFS(f fsys.FS) Option { return func(o *options) { o.fs = f } }

// WithCmdline reads the booted slot from path instead of /proc/cmdline;
// the adapter's simulator writes the command line it boots with there.
func WithCmdline(path string) Option { return func(o *options) { o.cmdline = path } }

// simulated refuses to simulate a boot on a system that really booted:
// the simulator must not count down the real bootloader's tries.
func (o options) simulated() error {
	if o.cmdline == DefaultCmdline || o.cmdline == "" {
		return ErrNotSimulated
	}
	return nil
}

func buildOptions(opts []Option) options {
	o := options{cmdline: DefaultCmdline, fs: fsys.OS{}}
	for _, f := range opts {
		f(&o)
	}
	if o.fs == nil {
		o.fs = fsys.OS{}
	}
	return o
}

func checkSlot(slot string) error {
	if slot != SlotA && slot != SlotB {
		return fmt.Errorf("%w: %q", ErrBadSlot, slot)
	}
	return nil
}

func checkTries(tries int) error {
	if tries < 1 || tries > MaxTries {
		return fmt.Errorf("%w: %d not in 1..%d", ErrBadTries, tries, MaxTries)
	}
	return nil
}

func other(slot string) string {
	if slot == SlotA {
		return SlotB
	}
	return SlotA
}

// cmdlineKey is the kernel parameter naming the booted slot.
const cmdlineKey = "shoal.slot="

// bootedSlot reads the booted slot from a kernel command line file: the
// last shoal.slot= parameter wins, as the kernel's own parsing would have
// it. A missing file or parameter gives "".
func (o options) bootedSlot() (string, error) {
	b, err := o.fs.ReadFile(o.cmdline)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("boot: read command line %s: %w", o.cmdline, err)
	}
	slot := ""
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, cmdlineKey); ok {
			slot = v
		}
	}
	if slot != SlotA && slot != SlotB {
		return "", nil
	}
	return slot, nil
}

// writeCmdline plays the kernel: it makes the command line the bootloader
// chose visible at the command line file.
func (o options) writeCmdline(cmdline string) error {
	return o.replaceFile(o.cmdline, []byte(strings.TrimSpace(cmdline)+"\n"))
}

// ctxErr returns the context's error, so that long-blocked callers stop
// before touching the store.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("boot: %w", err)
	}
	return nil
}

// readFile reads a whole file, naming it in the error.
func (o options) readFile(path string) ([]byte, error) {
	b, err := o.fs.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("boot: read %s: %w", path, err)
	}
	return b, nil
}

// replaceFile atomically replaces path with data: after a power cut the
// file holds the old content or the new, and once it returns the new
// content and its name are durable (the directory is synced).
func (o options) replaceFile(path string, data []byte) error {
	if err := fsys.WriteFileAtomic(o.fs, path, data, 0o644); err != nil {
		return fmt.Errorf("boot: %w", err)
	}
	return nil
}

// exists reports whether path exists; errors other than "does not exist"
// are returned, so a caller never takes an unreadable file for a missing
// one.
func (o options) exists(path string) (bool, error) {
	_, err := o.fs.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("boot: %w", err)
}
