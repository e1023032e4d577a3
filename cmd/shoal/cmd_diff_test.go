package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// diffPair writes two 3 MiB images that differ in 1000 bytes in the middle
// and their indexes, and returns the four paths.
func diffPair(t *testing.T) (v1idx, v2idx, v1, v2 string) {
	t.Helper()
	dir := t.TempDir()
	v1, v2 = filepath.Join(dir, "v1.img"), filepath.Join(dir, "v2.img")
	writeImage(t, v1, 3<<20, 0)
	writeImage(t, v2, 3<<20, 0xff)
	v1idx, v2idx = filepath.Join(dir, "v1.idx"), filepath.Join(dir, "v2.idx")
	for _, p := range [][2]string{{v1, v1idx}, {v2, v2idx}} {
		if _, errs, code := runCLI(t, "chunk", p[0], "-o", p[1]); code != 0 {
			t.Fatal(errs)
		}
	}
	return v1idx, v2idx, v1, v2
}

func jsonKeys(t *testing.T, out string) []string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestDiffDelta(t *testing.T) {
	v1idx, v2idx, v1, v2 := diffPair(t)

	// Without --delta: the same six fields as always.
	out, errs, code := runCLI(t, "diff", v1idx, v2idx, "--json")
	if code != 0 {
		t.Fatal(errs)
	}
	if got, want := jsonKeys(t, out), []string{"new_bytes", "new_chunks", "repeated_bytes", "reused_bytes", "total_bytes", "total_chunks"}; !slices.Equal(got, want) {
		t.Fatalf("diff --json fields %v, want %v", got, want)
	}
	var plain diffResult
	json.Unmarshal([]byte(out), &plain)

	out, errs, code = runCLI(t, "diff", v1idx, v2idx, "--delta", v1, v2, "--json")
	if code != 0 {
		t.Fatal(errs)
	}
	var d deltaDiffResult
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", d)
	if d.diffResult != plain {
		t.Errorf("--delta changed the index comparison: %+v, without %+v", d.diffResult, plain)
	}
	// The 1000 changed bytes of random data sit in one or two chunks of
	// about 64 KiB, which do not compress: their deltas are tiny.
	switch {
	case d.NewChunks == 0 || d.Deltas != d.NewChunks || d.KeptWhole != 0:
		t.Errorf("every new chunk should have a delta: %+v", d)
	case d.WholeCompressedBytes < d.NewBytes:
		t.Errorf("random chunks compressed to %d bytes from %d", d.WholeCompressedBytes, d.NewBytes)
	case d.DeltaBytes > 4000*int64(d.Deltas):
		t.Errorf("deltas of a 1000-byte change cost %d bytes", d.DeltaBytes)
	case d.DeltaBytes != d.DeltaObjectBytes || d.DeltaIndexBytes <= 112 || d.ReferenceBytes <= 0 || d.MaxRef != 4<<20 || d.Level != "best":
		t.Errorf("inconsistent fields: %+v", d)
	}

	// The text form names both downloads.
	out, errs, code = runCLI(t, "diff", v1idx, v2idx, "--delta", v1, v2, "--level", "fastest", "--max-ref", "256K")
	if code != 0 || !strings.Contains(out, "with deltas") || !strings.Contains(out, "whole chunk objects") {
		t.Fatalf("text: %d %q %q", code, out, errs)
	}
}

func TestDiffDeltaBadInput(t *testing.T) {
	v1idx, v2idx, v1, v2 := diffPair(t)
	dir := filepath.Dir(v1)

	// An image of another size than its index says, and one of the right
	// size with other bytes.
	short := filepath.Join(dir, "short.img")
	b, _ := os.ReadFile(v2)
	os.WriteFile(short, b[:len(b)-1], 0o644)
	other := filepath.Join(dir, "other.img")
	writeImage(t, other, 3<<20, 0x55)
	fifo := filepath.Join(dir, "fifo.img")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"short new image", []string{v1idx, v2idx, "--delta", v1, short}, exitIntegrity, []string{"short.img", "3145727 bytes", "3145728"}},
		{"old image other bytes", []string{v1idx, v2idx, "--delta", other, v2}, exitIntegrity, []string{"base image", "does not match its index"}},
		{"new image other bytes", []string{v1idx, v2idx, "--delta", v1, other}, exitIntegrity, []string{"target image", "does not match its index"}},
		{"images swapped", []string{v1idx, v2idx, "--delta", v2, v1}, exitIntegrity, []string{"does not match its index"}},
		{"missing image", []string{v1idx, v2idx, "--delta", v1, filepath.Join(dir, "nope.img")}, exitFailure, []string{"nope.img", "no such file"}},
		{"fifo image", []string{v1idx, v2idx, "--delta", fifo, v2}, exitFailure, []string{"fifo.img", "named pipe", "not a regular file"}},
		{"directory image", []string{v1idx, v2idx, "--delta", v1, dir}, exitFailure, []string{"directory"}},
		{"missing index", []string{filepath.Join(dir, "nope.idx"), v2idx, "--delta", v1, v2}, exitFailure, []string{"nope.idx"}},
		{"one image", []string{v1idx, v2idx, "--delta", v1}, exitUsage, []string{"4 arg"}},
		{"images without --delta", []string{v1idx, v2idx, v1, v2}, exitUsage, []string{"2 arg"}},
		{"bad level", []string{v1idx, v2idx, "--delta", v1, v2, "--level", "max"}, exitUsage, []string{"--level"}},
		{"bad max-ref", []string{v1idx, v2idx, "--delta", v1, v2, "--max-ref", "64M"}, exitUsage, []string{"--max-ref"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errs, code := runCLI(t, append([]string{"diff"}, tc.args...)...)
			if code != tc.code {
				t.Errorf("exit %d, want %d: %s", code, tc.code, errs)
			}
			for _, w := range tc.want {
				if !strings.Contains(errs, w) {
					t.Errorf("error %q lacks %q", errs, w)
				}
			}
		})
	}
}
