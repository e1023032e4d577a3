package boot

import (
	"fmt"
	"strings"
)

// GRUB environment block format (what grub-editenv and GRUB's load_env and
// save_env read and write): a file of fixed size, 1024 bytes by default,
// that starts with grubEnvHeader, holds "name=value\n" lines and comment
// lines starting with '#', and is padded to its size with '#'. In values,
// a backslash escapes the next byte; writers escape '\' and newline.
const (
	grubEnvHeader = "# GRUB Environment Block\n"
	// GRUBEnvSize is the size of a new block; existing blocks keep theirs.
	GRUBEnvSize = 1024
)

// GRUBEnv is a parsed GRUB environment block. It keeps every line as it was
// read, so writing it back changes only the variables that were set, as
// grub-editenv does.
type GRUBEnv struct {
	size  int
	lines []grubLine
}

type grubLine struct {
	raw   string // the line as stored, newline included
	name  string // "" for a comment
	value string // unescaped
}

// NewGRUBEnv returns an empty block of the default size.
func NewGRUBEnv() *GRUBEnv { return &GRUBEnv{size: GRUBEnvSize} }

// ParseGRUBEnv parses a GRUB environment block. It is strict where GRUB is
// lenient (GRUB stops reading at the first broken line): a block shoal
// does not fully understand is refused rather than rewritten, so nothing
// in it is lost. Errors wrap ErrCorrupt and name the offset.
func ParseGRUBEnv(b []byte) (*GRUBEnv, error) {
	bad := func(off int, format string, args ...any) error {
		return fmt.Errorf("%w: GRUB environment block at byte %d: %s", ErrCorrupt, off, fmt.Sprintf(format, args...))
	}
	if !strings.HasPrefix(string(b), grubEnvHeader) {
		return nil, bad(0, "no %q signature", strings.TrimSpace(grubEnvHeader))
	}
	env := &GRUBEnv{size: len(b)}
	s := string(b)
	for p := len(grubEnvHeader); p < len(s); {
		nl := strings.IndexByte(s[p:], '\n')
		if s[p] == '#' {
			if nl < 0 {
				// The padding: the rest of the block, all '#'.
				if strings.Trim(s[p:], "#") != "" {
					return nil, bad(p, "unterminated comment before the padding")
				}
				break
			}
			line := s[p : p+nl+1]
			if strings.IndexByte(line, 0) >= 0 {
				return nil, bad(p, "NUL byte in a comment")
			}
			env.lines = append(env.lines, grubLine{raw: line})
			p += nl + 1
			continue
		}
		eq := strings.IndexByte(s[p:], '=')
		if eq < 0 || (nl >= 0 && nl < eq) {
			return nil, bad(p, "line without '='")
		}
		if eq == 0 {
			return nil, bad(p, "empty variable name")
		}
		name := s[p : p+eq]
		if strings.IndexByte(name, 0) >= 0 {
			return nil, bad(p, "NUL byte in a variable name")
		}
		// Scan the value: a backslash takes the next byte literally, so an
		// escaped newline does not end the line.
		var val strings.Builder
		q := p + eq + 1
		for q < len(s) && s[q] != '\n' {
			c := s[q]
			if c == '\\' {
				if q+1 == len(s) {
					q++
					break
				}
				q++
				c = s[q]
			}
			if c == 0 {
				return nil, bad(q, "NUL byte in the value of %q", name)
			}
			val.WriteByte(c)
			q++
		}
		if q >= len(s) {
			return nil, bad(p, "value of %q runs to the end of the block", name)
		}
		env.lines = append(env.lines, grubLine{raw: s[p : q+1], name: name, value: val.String()})
		p = q + 1
	}
	return env, nil
}

// Get returns the value of name. With duplicate lines the last one wins,
// as it does when GRUB's load_env reads the block.
func (e *GRUBEnv) Get(name string) (string, bool) {
	for i := len(e.lines) - 1; i >= 0; i-- {
		if e.lines[i].name == name {
			return e.lines[i].value, true
		}
	}
	return "", false
}

// Vars returns the variables in block order, as "name=value".
func (e *GRUBEnv) Vars() []string {
	var vs []string
	for _, l := range e.lines {
		if l.name != "" {
			vs = append(vs, l.name+"="+l.value)
		}
	}
	return vs
}

// Set sets name to value in place (or at the end, if new) and drops any
// duplicate lines of name.
func (e *GRUBEnv) Set(name, value string) error {
	if name == "" || name[0] == '#' || strings.ContainsAny(name, "=\n\x00") {
		return fmt.Errorf("boot: GRUB variable name %q: must be non-empty, not start with '#', and hold no '=', newline or NUL", name)
	}
	if strings.IndexByte(value, 0) >= 0 {
		return fmt.Errorf("boot: GRUB variable %s: value holds a NUL byte", name)
	}
	var raw strings.Builder
	raw.WriteString(name)
	raw.WriteByte('=')
	for i := 0; i < len(value); i++ {
		if value[i] == '\\' || value[i] == '\n' {
			raw.WriteByte('\\')
		}
		raw.WriteByte(value[i])
	}
	raw.WriteByte('\n')
	line := grubLine{raw: raw.String(), name: name, value: value}
	set := false
	kept := e.lines[:0:0]
	for _, l := range e.lines {
		switch {
		case l.name != name:
			kept = append(kept, l)
		case !set:
			kept = append(kept, line)
			set = true
		}
	}
	if !set {
		kept = append(kept, line)
	}
	e.lines = kept
	return nil
}

// Unset removes every line of name.
func (e *GRUBEnv) Unset(name string) {
	kept := e.lines[:0:0]
	for _, l := range e.lines {
		if l.name != name {
			kept = append(kept, l)
		}
	}
	e.lines = kept
}

// Encode returns the block at its size, padded with '#', or ErrTooLarge.
func (e *GRUBEnv) Encode() ([]byte, error) {
	n := len(grubEnvHeader)
	for _, l := range e.lines {
		n += len(l.raw)
	}
	if n > e.size {
		return nil, fmt.Errorf("%w: GRUB environment needs %d bytes, the block holds %d", ErrTooLarge, n, e.size)
	}
	b := make([]byte, 0, e.size)
	b = append(b, grubEnvHeader...)
	for _, l := range e.lines {
		b = append(b, l.raw...)
	}
	for len(b) < e.size {
		b = append(b, '#')
	}
	return b, nil
}
