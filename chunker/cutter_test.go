package chunker

import (
	"errors"
	"testing"
)

// With Params.Normalization, the exported Cutter cuts exactly where Split
// does; that is what makes bench/cdcvariants' figures for other settings
// comparable with the shipped chunker.
func TestCutterDefaultsCutWhereSplitCuts(t *testing.T) {
	for _, p := range []Params{DefaultParams, {Min: 64, Avg: 256, Max: 1024}, {Min: 2048, Avg: 8192, Max: 65536}} {
		data := imageLike(11, 5<<20)
		ix := splitBytes(t, data, Options{Params: p})
		c, err := NewCutter(p, p.Normalization())
		if err != nil {
			t.Fatal(err)
		}
		pos := 0
		for i, e := range ix.Chunks {
			if l := c.Cut(data[pos:]); l != int(e.Size) {
				t.Fatalf("params %v chunk %d: Cutter %d, Split %d", p, i, l, e.Size)
			}
			pos += int(e.Size)
		}
		if pos != len(data) {
			t.Fatalf("params %v: chunks cover %d of %d bytes", p, pos, len(data))
		}
	}
}

// Other normalizations take the same fast path (roll8, zero skipping) as the
// default one, so they must still agree with the one-byte definition.
func TestCutterOtherNormalizationsMatchReference(t *testing.T) {
	p := DefaultParams
	for _, n := range []Normalization{
		{StrictBits: 18, LooseBits: 14, Normal: p.Avg},         // FastCDC level 2
		{StrictBits: 17, LooseBits: 15, Normal: p.Avg},         // level 1
		{StrictBits: 16, LooseBits: 16, Normal: p.Min},         // no normalization
		{StrictBits: 1, LooseBits: MaxMaskBits, Normal: p.Max}, // extremes
	} {
		c, err := NewCutter(p, n)
		if err != nil {
			t.Fatalf("%+v: %v", n, err)
		}
		sizes := map[int]bool{}
		for _, data := range [][]byte{imageLike(3, 3<<20), seeded(3, 3<<20)} {
			for pos := 0; pos < len(data); {
				got, want := c.Cut(data[pos:]), c.c.cutRef(data[pos:])
				if got != want {
					t.Fatalf("%+v pos %d: cut %d, reference %d", n, pos, got, want)
				}
				sizes[got] = true
				pos += got
			}
		}
		if len(sizes) < 2 && n.StrictBits > 1 {
			t.Errorf("%+v: every chunk the same size", n)
		}
	}
	// A different normalization must actually change the boundaries.
	data := seeded(4, 2<<20)
	def, _ := NewCutter(p, p.Normalization())
	lvl2, _ := NewCutter(p, Normalization{StrictBits: 18, LooseBits: 14, Normal: p.Avg})
	same := true
	for pos := 0; pos < len(data); {
		a, b := def.Cut(data[pos:]), lvl2.Cut(data[pos:])
		if a != b {
			same = false
			break
		}
		pos += a
	}
	if same {
		t.Error("level-2 normalization cut exactly where the default does")
	}
}

func TestNewCutterRejects(t *testing.T) {
	p := DefaultParams
	for _, n := range []Normalization{
		{},
		{StrictBits: 0, LooseBits: 15, Normal: p.Avg},
		{StrictBits: 16, LooseBits: MaxMaskBits + 1, Normal: p.Avg},
		{StrictBits: 16, LooseBits: 15, Normal: p.Min - 1},
		{StrictBits: 16, LooseBits: 15, Normal: p.Max + 1},
	} {
		if _, err := NewCutter(p, n); !errors.Is(err, ErrBadParams) {
			t.Errorf("%+v: err %v, want ErrBadParams", n, err)
		}
	}
	if _, err := NewCutter(Params{Min: 10, Avg: 20, Max: 30}, Normalization{StrictBits: 4, LooseBits: 3, Normal: 15}); !errors.Is(err, ErrBadParams) {
		t.Errorf("bad params: err %v, want ErrBadParams", err)
	}
}

func TestDefaultNormalization(t *testing.T) {
	n := DefaultParams.Normalization()
	if n != (Normalization{StrictBits: 16, LooseBits: 15, Normal: 64<<10 - 12<<10}) {
		t.Fatalf("default normalization %+v", n)
	}
}
