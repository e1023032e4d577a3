package boot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/shoalnet/shoal/updater/fsys"
)

// The U-Boot variables the adapter uses. upgrade_available, bootcount and
// bootlimit are U-Boot's own boot counting (CONFIG_BOOTCOUNT_LIMIT with
// CONFIG_BOOTCOUNT_ENV); shoal_slot is ours. packaging/uboot/shoal-env.txt
// holds the bootcmd and altbootcmd that use them.
const (
	ubootSlot      = "shoal_slot"
	ubootUpgrade   = "upgrade_available"
	ubootBootcount = "bootcount"
	ubootBootlimit = "bootlimit"
)

// UBootCopy is where one copy of the environment lives, as a line of
// fw_env.config names it: a file or device, the offset in it, the size.
type UBootCopy struct {
	Path   string
	Offset int64
	Size   int
}

// UBootConfig places the environment: one copy, or two for a redundant
// environment (both the same size).
type UBootConfig struct {
	Copies []UBootCopy
	// LockFile, if set, is locked (flock) around every read-modify-write.
	// On a device set it to FwEnvLock, the lock fw_printenv and fw_setenv
	// take, so that shoal and the tools never interleave their saves.
	LockFile string
}

// FwEnvLock is the lock file of libubootenv's fw_printenv and fw_setenv.
const FwEnvLock = "/var/lock/fw_printenv.lock"

func (c UBootConfig) validate() error {
	if len(c.Copies) != 1 && len(c.Copies) != 2 {
		return fmt.Errorf("boot: U-Boot environment needs 1 or 2 copies, got %d", len(c.Copies))
	}
	for i, cp := range c.Copies {
		if cp.Path == "" || cp.Offset < 0 || cp.Size <= ubootHeader(true)+1 || cp.Size > 16<<20 {
			return fmt.Errorf("boot: U-Boot environment copy %d: path %q offset %d size %d", i, cp.Path, cp.Offset, cp.Size)
		}
	}
	if len(c.Copies) == 2 && c.Copies[0].Size != c.Copies[1].Size {
		return fmt.Errorf("boot: U-Boot environment copies differ in size (%d and %d)", c.Copies[0].Size, c.Copies[1].Size)
	}
	return nil
}

func (c UBootConfig) redundant() bool { return len(c.Copies) == 2 }

// ParseFwEnvConfig reads the fw_env.config format of fw_printenv and
// fw_setenv: lines "device offset size [sector-size [sectors]]", '#'
// comments; the offset is a C integer (0x for hex), the size is hex
// (with or without 0x), as those tools read them. The first one or two
// lines are the copies.
func ParseFwEnvConfig(text string) (UBootConfig, error) {
	var cfg UBootConfig
	for i, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) < 3 {
			return UBootConfig{}, fmt.Errorf("boot: fw_env.config line %d: want \"device offset size\"", i+1)
		}
		off, err := strconv.ParseInt(f[1], 0, 64)
		if err != nil || off < 0 {
			return UBootConfig{}, fmt.Errorf("boot: fw_env.config line %d: offset %q", i+1, f[1])
		}
		size, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimPrefix(f[2], "0x"), "0X"), 16, 31)
		if err != nil || size == 0 {
			return UBootConfig{}, fmt.Errorf("boot: fw_env.config line %d: size %q", i+1, f[2])
		}
		cfg.Copies = append(cfg.Copies, UBootCopy{Path: f[0], Offset: off, Size: int(size)})
		if len(cfg.Copies) == 2 {
			break
		}
	}
	if err := cfg.validate(); err != nil {
		return UBootConfig{}, err
	}
	return cfg, nil
}

// FwEnvConfig writes cfg in the fw_env.config format (sizes in hex).
func (c UBootConfig) FwEnvConfig() string {
	var b strings.Builder
	for _, cp := range c.Copies {
		fmt.Fprintf(&b, "%s 0x%x 0x%x\n", cp.Path, cp.Offset, cp.Size)
	}
	return b.String()
}

// UBoot is the adapter for U-Boot: it keeps the A/B state in the U-Boot
// environment and uses U-Boot's boot counting for trials.
type UBoot struct {
	cfg  UBootConfig
	opts options
	mu   sync.Mutex
}

var (
	_ Adapter   = (*UBoot)(nil)
	_ Simulator = (*UBoot)(nil)
)

// ubootState is what was read: the variables, and which copy they came
// from with its flags (for the next save).
type ubootState struct {
	env     UBootEnv
	current int
	flags   byte
}

// CreateUBootEnv writes env into every copy of a new environment (files
// are created if missing), as a board's first boot with its default
// environment would. It refuses if any copy already holds a valid
// environment, so nothing good is overwritten; so after a power cut in
// the middle of it, calling it again finishes the job. Of the options
// only WithFS matters.
func CreateUBootEnv(cfg UBootConfig, env UBootEnv, opts ...Option) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	o := buildOptions(opts)
	if _, err := readUBoot(o.fs, cfg); err == nil {
		return fmt.Errorf("boot: create U-Boot environment at %s: %w", cfg.Copies[0].Path, fs.ErrExist)
	}
	for i, cp := range cfg.Copies {
		// Copy 1 gets the higher counter, so the next save goes to copy 0.
		img, err := EncodeUBootImage(env, cp.Size, cfg.redundant(), byte(i))
		if err != nil {
			return err
		}
		if err := writeCopy(o.fs, cp, img, true); err != nil {
			return err
		}
	}
	return nil
}

// OpenUBoot returns the adapter for the environment cfg places. At least
// one copy must hold a valid environment.
func OpenUBoot(cfg UBootConfig, opts ...Option) (*UBoot, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	u := &UBoot{cfg: cfg, opts: buildOptions(opts)}
	if _, err := readUBoot(u.opts.fs, cfg); err != nil {
		return nil, err
	}
	return u, nil
}

// readCopy reads one copy; a short read (a truncated file) reads as an
// invalid copy, not an I/O failure.
func readCopy(files fsys.FS, cp UBootCopy) ([]byte, error) {
	f, err := files.OpenFile(cp.Path, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("boot: U-Boot environment: %w", err)
	}
	defer f.Close()
	img := make([]byte, cp.Size)
	n, err := f.ReadAt(img, cp.Offset)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("boot: read U-Boot environment %s at %d: %w", cp.Path, cp.Offset, err)
	}
	return img[:n], nil
}

// readUBoot reads every copy and picks the one U-Boot would use.
func readUBoot(files fsys.FS, cfg UBootConfig) (ubootState, error) {
	var (
		envs  [2]UBootEnv
		flags [2]byte
		errs  [2]error
	)
	for i, cp := range cfg.Copies {
		img, err := readCopy(files, cp)
		if err != nil {
			return ubootState{}, err
		}
		envs[i], flags[i], errs[i] = DecodeUBootImage(img, cfg.redundant())
		if errs[i] != nil {
			errs[i] = fmt.Errorf("copy %d (%s at %d): %w", i, cp.Path, cp.Offset, errs[i])
		}
	}
	switch {
	case !cfg.redundant() && errs[0] != nil:
		return ubootState{}, errs[0]
	case !cfg.redundant():
		return ubootState{env: envs[0]}, nil
	case errs[0] != nil && errs[1] != nil:
		return ubootState{}, fmt.Errorf("boot: no valid U-Boot environment copy: %w", errors.Join(errs[0], errs[1]))
	case errs[1] != nil:
		return ubootState{env: envs[0], current: 0, flags: flags[0]}, nil
	case errs[0] != nil:
		return ubootState{env: envs[1], current: 1, flags: flags[1]}, nil
	}
	c := newerCopy(flags[0], flags[1])
	return ubootState{env: envs[c], current: c, flags: flags[c]}, nil
}

// writeCopy writes one copy in place and syncs it. create allows creating
// a missing file (CreateUBootEnv only; a device node must exist).
func writeCopy(files fsys.FS, cp UBootCopy, img []byte, create bool) error {
	flag := os.O_WRONLY
	if create {
		flag |= os.O_CREATE
	}
	f, err := files.OpenFile(cp.Path, flag, 0o644)
	if err != nil {
		return fmt.Errorf("boot: U-Boot environment: %w", err)
	}
	if _, err := f.WriteAt(img, cp.Offset); err != nil {
		f.Close()
		return fmt.Errorf("boot: write U-Boot environment %s at %d: %w", cp.Path, cp.Offset, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("boot: sync U-Boot environment %s: %w", cp.Path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("boot: close U-Boot environment %s: %w", cp.Path, err)
	}
	if create {
		// A new file's name must survive a power cut too.
		if err := files.SyncDir(filepath.Dir(cp.Path)); err != nil {
			return fmt.Errorf("boot: sync directory of %s: %w", cp.Path, err)
		}
	}
	return nil
}

// save writes env as the next version: into the copy not in use (so a
// torn write leaves the current one valid), with the counter one higher.
// A single-copy environment is rewritten in place and is exposed to a
// torn write, as it is for U-Boot itself.
func (u *UBoot) save(st ubootState, env UBootEnv) error {
	target, flags := 0, byte(0)
	if u.cfg.redundant() {
		target, flags = 1-st.current, st.flags+1
	}
	cp := u.cfg.Copies[target]
	img, err := EncodeUBootImage(env, cp.Size, u.cfg.redundant(), flags)
	if err != nil {
		return err
	}
	return writeCopy(u.opts.fs, cp, img, false)
}

// lock takes the fw_printenv lock, if configured. The lock is a flock on
// a real file descriptor, shared with other processes; a simulated
// filesystem's files have none, and there u.mu, held by every caller, is
// all the locking one process needs.
func (u *UBoot) lock() (func(), error) {
	if u.cfg.LockFile == "" {
		return func() {}, nil
	}
	f, err := u.opts.fs.OpenFile(u.cfg.LockFile, os.O_WRONLY|os.O_CREATE, 0o666)
	if err != nil {
		return nil, fmt.Errorf("boot: U-Boot lock %s: %w", u.cfg.LockFile, err)
	}
	if fd, ok := f.(interface{ Fd() uintptr }); ok {
		if err := syscall.Flock(int(fd.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("boot: U-Boot lock %s: %w", u.cfg.LockFile, err)
		}
	}
	return func() { f.Close() }, nil
}

// locked runs f holding the adapter's mutex and the fw_printenv lock.
func (u *UBoot) locked(ctx context.Context, f func() error) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	unlock, err := u.lock()
	if err != nil {
		return err
	}
	defer unlock()
	return f()
}

// update reads the environment, lets f change a copy of the variables,
// and saves them if anything changed.
func (u *UBoot) update(ctx context.Context, f func(env UBootEnv) error) error {
	return u.locked(ctx, func() error {
		st, err := readUBoot(u.opts.fs, u.cfg)
		if err != nil {
			return err
		}
		env := maps.Clone(st.env)
		if err := f(env); err != nil {
			return err
		}
		if maps.Equal(env, st.env) {
			return nil
		}
		return u.save(st, env)
	})
}

// ubootView is the state the boot script derives from the variables.
type ubootView struct {
	slot      string // the slot bootcmd boots
	upgrade   bool
	bootcount uint64
	bootlimit uint64
}

func ubootRead(env UBootEnv) ubootView {
	v := ubootView{slot: SlotA}
	if env[ubootSlot] == SlotB {
		v.slot = SlotB
	}
	v.upgrade = ubootUlong(env[ubootUpgrade]) != 0
	if v.upgrade {
		v.bootcount = ubootUlong(env[ubootBootcount])
	}
	v.bootlimit = ubootUlong(env[ubootBootlimit])
	return v
}

func (v ubootView) status() Status {
	if !v.upgrade {
		return Status{Default: v.slot}
	}
	st := Status{Default: other(v.slot), Trial: v.slot}
	// With bootlimit 0 U-Boot never falls back; shoal always sets one.
	if v.bootlimit > v.bootcount {
		st.TriesLeft = int(min(v.bootlimit-v.bootcount, MaxTries))
	}
	return st
}

// Status implements Adapter.
func (u *UBoot) Status(ctx context.Context) (Status, error) {
	if err := ctxErr(ctx); err != nil {
		return Status{}, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	st, err := readUBoot(u.opts.fs, u.cfg)
	if err != nil {
		return Status{}, err
	}
	s := ubootRead(st.env).status()
	if s.Booted, err = u.opts.bootedSlot(); err != nil {
		return Status{}, err
	}
	return s, nil
}

// SetTentative implements Adapter: the trial slot becomes shoal_slot with
// upgrade_available=1, and U-Boot's bootcount runs up to bootlimit=tries.
func (u *UBoot) SetTentative(ctx context.Context, slot string, tries int) error {
	if err := checkSlot(slot); err != nil {
		return err
	}
	if err := checkTries(tries); err != nil {
		return err
	}
	return u.update(ctx, func(env UBootEnv) error {
		if ubootRead(env).status().Default == slot {
			return fmt.Errorf("%w: %s in %s", ErrTrialOfDefault, slot, u.cfg.Copies[0].Path)
		}
		env[ubootSlot] = slot
		env[ubootUpgrade] = "1"
		env[ubootBootcount] = "0"
		env[ubootBootlimit] = strconv.Itoa(tries)
		return nil
	})
}

// MarkGood implements Adapter, as U-Boot expects of a system that booted
// well: upgrade_available=0, bootcount=0.
func (u *UBoot) MarkGood(ctx context.Context, slot string) error {
	if err := checkSlot(slot); err != nil {
		return err
	}
	return u.update(ctx, func(env UBootEnv) error {
		env[ubootSlot] = slot
		env[ubootUpgrade] = "0"
		env[ubootBootcount] = "0"
		return nil
	})
}

// MarkBad implements Adapter.
func (u *UBoot) MarkBad(ctx context.Context, slot string) error {
	if err := checkSlot(slot); err != nil {
		return err
	}
	return u.update(ctx, func(env UBootEnv) error {
		env[ubootSlot] = other(slot)
		env[ubootUpgrade] = "0"
		env[ubootBootcount] = "0"
		return nil
	})
}

// PowerOn implements Simulator, as U-Boot with CONFIG_BOOTCOUNT_ENV and
// the scripts in packaging/uboot/shoal-env.txt: count the boot (stored
// only while upgrade_available is set), run altbootcmd instead of bootcmd
// once bootcount exceeds bootlimit (it switches shoal_slot to the other
// slot, clears upgrade_available and saves), then bootcmd boots shoal_slot
// with shoal.slot= in bootargs. Every saveenv writes the older copy.
func (u *UBoot) PowerOn(ctx context.Context) (string, error) {
	if err := u.opts.simulated(); err != nil {
		return "", err
	}
	slot := SlotA
	err := u.locked(ctx, func() error {
		st, err := readUBoot(u.opts.fs, u.cfg)
		if err != nil {
			return err
		}
		env := maps.Clone(st.env)
		saveenv := func() error {
			if err := u.save(st, env); err != nil {
				return err
			}
			st, err = readUBoot(u.opts.fs, u.cfg)
			return err
		}
		// bootcount_inc: load (0 unless upgrade_available), add one, store
		// (only if upgrade_available).
		upgrade := ubootUlong(env[ubootUpgrade]) != 0
		var bootcount uint64
		if upgrade {
			bootcount = ubootUlong(env[ubootBootcount])
		}
		bootcount++
		if upgrade {
			env[ubootBootcount] = strconv.FormatUint(bootcount, 10)
			if err := saveenv(); err != nil {
				return err
			}
		}
		// autoboot: past the bootlimit, altbootcmd runs instead of bootcmd.
		if limit := ubootUlong(env[ubootBootlimit]); limit != 0 && bootcount > limit {
			if env[ubootSlot] == SlotB {
				env[ubootSlot] = SlotA
			} else {
				env[ubootSlot] = SlotB
			}
			env[ubootUpgrade] = "0"
			if err := saveenv(); err != nil {
				return err
			}
		}
		// bootcmd.
		if env[ubootSlot] == SlotB {
			slot = SlotB
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if err := u.opts.writeCmdline("root=PARTLABEL=shoal-root-" + slot + " rootwait " + cmdlineKey + slot); err != nil {
		return "", err
	}
	return slot, nil
}
