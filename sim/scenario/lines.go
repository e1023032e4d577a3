package scenario

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
)

// keyLines maps every dotted key written in a TOML file to the line that
// writes it, so that errors found after decoding (a value out of range, two
// values that contradict each other) can name the line. The TOML decoder
// knows positions but does not export them, and internal/tomlstrict only
// finds the line of unknown keys in plain tables; a scenario also needs the
// N-th [[failure]] entry's keys and the keys of [sweep], so this is a small
// scanner of its own.
//
// Keys of array-of-tables entries carry the entry's index from 0
// ("failure.1.at"); keys written dotted or quoted are joined with dots
// ("sweep.topology.uplink_up" either way). It is lenient: a line it cannot
// read is skipped, and a key it did not find has line 0.
func keyLines(src []byte) map[string]int {
	lines := map[string]int{}
	set := func(k string, n int) {
		if _, ok := lines[k]; !ok {
			lines[k] = n
		}
	}
	table := ""
	aot := map[string]int{}
	depth := 0  // open [ and { of a value continued on later lines
	multi := "" // the quote of a multi-line string being skipped
	sc := bufio.NewScanner(bytes.NewReader(src))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		if multi != "" {
			if i := strings.Index(l, multi); i >= 0 {
				// The rest of the line after the closing quotes still
				// counts towards brackets of the value.
				multi = ""
				depth += scanValue(l[i+3:], &multi)
			}
			continue
		}
		if depth > 0 {
			depth += scanValue(l, &multi)
			if depth < 0 {
				depth = 0
			}
			continue
		}
		t := strings.TrimSpace(l)
		switch {
		case t == "" || t[0] == '#':
			continue
		case strings.HasPrefix(t, "[["):
			end := strings.Index(t, "]]")
			if end < 0 {
				continue
			}
			name := joinKey(t[2:end])
			i := aot[name]
			aot[name]++
			table = name + "." + strconv.Itoa(i)
			set(name, n)
			set(table, n)
			continue
		case t[0] == '[':
			end := strings.LastIndex(t, "]")
			if c := strings.Index(t, "#"); c >= 0 {
				end = strings.LastIndex(t[:c], "]")
			}
			if end < 1 {
				continue
			}
			table = joinKey(t[1:end])
			set(table, n)
			continue
		}
		k, v, ok := cutKey(t)
		if !ok {
			continue
		}
		full := joinKey(k)
		if table != "" {
			full = table + "." + full
		}
		// Dotted keys define their parent tables on this line too.
		for i := len(table) + 1; i < len(full); i++ {
			if full[i] == '.' {
				set(full[:i], n)
			}
		}
		set(full, n)
		depth = scanValue(v, &multi)
		if depth < 0 {
			depth = 0
		}
	}
	return lines
}

// cutKey splits `key = value` at the first = outside quotes.
func cutKey(t string) (string, string, bool) {
	var q byte
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case q != 0:
			if c == q {
				q = 0
			}
		case c == '"' || c == '\'':
			q = c
		case c == '=':
			return t[:i], t[i+1:], true
		case c == '#':
			return "", "", false
		}
	}
	return "", "", false
}

// joinKey turns a TOML key as written (a.b, "a.b", 'x', a . "b") into its
// pieces joined with dots.
func joinKey(k string) string {
	var parts []string
	var cur strings.Builder
	var q byte
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case q != 0:
			if c == q {
				q = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '"' || c == '\'':
			q = c
		case c == '.':
			parts = append(parts, strings.TrimSpace(cur.String()))
			cur.Reset()
		case c == ' ' || c == '\t':
		default:
			cur.WriteByte(c)
		}
	}
	parts = append(parts, strings.TrimSpace(cur.String()))
	return strings.Join(parts, ".")
}

// scanValue counts the brackets a value leaves open at the end of a line
// (a multi-line array or table), skipping strings and comments; *multi is
// set when the line opens a multi-line string that does not close on it.
func scanValue(v string, multi *string) int {
	depth := 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch c {
		case '#':
			return depth
		case '[', '{':
			depth++
		case ']', '}':
			depth--
		case '"', '\'':
			if strings.HasPrefix(v[i:], `"""`) || strings.HasPrefix(v[i:], `'''`) {
				q := v[i : i+3]
				end := strings.Index(v[i+3:], q)
				if end < 0 {
					*multi = q
					return depth
				}
				i += 3 + end + 2
				continue
			}
			for i++; i < len(v) && v[i] != c; i++ {
				if c == '"' && v[i] == '\\' {
					i++
				}
			}
		}
	}
	return depth
}
