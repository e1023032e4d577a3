package boot_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/shoalnet/shoal/updater/boot"
)

// FuzzParseGRUBEnv: arbitrary blocks never panic; an accepted block
// re-encodes byte for byte, and setting a variable keeps the others.
func FuzzParseGRUBEnv(f *testing.F) {
	f.Add([]byte("# GRUB Environment Block\nshoal_default=B\nx=a\\\\b\\\nc\n# note\n" + strings.Repeat("#", 900)))
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := boot.ParseGRUBEnv(b)
		if err != nil {
			if !errors.Is(err, boot.ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		out, err := env.Encode()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("re-encode differs: %v", err)
		}
		vars := env.Vars()
		if err := env.Set("shoal_probe", "v\\\n"); err != nil {
			t.Fatal(err)
		}
		out, err = env.Encode()
		if errors.Is(err, boot.ErrTooLarge) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		back, err := boot.ParseGRUBEnv(out)
		if err != nil {
			t.Fatalf("encoded block does not parse: %v", err)
		}
		if v, _ := back.Get("shoal_probe"); v != "v\\\n" {
			t.Fatalf("probe = %q", v)
		}
		var kept []string
		for _, v := range back.Vars() {
			if !strings.HasPrefix(v, "shoal_probe=") {
				kept = append(kept, v)
			}
		}
		var want []string
		for _, v := range vars {
			if !strings.HasPrefix(v, "shoal_probe=") {
				want = append(want, v)
			}
		}
		if fmt.Sprint(kept) != fmt.Sprint(want) {
			t.Fatalf("Set changed other variables: %q, was %q", kept, want)
		}
	})
}

// FuzzDecodeUBootImage: arbitrary copies never panic; an accepted one
// re-encodes to an image that decodes to the same variables.
func FuzzDecodeUBootImage(f *testing.F) {
	img, _ := boot.EncodeUBootImage(boot.UBootEnv{"shoal_slot": "B", "bootcount": "1"}, 64, true, 3)
	f.Add(img, true)
	img, _ = boot.EncodeUBootImage(boot.UBootEnv{"a": "b"}, 32, false, 0)
	f.Add(img, false)
	f.Fuzz(func(t *testing.T, img []byte, redundant bool) {
		env, flags, err := boot.DecodeUBootImage(img, redundant)
		if err != nil {
			if !errors.Is(err, boot.ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		out, err := boot.EncodeUBootImage(env, len(img), redundant, flags)
		if err != nil {
			t.Fatalf("accepted env does not re-encode in the same size: %v", err)
		}
		back, flags2, err := boot.DecodeUBootImage(out, redundant)
		if err != nil || flags2 != flags || fmt.Sprint(back) != fmt.Sprint(env) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzParseBLSEntryName: arbitrary names never panic; a parsed name
// writes back to one that parses the same, and bumping keeps the base.
func FuzzParseBLSEntryName(f *testing.F) {
	for _, s := range []string{"shoal-3-b+2-1.conf", "foo+03-00.conf", "a+b+3.conf", "x+.conf", "auto-x.conf"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		n, ok := boot.ParseBLSEntryName(name)
		if !ok {
			return
		}
		if !n.Counted && n.String() != name[:len(name)-len(".conf")]+".conf" {
			t.Fatalf("uncounted %q writes back as %q", name, n.String())
		}
		for _, m := range []boot.BLSEntryName{n, n.Tried()} {
			back, ok := boot.ParseBLSEntryName(m.String())
			if !ok || back != m {
				t.Fatalf("%q: %+v writes as %q, which parses as %+v %v", name, m, m.String(), back, ok)
			}
		}
		if tr := n.Tried(); n.Counted && (tr.Left != max(n.Left-1, 0) || tr.Base != n.Base) {
			t.Fatalf("%q tried: %+v", name, tr)
		}
	})
}

// FuzzParseFileState: arbitrary documents never panic; accepted ones
// survive a round trip.
func FuzzParseFileState(f *testing.F) {
	f.Add([]byte(`{"default":"A","trial":"B","tries_left":2,"booted":"B"}`))
	f.Add([]byte(`{"default":"B"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := boot.ParseFileState(b)
		if err != nil {
			if !errors.Is(err, boot.ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		out, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := boot.ParseFileState(out); err != nil || back != s {
			t.Fatalf("round trip of %s: %+v, %v", out, back, err)
		}
	})
}

// FuzzParseFwEnvConfig: arbitrary configs never panic; accepted ones
// write back to the same copies.
func FuzzParseFwEnvConfig(f *testing.F) {
	f.Add("/dev/mtd1 0x0 0x20000 0x10000\n/dev/mtd2 0 20000\n")
	f.Add("# c\n/tmp/env 512 0x4000\n")
	f.Fuzz(func(t *testing.T, text string) {
		cfg, err := boot.ParseFwEnvConfig(text)
		if err != nil {
			return
		}
		back, err := boot.ParseFwEnvConfig(cfg.FwEnvConfig())
		if err != nil || fmt.Sprint(back) != fmt.Sprint(cfg) {
			t.Fatalf("round trip of %q: %+v, %v", cfg.FwEnvConfig(), back, err)
		}
	})
}
