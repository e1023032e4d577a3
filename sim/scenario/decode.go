package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/shoalnet/shoal/internal/inputfile"
)

// MaxFileSize bounds a scenario file: scenarios are a page of settings, and
// a bigger file is the wrong file.
const MaxFileSize = 1 << 20

// Load reads, parses and checks the scenario file at path. It refuses what
// is not a regular file (a FIFO would block, a directory is a mistake).
func Load(path string) (*Scenario, error) {
	f, err := inputfile.Open(path)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", path, err)
	}
	if len(b) > MaxFileSize {
		return nil, &Error{File: path, Msg: fmt.Sprintf("larger than %d bytes; a scenario is a page of settings", MaxFileSize)}
	}
	return Parse(path, b)
}

// Parse parses and checks a scenario; name is the file it came from, for
// messages and for resolving index paths. Every problem found is reported
// (up to a bound), each an *Error wrapping ErrInvalid. Sweep values are
// checked one at a time against the rest of the file here; their
// combinations are checked by Expand.
func Parse(name string, b []byte) (*Scenario, error) {
	var tree map[string]any
	md, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&tree)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &Error{File: name, Line: pe.Position.Line, Msg: "TOML: " + pe.Message}
		}
		return nil, &Error{File: name, Msg: "TOML: " + err.Error()}
	}
	lines := keyLines(b)
	axes, errs := readAxes(name, md, tree, lines)
	s, berrs := build(name, tree, lines, nil)
	errs = append(errs, berrs...)
	if len(errs) == 0 {
		// Each swept value alone, so that a bad one is reported with
		// its axis's line before any run starts.
		for _, a := range axes {
			for _, v := range a.Values {
				t, err := override(tree, a.Key, v)
				if err == nil {
					_, e := build(name, t, lines, map[string]string{a.Key: a.Key + " = " + FormatValue(v)})
					errs = append(errs, e...)
				} else {
					errs = append(errs, &Error{File: name, Line: lines["sweep."+a.Key], Key: "sweep." + a.Key, Msg: err.Error()})
				}
				if len(errs) >= maxErrors {
					break
				}
			}
		}
	}
	if len(errs) > 0 {
		return nil, joinErrs(errs)
	}
	s.Sweep = axes
	s.tree, s.lines = tree, lines
	return s, nil
}

// joinErrs joins up to maxErrors errors, saying how many more there were.
func joinErrs(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	if len(errs) > maxErrors {
		n := len(errs) - maxErrors
		errs = append(errs[:maxErrors:maxErrors], fmt.Errorf("%w: and %d more", ErrInvalid, n))
	}
	return errors.Join(errs...)
}

// decoder turns a decoded TOML tree into a Scenario, collecting errors
// with the line of the key they are about.
type decoder struct {
	file  string
	lines map[string]int
	// swept maps a key overridden by a sweep value to the label of that
	// value, so that errors about it point at the sweep axis instead.
	swept map[string]string
	errs  []error
}

func (d *decoder) fail(key, format string, args ...any) {
	e := &Error{File: d.file, Key: key, Msg: fmt.Sprintf(format, args...)}
	// The swept key the error is about: the key itself, else the first
	// (sorted, to be deterministic) above or below it.
	for _, k := range slices.Sorted(maps.Keys(d.swept)) {
		if key == k {
			e.Sweep, e.Line = d.swept[k], d.lines["sweep."+k]
			break
		}
		if e.Sweep == "" && (strings.HasPrefix(key, k+".") || strings.HasPrefix(k, key+".")) {
			e.Sweep, e.Line = d.swept[k], d.lines["sweep."+k]
		}
	}
	if e.Sweep == "" {
		// The key itself, or the nearest written key above it (a
		// parameter inside an inline table is on its key's line).
		for k := key; k != "" && e.Line == 0; {
			e.Line = d.lines[k]
			i := strings.LastIndex(k, ".")
			if i < 0 {
				break
			}
			k = k[:i]
		}
	}
	d.errs = append(d.errs, e)
}

// table reads the keys of one TOML table, remembering which it used so
// that the rest can be reported as unknown.
type table struct {
	d    *decoder
	path string
	m    map[string]any
	used map[string]bool
}

func (d *decoder) table(path string, m map[string]any) *table {
	return &table{d: d, path: path, m: m, used: map[string]bool{}}
}

func (t *table) key(k string) string {
	if t.path == "" {
		return k
	}
	return t.path + "." + k
}

func (t *table) get(k string) (any, bool) {
	t.used[k] = true
	v, ok := t.m[k]
	return v, ok
}

func (t *table) has(k string) bool { _, ok := t.m[k]; return ok }

// sub returns the table at key k (empty when absent).
func (t *table) sub(k string) *table {
	v, ok := t.get(k)
	m, isMap := v.(map[string]any)
	if ok && !isMap {
		t.d.fail(t.key(k), "want a table ([%s]), got %s", t.key(k), typeName(v))
	}
	return t.d.table(t.key(k), m)
}

// finish reports the keys of the table nobody asked for.
func (t *table) finish() {
	var unknown []string
	for k := range t.m {
		if !t.used[k] {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		t.d.fail(t.key(k), "unknown key")
	}
}

func (t *table) missing(k string, u unit) {
	t.d.fail(t.key(k), "missing: want %v", u)
}

func (t *table) num(k string, u unit, def float64, required bool) float64 {
	v, ok := t.get(k)
	if !ok {
		if required {
			t.missing(k, u)
		}
		return def
	}
	f, err := number(v, u)
	if err != nil {
		t.d.fail(t.key(k), "%v", err)
		return def
	}
	return f
}

func (t *table) size(k string, def int64, required bool) int64 {
	f := t.num(k, unitBytes, float64(def), required)
	if f > 1<<62 || f < -(1<<62) {
		t.d.fail(t.key(k), "%g bytes is out of range", f)
		return def
	}
	return int64(math.Round(f))
}

func (t *table) duration(k string, def time.Duration) time.Duration {
	f := t.num(k, unitSeconds, def.Seconds(), false)
	return toDuration(t.d, t.key(k), f, def)
}

func toDuration(d *decoder, key string, sec float64, def time.Duration) time.Duration {
	if math.Abs(sec) > float64(math.MaxInt64)/1e9 {
		d.fail(key, "%g s is out of range", sec)
		return def
	}
	return time.Duration(math.Round(sec * 1e9))
}

func (t *table) int(k string, def int, required bool) int {
	v, ok := t.get(k)
	if !ok {
		if required {
			t.missing(k, unitCount)
		}
		return def
	}
	i, isInt := v.(int64)
	if !isInt || i > math.MaxInt32 || i < math.MinInt32 {
		t.d.fail(t.key(k), "want an integer, got %s", FormatValue(v))
		return def
	}
	return int(i)
}

func (t *table) bool(k string, def bool) bool {
	v, ok := t.get(k)
	if !ok {
		return def
	}
	b, isBool := v.(bool)
	if !isBool {
		t.d.fail(t.key(k), "want true or false, got %s", typeName(v))
		return def
	}
	return b
}

func (t *table) str(k string, def string) string {
	v, ok := t.get(k)
	if !ok {
		return def
	}
	s, isStr := v.(string)
	if !isStr {
		t.d.fail(t.key(k), "want a string, got %s", typeName(v))
		return def
	}
	return s
}

func (t *table) dist(k string, u unit, required bool) Dist {
	v, ok := t.get(k)
	if !ok {
		if required {
			t.missing(k, u)
		}
		return Dist{}
	}
	d, err := parseDist(v, u)
	if err != nil {
		t.d.fail(t.key(k), "%v", err)
	}
	return d
}

// seconds converts a Dist read in seconds; Dists stay in seconds (float),
// this only checks them for durations that fit.
func (t *table) secondsDist(k string) Dist {
	return t.dist(k, unitSeconds, false)
}

// resolve makes an index path written in a scenario relative to the
// scenario's directory, so a run works from any working directory.
func resolve(file, p string) string {
	if p == "" || filepath.IsAbs(p) || file == "" {
		return p
	}
	return filepath.Join(filepath.Dir(file), p)
}

// Defaults that the type comments promise.
const (
	DefaultLimit       = 24 * time.Hour
	DefaultSampleEvery = time.Second
	DefaultChunkSize   = 64 << 10
	DefaultTick        = 100 * time.Millisecond
	// MaxRatePrecision is the largest strategy.rate_precision.
	MaxRatePrecision = 0.1
)

// build decodes tree into a Scenario with defaults, then checks it.
func build(file string, tree map[string]any, lines map[string]int, swept map[string]string) (*Scenario, []error) {
	d := &decoder{file: file, lines: lines, swept: swept}
	root := d.table("", tree)
	s := &Scenario{File: file}
	s.Name = root.str("name", "")
	if s.Name == "" && file != "" {
		s.Name = strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
	}
	s.Description = root.str("description", "")
	s.Seeds = []int64{1}
	if v, ok := root.get("seeds"); ok {
		l, isList := v.([]any)
		if !isList {
			l = []any{v}
		}
		s.Seeds = s.Seeds[:0]
		for i, x := range l {
			n, isInt := x.(int64)
			if !isInt {
				d.fail("seeds", "[%d]: want an integer, got %s", i, FormatValue(x))
				continue
			}
			s.Seeds = append(s.Seeds, n)
		}
	}
	s.Limit = root.duration("limit", DefaultLimit)
	s.SampleEvery = root.duration("sample_every", DefaultSampleEvery)
	root.get("sweep") // read by readAxes

	rel := root.sub("release")
	s.Release = Release{
		Size:      rel.size("size", 0, false),
		Changed:   rel.num("changed", unitFraction, 1, false),
		ChunkSize: rel.size("chunk_size", DefaultChunkSize, false),
		PieceSize: rel.size("piece_size", 0, false),
		OldIndex:  rel.str("old_index", ""),
		NewIndex:  rel.str("new_index", ""),
	}
	if s.Release.OldIndex != "" || s.Release.NewIndex != "" {
		for _, k := range []string{"size", "changed", "chunk_size"} {
			if rel.has(k) {
				d.fail(rel.key(k), "conflicts with old_index and new_index, which fix the release's size, chunks and what changed")
			}
		}
		if s.Release.NewIndex == "" {
			d.fail("release.old_index", "needs new_index: the release the devices download")
		}
		s.Release.OldIndex = resolve(file, s.Release.OldIndex)
		s.Release.NewIndex = resolve(file, s.Release.NewIndex)
	} else if !rel.has("size") {
		rel.missing("size", unitBytes)
	}
	rel.finish()

	top := root.sub("topology")
	s.Topology = Topology{
		Sites:          top.int("sites", 0, true),
		DevicesPerSite: top.dist("devices_per_site", unitCount, true),
		DeviceUp:       top.dist("device_up", unitRate, true),
		DeviceDown:     top.dist("device_down", unitRate, true),
		LAN:            top.dist("lan", unitRate, true),
		UplinkUp:       top.dist("uplink_up", unitRate, true),
		UplinkDown:     top.dist("uplink_down", unitRate, true),
		OriginEgress:   top.num("origin_egress", unitRate, 0, true),
		LANLatency:     top.duration("lan_latency", 0),
		WANLatency:     top.duration("wan_latency", 0),
		OriginLatency:  top.duration("origin_latency", 0),
		WANPeers:       top.int("wan_peers", 0, false),
		InstallTime:    top.secondsDist("install_time"),
	}
	// wan: a rate, or 0, "unlimited" or "none": not a bottleneck.
	if v, ok := top.get("wan"); ok {
		if str, isStr := v.(string); !isStr || (str != "unlimited" && str != "none") {
			s.Topology.WAN = top.num("wan", unitRate, 0, false)
		}
	}
	top.finish()

	ini := root.sub("initial")
	s.Initial = Initial{
		HasBase: ini.num("has_base", unitFraction, 1, false),
		Stagger: ini.secondsDist("stagger"),
	}
	ini.finish()

	ch := root.sub("churn")
	s.Churn = Churn{
		Awake:    ch.secondsDist("awake"),
		Asleep:   ch.secondsDist("asleep"),
		PowerCut: ch.num("power_cut", unitFraction, 0, false),
		PowerOff: ch.secondsDist("power_off"),
	}
	ch.finish()

	if v, ok := root.get("failure"); ok {
		l, isList := v.([]map[string]any)
		if !isList {
			d.fail("failure", "want [[failure]] tables, got %s", typeName(v))
		}
		for i, m := range l {
			ft := d.table("failure."+strconv.Itoa(i), m)
			f := Failure{Kind: FailureKind(ft.str("kind", "")), Site: -1}
			switch f.Kind {
			case FailUplink:
				if sv, ok := ft.get("site"); !ok {
					ft.missing("site", unitCount)
				} else if str, isStr := sv.(string); isStr && str == "all" {
					f.Site = -1
				} else {
					f.Site = ft.int("site", -1, true)
				}
			case FailOrigin:
				if ft.has("site") {
					ft.get("site")
					d.fail(ft.key("site"), "an origin failure has no site")
				}
			case "":
				ft.missing("kind", unitCount)
			default:
				d.fail(ft.key("kind"), "unknown failure kind %q: want %q or %q", f.Kind, FailUplink, FailOrigin)
			}
			if !ft.has("at") {
				ft.missing("at", unitSeconds)
			}
			if !ft.has("for") {
				ft.missing("for", unitSeconds)
			}
			f.At = ft.duration("at", 0)
			f.For = ft.duration("for", 0)
			ft.finish()
			s.Failures = append(s.Failures, f)
		}
	}

	st := root.sub("strategy")
	s.Strategy = Strategy{
		Split:            st.bool("split", true),
		Rarity:           st.str("rarity", RarityRarest),
		OriginFirst:      st.bool("origin_first", true),
		Endgame:          st.bool("endgame", true),
		Window:           st.int("window", 0, false),
		OriginWindow:     st.int("origin_window", 0, false),
		SiteOriginWindow: st.int("site_origin_window", 0, false),
		Tick:             st.duration("tick", DefaultTick),
		RatePrecision:    st.num("rate_precision", unitFraction, 0, false),
	}
	st.finish()
	root.finish()

	// Check ranges even when some keys did not decode, so one pass names
	// every problem; but a key that did not decode has its default now,
	// so what validation says about it (or its table) is noise.
	bad := map[string]bool{}
	for _, e := range d.errs {
		if ke, ok := e.(*Error); ok {
			bad[ke.Key] = true
		}
	}
	decoded := len(d.errs)
	validate(s, d)
	errs := d.errs[:decoded]
	for _, e := range d.errs[decoded:] {
		ke, ok := e.(*Error)
		if ok && related(bad, ke.Key) {
			continue
		}
		errs = append(errs, e)
	}
	return s, errs
}

// related reports whether key, a key above it or one below it is in set.
func related(set map[string]bool, key string) bool {
	for k := range set {
		if k == key || strings.HasPrefix(key, k+".") || strings.HasPrefix(k, key+".") {
			return true
		}
	}
	return false
}
