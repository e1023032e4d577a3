package tlog

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
)

// MaxChannelLen bounds the channel name in a targets record.
const MaxChannelLen = 128

// targetsHeader is the first line of every targets record; a future,
// incompatible record format gets a new header.
const targetsHeader = "shoal-targets v1"

// Targets summarises one published targets metadata file. Its canonical
// record (see Record) is what the log holds, so a device that verified the
// targets bytes can rebuild the exact entry and ask for its proof.
type Targets struct {
	// Channel is the release channel when the targets file serves one
	// channel ("stable", "fleet-a/canary"); empty when it serves the whole
	// repository. At most MaxChannelLen bytes of ASCII letters, digits and
	// . _ - /.
	Channel string
	// Version is the TUF version of the targets metadata (≥ 1).
	Version int64
	// SHA256 is the SHA-256 of the exact targets metadata bytes as
	// published and verified (not re-encoded).
	SHA256 [32]byte
}

// TargetsOf builds the summary of the given targets metadata bytes.
func TargetsOf(channel string, version int64, targetsBytes []byte) Targets {
	return Targets{Channel: channel, Version: version, SHA256: sha256.Sum256(targetsBytes)}
}

// Record returns the canonical record of t:
//
//	shoal-targets v1
//	channel <channel>          (only when Channel is set)
//	targets-version <decimal>
//	targets-sha256 <64 lower-case hex digits>
//
// each line ending in a newline and nothing after the last.
func (t Targets) Record() ([]byte, error) {
	if t.Channel != "" {
		if err := checkChannel(t.Channel); err != nil {
			return nil, err
		}
	}
	if t.Version < 1 {
		return nil, fmt.Errorf("%w: targets version %d < 1", ErrMalformedRecord, t.Version)
	}
	var b bytes.Buffer
	b.WriteString(targetsHeader + "\n")
	if t.Channel != "" {
		b.WriteString("channel " + t.Channel + "\n")
	}
	b.WriteString("targets-version " + strconv.FormatInt(t.Version, 10) + "\n")
	b.WriteString("targets-sha256 " + hex.EncodeToString(t.SHA256[:]) + "\n")
	return b.Bytes(), nil
}

// ParseTargets parses a canonical targets record. Anything that Record
// would not produce byte for byte is rejected with ErrMalformedRecord, so
// one targets file has exactly one record.
func ParseTargets(rec []byte) (Targets, error) {
	const maxLen = len(targetsHeader) + 1 + len("channel ") + MaxChannelLen + 1 +
		len("targets-version ") + 19 + 1 + len("targets-sha256 ") + 64 + 1
	if len(rec) > maxLen {
		return Targets{}, fmt.Errorf("%w: %d bytes, longer than any targets record", ErrMalformedRecord, len(rec))
	}
	lines := bytes.Split(rec, []byte("\n"))
	if n := len(lines); (n != 4 && n != 5) || len(lines[n-1]) != 0 {
		return Targets{}, fmt.Errorf("%w: want 3 or 4 newline-terminated lines", ErrMalformedRecord)
	}
	if string(lines[0]) != targetsHeader {
		return Targets{}, fmt.Errorf("%w: first line %q is not %q", ErrMalformedRecord, lines[0], targetsHeader)
	}
	field := func(line []byte, key string) (string, error) {
		v, ok := bytes.CutPrefix(line, []byte(key+" "))
		if !ok {
			return "", fmt.Errorf("%w: line %q: want %q field", ErrMalformedRecord, line, key)
		}
		return string(v), nil
	}
	var t Targets
	var err error
	rest := lines[1 : len(lines)-1]
	if len(rest) == 3 {
		if t.Channel, err = field(rest[0], "channel"); err != nil {
			return Targets{}, err
		}
		rest = rest[1:]
	}
	v, err := field(rest[0], "targets-version")
	if err != nil {
		return Targets{}, err
	}
	if t.Version, err = strconv.ParseInt(v, 10, 64); err != nil || t.Version < 1 {
		return Targets{}, fmt.Errorf("%w: targets-version %q", ErrMalformedRecord, v)
	}
	h, err := field(rest[1], "targets-sha256")
	if err != nil {
		return Targets{}, err
	}
	if len(h) != 64 {
		return Targets{}, fmt.Errorf("%w: targets-sha256 %q is not 64 hex digits", ErrMalformedRecord, h)
	}
	if _, err := hex.Decode(t.SHA256[:], []byte(h)); err != nil {
		return Targets{}, fmt.Errorf("%w: targets-sha256 %q is not 64 hex digits", ErrMalformedRecord, h)
	}
	// Round-trip to reject every non-canonical spelling (leading zeros,
	// "+7", upper-case hex, an empty or ill-formed channel).
	canon, err := t.Record()
	if err != nil {
		return Targets{}, err
	}
	if !bytes.Equal(canon, rec) {
		return Targets{}, fmt.Errorf("%w: not in canonical form", ErrMalformedRecord)
	}
	return t, nil
}

func checkChannel(c string) error {
	if len(c) == 0 || len(c) > MaxChannelLen {
		return fmt.Errorf("%w: channel must be 1 to %d bytes, got %d", ErrMalformedRecord, MaxChannelLen, len(c))
	}
	for i := 0; i < len(c); i++ {
		switch b := c[i]; {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9', b == '.', b == '_', b == '-', b == '/':
		default:
			return fmt.Errorf("%w: channel %q: byte %d (%q) not allowed", ErrMalformedRecord, c, i, b)
		}
	}
	return nil
}
