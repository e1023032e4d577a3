package boot

import (
	"fmt"
	"strconv"
	"strings"
)

// Boot Loader Specification entries count boot attempts in their file
// names: NAME+LEFT-DONE.conf, or NAME+LEFT.conf (DONE is then 0). The
// bootloader renames an entry to +(LEFT-1)-(DONE+1) each time it boots
// it; an entry with LEFT 0 is "bad" and sorts after all others; a good
// boot renames it to NAME.conf.

const blsSuffix = ".conf"

// maxBLSCounter is the largest counter systemd-boot accepts (INT_MAX); a
// larger one makes the name uncounted.
const maxBLSCounter = 1<<31 - 1

// BLSEntryName is an entry file name split as systemd-boot splits it.
type BLSEntryName struct {
	// Base is the name without the counter and without ".conf".
	Base string
	// Counted is set when the name carries a +LEFT[-DONE] counter.
	Counted bool
	// Left and Done are the counters; HasDone is set when the "-DONE"
	// part was written (the older form leaves it out).
	Left, Done int
	HasDone    bool
}

// Bad reports whether the entry has no tries left.
func (n BLSEntryName) Bad() bool { return n.Counted && n.Left == 0 }

// String writes the name back, counters without padding as systemd-boot
// writes them.
func (n BLSEntryName) String() string {
	switch {
	case !n.Counted:
		return n.Base + blsSuffix
	case n.HasDone:
		return fmt.Sprintf("%s+%d-%d%s", n.Base, n.Left, n.Done, blsSuffix)
	}
	return fmt.Sprintf("%s+%d%s", n.Base, n.Left, blsSuffix)
}

// Tried returns the name after one more boot attempt: LEFT down by one
// (not below zero), DONE up by one, always in the +LEFT-DONE form.
func (n BLSEntryName) Tried() BLSEntryName {
	if !n.Counted {
		return n
	}
	if n.Left > 0 {
		n.Left--
	}
	if n.Done < maxBLSCounter {
		n.Done++
	}
	n.HasDone = true
	return n
}

// ParseBLSEntryName splits a file name of loader/entries as systemd-boot
// does. ok is false for names systemd-boot does not load as entries (not
// ending in ".conf", hidden, or "auto-"). The counter is the part after
// the last '+'; if it is not digits [-digits] right before ".conf", the
// whole name is the base and the entry is uncounted, so names that
// themselves hold '+' or '-' parse safely. Leading zeros (fixed-width
// counters such as +03-00) are accepted.
func ParseBLSEntryName(file string) (n BLSEntryName, ok bool) {
	if file == "" || file[0] == '.' || strings.ContainsAny(file, "/\x00") ||
		len(file) < len(blsSuffix) || !strings.EqualFold(file[len(file)-len(blsSuffix):], blsSuffix) ||
		strings.HasPrefix(strings.ToLower(file), "auto-") {
		return BLSEntryName{}, false
	}
	stem := file[:len(file)-len(blsSuffix)]
	n.Base = stem
	plus := strings.LastIndexByte(stem, '+')
	if plus < 0 {
		return n, true
	}
	counter := stem[plus+1:]
	left, rest, okLeft := leadingNumber(counter)
	if !okLeft {
		return n, true
	}
	done, hasDone := 0, false
	if rest != "" {
		if rest[0] != '-' {
			return n, true
		}
		d, tail, okDone := leadingNumber(rest[1:])
		if !okDone || tail != "" {
			return n, true
		}
		done, hasDone = d, true
	}
	return BLSEntryName{Base: stem[:plus], Counted: true, Left: left, Done: done, HasDone: hasDone}, true
}

// leadingNumber reads at least one decimal digit, up to maxBLSCounter.
func leadingNumber(s string) (n int, rest string, ok bool) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, s, false
	}
	v, err := strconv.ParseUint(s[:i], 10, 64)
	if err != nil || v > maxBLSCounter {
		return 0, s, false
	}
	return int(v), s[i:], true
}

// shoalEntry is what the adapter reads from a base name of its own:
// PREFIX-GEN-SLOT, where GEN orders the entries (higher boots first) and
// SLOT is a or b.
type shoalEntry struct {
	gen  int
	slot string
}

// parseShoalBase splits base as PREFIX-GEN-SLOT for the given (lowercase)
// prefix; parsing runs from the right, so the prefix may hold '-' or '+'.
func parseShoalBase(base, prefix string) (shoalEntry, bool) {
	i := strings.LastIndexByte(base, '-')
	if i < 0 {
		return shoalEntry{}, false
	}
	slot := strings.ToUpper(base[i+1:])
	if slot != SlotA && slot != SlotB {
		return shoalEntry{}, false
	}
	j := strings.LastIndexByte(base[:i], '-')
	if j < 0 || !strings.EqualFold(base[:j], prefix) {
		return shoalEntry{}, false
	}
	gen, rest, ok := leadingNumber(base[j+1 : i])
	if !ok || rest != "" {
		return shoalEntry{}, false
	}
	return shoalEntry{gen: gen, slot: slot}, true
}

func shoalBase(prefix string, gen int, slot string) string {
	return fmt.Sprintf("%s-%d-%s", prefix, gen, strings.ToLower(slot))
}
