package boot

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/shoalnet/shoal/updater/fsys"
)

// BLS is the adapter for systemd-boot with Boot Loader Specification
// entries and boot counting. Each slot has one entry file in
// loader/entries named PREFIX-GEN-SLOT[+LEFT[-DONE]].conf, e.g.
// shoal-7-b+2-1.conf. systemd-boot sorts entries with no tries left last
// and the others by name, newest version first, so the entry with the
// higher GEN boots unless it is bad; loader/loader.conf says
// "default PREFIX-*" so that only shoal's entries are candidates.
//
//   - SetTentative(S, n) gives S the highest GEN and the counter +n.
//   - systemd-boot renames the entry it boots +LEFT-DONE to
//     +(LEFT-1)-(DONE+1); at +0 it sorts last and the other slot boots.
//   - MarkGood(S) drops S's counter (as systemd-bless-boot does) and
//     makes sure S has the highest GEN.
//   - MarkBad(S) renames S to +0, which sorts it last.
//
// Before any change that could leave no good entry, the other slot's entry
// is made good first, so a power cut between two renames never leaves the
// device without a slot to fall back to. Each rename is atomic and the
// directory is synced after it.
//
// The adapter does not model EFI variables (LoaderEntryDefault,
// LoaderEntryOneShot set by bootctl), which override loader.conf, nor
// sort-key lines in entries, which it refuses.
type BLS struct {
	root   string
	prefix string
	opts   options
	mu     sync.Mutex
}

var (
	_ Adapter   = (*BLS)(nil)
	_ Simulator = (*BLS)(nil)
)

// DefaultBLSPrefix names shoal's entries.
const DefaultBLSPrefix = "shoal"

// OpenBLS returns the adapter for the boot partition mounted at root (the
// directory holding loader/). On a partition with no shoal entries yet it
// writes loader/loader.conf (if missing) and one entry per slot, slot A
// the default; entries written by an installer must put shoal.slot=SLOT
// on their options line.
func OpenBLS(root string, opts ...Option) (*BLS, error) {
	o := buildOptions(opts)
	prefix := strings.ToLower(o.blsPrefix)
	if prefix == "" {
		prefix = DefaultBLSPrefix
	}
	if strings.ContainsAny(prefix, "/\\\x00*?[") {
		return nil, fmt.Errorf("boot: BLS entry prefix %q", prefix)
	}
	b := &BLS{root: root, prefix: prefix, opts: o}
	if err := b.init(); err != nil {
		return nil, err
	}
	if _, err := b.load(); err != nil {
		return nil, err
	}
	return b, nil
}

// WithEntryPrefix names the BLS adapter's entries PREFIX-GEN-SLOT.conf
// instead of shoal-GEN-SLOT.conf.
func WithEntryPrefix(prefix string) Option { return func(o *options) { o.blsPrefix = prefix } }

func (b *BLS) entriesDir() string { return filepath.Join(b.root, "loader", "entries") }
func (b *BLS) loaderConf() string { return filepath.Join(b.root, "loader", "loader.conf") }
func (b *BLS) pattern() string    { return b.prefix + "-*" }

// init creates loader.conf and the two entries on a fresh partition,
// each step durable before the next, so that a power cut anywhere in it
// leaves something the next init completes: the directories and
// loader.conf are created if missing; the entries are written B first,
// then A, and a partition holding only that first entry, exactly as init
// writes it, is one whose init was cut short.
func (b *BLS) init() error {
	dir := b.entriesDir()
	if err := fsys.MkdirAllDurable(b.opts.fs, dir, 0o755); err != nil {
		return fmt.Errorf("boot: %w", err)
	}
	if ok, err := b.opts.exists(b.loaderConf()); err != nil {
		return err
	} else if !ok {
		if err := b.opts.replaceFile(b.loaderConf(), []byte("default "+b.pattern()+"\ntimeout 0\n")); err != nil {
			return err
		}
	}
	names, err := b.listEntries()
	if err != nil {
		return err
	}
	initial := []string{SlotB, SlotA} // A gets the higher GEN
	switch {
	case len(names) == 0:
	case len(names) == 1 && names[0] == b.initialName(0, initial[0]):
		content, err := b.opts.readFile(filepath.Join(dir, names[0]))
		if err != nil {
			return err
		}
		if string(content) != initialEntry(initial[0]) {
			return nil // an installer's entry: load reports the missing one
		}
		initial = initial[1:]
	default:
		return nil
	}
	for _, slot := range initial {
		gen := 0
		if slot == SlotA {
			gen = 1
		}
		if err := b.opts.replaceFile(filepath.Join(dir, b.initialName(gen, slot)), []byte(initialEntry(slot))); err != nil {
			return err
		}
	}
	return nil
}

// initialName is the file name init gives slot's first entry.
func (b *BLS) initialName(gen int, slot string) string {
	return shoalBase(b.prefix, gen, slot) + blsSuffix
}

// initialEntry is the entry init writes for slot.
func initialEntry(slot string) string {
	return fmt.Sprintf("title shoal slot %s\nlinux /shoal/%s/linux\noptions root=PARTLABEL=shoal-root-%s ro %s%s\n",
		slot, slot, slot, cmdlineKey, slot)
}

// listEntries returns the file names in loader/entries that are shoal's,
// sorted.
func (b *BLS) listEntries() ([]string, error) {
	des, err := b.opts.fs.ReadDir(b.entriesDir())
	if err != nil {
		return nil, fmt.Errorf("boot: %w", err)
	}
	var names []string
	for _, de := range des {
		if n, ok := ParseBLSEntryName(de.Name()); ok && de.Type().IsRegular() {
			if _, ours := parseShoalBase(n.Base, b.prefix); ours {
				names = append(names, de.Name())
			}
		}
	}
	return names, nil
}

// blsEntry is one of shoal's entries as found on disk.
type blsEntry struct {
	file    string
	name    BLSEntryName
	gen     int
	slot    string
	options string
}

// blsState is both entries, indexed by slot, and loader.conf's default.
type blsState struct {
	entries map[string]*blsEntry
}

// load reads loader.conf and both entries, checking what the simulation
// assumes.
func (b *BLS) load() (blsState, error) {
	if err := b.checkLoaderConf(); err != nil {
		return blsState{}, err
	}
	names, err := b.listEntries()
	if err != nil {
		return blsState{}, err
	}
	st := blsState{entries: map[string]*blsEntry{}}
	for _, file := range names {
		n, _ := ParseBLSEntryName(file)
		se, _ := parseShoalBase(n.Base, b.prefix)
		if prev := st.entries[se.slot]; prev != nil {
			return blsState{}, fmt.Errorf("%w: two entries for slot %s in %s: %s and %s", ErrCorrupt, se.slot, b.entriesDir(), prev.file, file)
		}
		opts, err := b.readEntry(file)
		if err != nil {
			return blsState{}, err
		}
		st.entries[se.slot] = &blsEntry{file: file, name: n, gen: se.gen, slot: se.slot, options: opts}
	}
	for _, slot := range []string{SlotA, SlotB} {
		if st.entries[slot] == nil {
			return blsState{}, fmt.Errorf("%w: no entry for slot %s in %s", ErrCorrupt, slot, b.entriesDir())
		}
	}
	return st, nil
}

// readEntry returns an entry's options (all options lines, joined as
// systemd-boot joins them) and refuses sort-key lines.
func (b *BLS) readEntry(file string) (string, error) {
	data, err := b.opts.readFile(filepath.Join(b.entriesDir(), file))
	if err != nil {
		return "", err
	}
	var opts []string
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		key, value := line, ""
		if i := strings.IndexAny(line, " \t"); i >= 0 {
			key, value = line[:i], line[i+1:]
		}
		switch key {
		case "sort-key":
			return "", fmt.Errorf("%w: entry %s has a sort-key line; shoal orders its entries by name", ErrUnsupported, file)
		case "options":
			opts = append(opts, strings.TrimSpace(value))
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("%w: entry %s: %w", ErrCorrupt, file, err)
	}
	return strings.Join(opts, " "), nil
}

// checkLoaderConf requires "default PREFIX-*", the assumption under which
// the simulation picks the same entry as systemd-boot.
func (b *BLS) checkLoaderConf() error {
	data, err := b.opts.readFile(b.loaderConf())
	if err != nil {
		return err
	}
	def := ""
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "default" {
			def = strings.ToLower(strings.Join(f[1:], " "))
		}
	}
	if def != b.pattern() {
		return fmt.Errorf("%w: %s must say \"default %s\", says %q", ErrUnsupported, b.loaderConf(), b.pattern(), def)
	}
	return nil
}

// order sorts entries as systemd-boot does for entries without sort-key:
// bad ones last, then by ID (the file name) in descending version order,
// which for PREFIX-GEN-SLOT names means GEN, then SLOT, descending.
func (st blsState) order() []*blsEntry {
	es := []*blsEntry{st.entries[SlotA], st.entries[SlotB]}
	sort.SliceStable(es, func(i, j int) bool {
		a, c := es[i], es[j]
		if a.name.Bad() != c.name.Bad() {
			return !a.name.Bad()
		}
		if a.gen != c.gen {
			return a.gen > c.gen
		}
		return a.slot > c.slot
	})
	return es
}

func (st blsState) maxGen() int { return max(st.entries[SlotA].gen, st.entries[SlotB].gen) }

// status derives the Status from the entries and the booted slot. The
// booted entry is on trial while it still carries a counter that
// systemd-boot bumped (DONE > 0); otherwise a trial is pending when the
// entry that boots next has tries left.
func (st blsState) status(booted string) Status {
	s := Status{Booted: booted}
	es := st.order()
	if e := st.entries[booted]; booted != "" && e.name.Counted && e.name.Done > 0 {
		s.Trial, s.TriesLeft = booted, e.name.Left
	} else if es[0].name.Counted && es[0].name.Left > 0 {
		s.Trial, s.TriesLeft = es[0].slot, es[0].name.Left
	}
	s.Default = es[0].slot
	if s.Trial != "" {
		// What boots once the trial entry is bad.
		s.Default = other(s.Trial)
		o := st.entries[other(s.Trial)]
		t := st.entries[s.Trial]
		if o.name.Bad() && t.gen > o.gen {
			s.Default = s.Trial
		}
	}
	if s.TriesLeft > MaxTries {
		s.TriesLeft = MaxTries
	}
	return s
}

// rename gives e a new name, atomically, and syncs the directory.
func (b *BLS) rename(e *blsEntry, n BLSEntryName) error {
	file := n.String()
	if strings.EqualFold(file, e.file) {
		// Same name (boot partitions are FAT: case does not count).
		return nil
	}
	se, ok := parseShoalBase(n.Base, b.prefix)
	if !ok || se.slot != e.slot {
		return fmt.Errorf("boot: rename %s to %s: not an entry of slot %s", e.file, file, e.slot)
	}
	dir := b.entriesDir()
	if ok, err := b.opts.exists(filepath.Join(dir, file)); err != nil {
		return err
	} else if ok {
		return fmt.Errorf("boot: rename %s to %s in %s: %w", e.file, file, dir, fs.ErrExist)
	}
	if err := b.opts.fs.Rename(filepath.Join(dir, e.file), filepath.Join(dir, file)); err != nil {
		return fmt.Errorf("boot: %w", err)
	}
	if err := b.opts.fs.SyncDir(dir); err != nil {
		return fmt.Errorf("boot: sync directory %s: %w", dir, err)
	}
	e.file, e.name, e.gen = file, n, se.gen
	return nil
}

// named returns e's name with generation gen and counter c, keeping the
// base as it was written when the generation does not change.
func (b *BLS) named(e *blsEntry, gen int, c BLSEntryName) BLSEntryName {
	c.Base = e.name.Base
	if gen != e.gen {
		c.Base = shoalBase(b.prefix, gen, e.slot)
	}
	return c
}

func (b *BLS) update(ctx context.Context, f func(st blsState) error) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	st, err := b.load()
	if err != nil {
		return err
	}
	return f(st)
}

// Status implements Adapter.
func (b *BLS) Status(ctx context.Context) (Status, error) {
	var s Status
	err := b.update(ctx, func(st blsState) error {
		booted, err := b.opts.bootedSlot()
		s = st.status(booted)
		return err
	})
	return s, err
}

var uncounted = BLSEntryName{}

// SetTentative implements Adapter.
func (b *BLS) SetTentative(ctx context.Context, slot string, tries int) error {
	if err := checkSlot(slot); err != nil {
		return err
	}
	if err := checkTries(tries); err != nil {
		return err
	}
	return b.update(ctx, func(st blsState) error {
		booted, err := b.opts.bootedSlot()
		if err != nil {
			return err
		}
		if st.status(booted).Default == slot {
			return fmt.Errorf("%w: %s in %s", ErrTrialOfDefault, slot, b.entriesDir())
		}
		// The fallback first: make the other slot's entry good.
		o := st.entries[other(slot)]
		if err := b.rename(o, b.named(o, o.gen, uncounted)); err != nil {
			return err
		}
		e := st.entries[slot]
		gen := e.gen
		if gen <= o.gen {
			gen = st.maxGen() + 1
		}
		return b.rename(e, b.named(e, gen, BLSEntryName{Counted: true, Left: tries}))
	})
}

// MarkGood implements Adapter.
func (b *BLS) MarkGood(ctx context.Context, slot string) error {
	if err := checkSlot(slot); err != nil {
		return err
	}
	return b.update(ctx, func(st blsState) error {
		e, o := st.entries[slot], st.entries[other(slot)]
		gen := e.gen
		if gen <= o.gen {
			gen = st.maxGen() + 1
		}
		if err := b.rename(e, b.named(e, gen, uncounted)); err != nil {
			return err
		}
		// End a pending trial of the other slot; a bad entry stays bad.
		if o.name.Counted && o.name.Left > 0 {
			return b.rename(o, b.named(o, o.gen, uncounted))
		}
		return nil
	})
}

// MarkBad implements Adapter.
func (b *BLS) MarkBad(ctx context.Context, slot string) error {
	if err := checkSlot(slot); err != nil {
		return err
	}
	return b.update(ctx, func(st blsState) error {
		// The fallback first: make the other slot's entry good.
		o := st.entries[other(slot)]
		if err := b.rename(o, b.named(o, o.gen, uncounted)); err != nil {
			return err
		}
		e := st.entries[slot]
		if e.name.Bad() && e.name.Done == 0 {
			return nil
		}
		return b.rename(e, b.named(e, e.gen, BLSEntryName{Counted: true}))
	})
}

// PowerOn implements Simulator, as systemd-boot: take the first entry in
// sort order that matches loader.conf's default pattern, bump its counter
// by renaming it, and boot it with its options as the kernel command line.
func (b *BLS) PowerOn(ctx context.Context) (string, error) {
	if err := b.opts.simulated(); err != nil {
		return "", err
	}
	var slot, cmdline string
	err := b.update(ctx, func(st blsState) error {
		for _, e := range st.order() {
			id := strings.ToLower(e.file)
			if ok, _ := path.Match(b.pattern(), id); !ok {
				continue
			}
			slot, cmdline = e.slot, e.options
			return b.rename(e, e.name.Tried())
		}
		return fmt.Errorf("%w: no entry matches %q", ErrCorrupt, b.pattern())
	})
	if err != nil {
		return "", err
	}
	if err := b.opts.writeCmdline(cmdline); err != nil {
		return "", err
	}
	return slot, nil
}
