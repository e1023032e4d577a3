package boot

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"sort"
	"strings"
)

// U-Boot environment image format (what U-Boot's saveenv and env import,
// and fw_printenv/fw_setenv, read and write), one copy per storage area:
//
//	crc32   4 bytes, little-endian, IEEE CRC-32 of the data area
//	flags   1 byte, redundant environments only: a counter that grows by
//	        one with every save (wrapping), so the newer copy wins
//	data    "name=value\0" entries, then "\0", padded to the copy's size
//
// With two copies, a save rewrites only the older one; a copy whose CRC
// does not match (a write torn by a power cut) is ignored.

// UBootEnv is the variable set of a U-Boot environment.
type UBootEnv map[string]string

// ubootHeader is the size of the header before the data area.
func ubootHeader(redundant bool) int {
	if redundant {
		return 5
	}
	return 4
}

// DecodeUBootImage checks one copy's CRC and parses its variables. It
// returns the flags byte (0 for a non-redundant image). Errors wrap
// ErrCorrupt.
func DecodeUBootImage(img []byte, redundant bool) (UBootEnv, byte, error) {
	h := ubootHeader(redundant)
	if len(img) <= h {
		return nil, 0, fmt.Errorf("%w: U-Boot environment of %d bytes has no data area", ErrCorrupt, len(img))
	}
	data := img[h:]
	if got, want := crc32.ChecksumIEEE(data), binary.LittleEndian.Uint32(img); got != want {
		return nil, 0, fmt.Errorf("%w: U-Boot environment CRC %08x, header says %08x", ErrCorrupt, got, want)
	}
	var flags byte
	if redundant {
		flags = img[4]
	}
	env, err := decodeUBootData(data)
	if err != nil {
		return nil, 0, err
	}
	return env, flags, nil
}

// decodeUBootData parses the data area: entries up to the empty one.
func decodeUBootData(data []byte) (UBootEnv, error) {
	env := UBootEnv{}
	for p := 0; ; {
		if p >= len(data) {
			return nil, fmt.Errorf("%w: U-Boot environment data has no terminating empty entry", ErrCorrupt)
		}
		n := strings.IndexByte(string(data[p:]), 0)
		if n < 0 {
			return nil, fmt.Errorf("%w: U-Boot environment entry at data byte %d runs past the end", ErrCorrupt, p)
		}
		if n == 0 {
			return env, nil
		}
		entry := string(data[p : p+n])
		name, value, ok := strings.Cut(entry, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("%w: U-Boot environment entry %q at data byte %d is not name=value", ErrCorrupt, entry, p)
		}
		env[name] = value
		p += n + 1
	}
}

// EncodeUBootImage returns a copy of the given size holding env, its
// CRC, and (if redundant) flags; the data area is padded with zeros.
func EncodeUBootImage(env UBootEnv, size int, redundant bool, flags byte) ([]byte, error) {
	h := ubootHeader(redundant)
	names := make([]string, 0, len(env))
	need := h + 1
	for name, value := range env {
		if name == "" || strings.ContainsAny(name, "=\x00") || strings.IndexByte(value, 0) >= 0 {
			return nil, fmt.Errorf("boot: U-Boot variable %q: name must be non-empty without '=' or NUL, value without NUL", name)
		}
		names = append(names, name)
		need += len(name) + len(value) + 2
	}
	if need > size {
		return nil, fmt.Errorf("%w: U-Boot environment needs %d bytes, the copy holds %d", ErrTooLarge, need, size)
	}
	// U-Boot and libubootenv store the variables sorted by name.
	sort.Strings(names)
	img := make([]byte, size)
	p := h
	for _, name := range names {
		p += copy(img[p:], name)
		img[p] = '='
		p++
		p += copy(img[p:], env[name])
		p++ // NUL
	}
	if redundant {
		img[4] = flags
	}
	binary.LittleEndian.PutUint32(img, crc32.ChecksumIEEE(img[h:]))
	return img, nil
}

// newerCopy picks the copy U-Boot and libubootenv boot from when both are
// valid: the higher flags counter, where 0 follows 255.
func newerCopy(f0, f1 byte) int {
	switch {
	case f0 == 0xff && f1 == 0:
		return 1
	case f1 == 0xff && f0 == 0:
		return 0
	case f1 > f0:
		return 1
	}
	return 0
}

// ubootUlong reads a number as U-Boot's env_get_ulong does: the leading
// decimal digits, 0 if there are none.
func ubootUlong(s string) uint64 {
	var n uint64
	for i := 0; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		d := uint64(s[i] - '0')
		if n > (^uint64(0)-d)/10 {
			return ^uint64(0)
		}
		n = n*10 + d
	}
	return n
}
