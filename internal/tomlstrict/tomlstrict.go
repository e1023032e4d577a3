// Package tomlstrict decodes TOML configuration strictly: a key the
// target does not have is an error that names it and its line, so a typo
// does not silently fall back to a default.
package tomlstrict

import (
	"bufio"
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// Decode decodes b into v. Unknown keys are one error naming each key and
// its line.
func Decode(b []byte, v any) error {
	md, err := toml.NewDecoder(bytes.NewReader(b)).Decode(v)
	if err != nil {
		return err
	}
	und := md.Undecoded()
	if len(und) == 0 {
		return nil
	}
	keys := make([]string, len(und))
	for i, k := range und {
		keys[i] = k.String()
		if line := keyLine(b, k.String()); line > 0 {
			keys[i] += fmt.Sprintf(" (line %d)", line)
		}
	}
	slices.Sort(keys)
	return fmt.Errorf("unknown key %s", strings.Join(keys, ", "))
}

// keyLine finds the line where key (dotted, as toml.Key.String writes it)
// is set: a "name = value" line under the table that holds it, or the
// table's own header. 0 when it cannot tell (quoted or inline keys).
func keyLine(b []byte, key string) int {
	table := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "[") {
			name := strings.TrimSpace(strings.Trim(l, "[]"))
			if i := strings.Index(l, "#"); i >= 0 {
				name = strings.TrimSpace(strings.Trim(strings.TrimSpace(l[:i]), "[]"))
			}
			table = name
			if table == key {
				return line
			}
			continue
		}
		name, _, ok := strings.Cut(l, "=")
		if !ok || strings.HasPrefix(l, "#") {
			continue
		}
		full := strings.TrimSpace(name)
		if table != "" {
			full = table + "." + full
		}
		if full == key {
			return line
		}
	}
	return 0
}
