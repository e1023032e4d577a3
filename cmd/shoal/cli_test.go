package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs the shoal command tree in-process and returns stdout, stderr
// and the exit code main would use.
func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := newRootCmd()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args)
	err := cmd.Execute()
	if err != nil {
		errb.WriteString(err.Error())
	}
	return out.String(), errb.String(), exitCode(err)
}

// writeImage writes n deterministic bytes with a recognisable structure.
func writeImage(t *testing.T, path string, n int, salt byte) []byte {
	t.Helper()
	b := make([]byte, n)
	x := uint32(12345)
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	// A change in the middle: everything else should be reused.
	for i := n / 2; i < n/2+1000 && i < n; i++ {
		b[i] ^= salt
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestChunkInspectDiff(t *testing.T) {
	dir := t.TempDir()
	v1, v2 := filepath.Join(dir, "v1.img"), filepath.Join(dir, "v2.img")
	writeImage(t, v1, 3<<20, 0)
	writeImage(t, v2, 3<<20, 0xff)

	out, errs, code := runCLI(t, "chunk", v1, "-o", filepath.Join(dir, "v1.idx"), "--json")
	if code != 0 {
		t.Fatalf("chunk v1: %d %s", code, errs)
	}
	var cr map[string]any
	if err := json.Unmarshal([]byte(out), &cr); err != nil {
		t.Fatalf("chunk --json: %v\n%s", err, out)
	}
	for _, k := range []string{"chunks", "bytes", "avg_chunk", "root", "seconds"} {
		if _, ok := cr[k]; !ok {
			t.Errorf("chunk --json lacks %q", k)
		}
	}
	if cr["bytes"].(float64) != 3<<20 || cr["chunks"].(float64) < 10 {
		t.Fatalf("chunk --json: %v", cr)
	}
	if _, errs, code := runCLI(t, "chunk", v2, "-o", filepath.Join(dir, "v2.idx")); code != 0 {
		t.Fatal(errs)
	}

	out, _, code = runCLI(t, "inspect", filepath.Join(dir, "v1.idx"), "--json")
	var ir map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &ir) != nil || ir["root"] != cr["root"] || ir["chunks"] != cr["chunks"] || ir["index_cid"] != cr["index_cid"] {
		t.Fatalf("inspect: %d %s", code, out)
	}

	out, _, code = runCLI(t, "diff", filepath.Join(dir, "v1.idx"), filepath.Join(dir, "v2.idx"), "--json")
	var d diffResult
	if code != 0 || json.Unmarshal([]byte(out), &d) != nil {
		t.Fatalf("diff: %d %s", code, out)
	}
	if d.TotalBytes != 3<<20 || d.NewChunks < 1 || d.NewChunks > 3 || d.NewBytes <= 0 || d.NewBytes+d.ReusedBytes+d.RepeatedBytes != d.TotalBytes {
		t.Fatalf("diff: %+v", d)
	}
	// Same image: nothing to download.
	out, _, _ = runCLI(t, "diff", filepath.Join(dir, "v1.idx"), filepath.Join(dir, "v1.idx"), "--json")
	if json.Unmarshal([]byte(out), &d) != nil || d.NewBytes != 0 || d.ReusedBytes != 3<<20 {
		t.Fatalf("self diff: %s", out)
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "a.img")
	writeImage(t, img, 1<<20, 0)
	idx := filepath.Join(dir, "a.idx")
	if _, errs, code := runCLI(t, "chunk", img, "-o", idx); code != 0 {
		t.Fatal(errs)
	}

	// Unreadable input: the path and the OS error, and no output left behind.
	out := filepath.Join(dir, "missing.idx")
	_, errs, code := runCLI(t, "chunk", filepath.Join(dir, "nope.img"), "-o", out)
	if code != exitFailure || !strings.Contains(errs, "nope.img") || !strings.Contains(errs, "no such file") {
		t.Fatalf("missing input: %d %q", code, errs)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("output written for a failed chunk run")
	}

	// Truncated and garbled indexes: integrity exit code, offset and field named.
	good, _ := os.ReadFile(idx)
	trunc := filepath.Join(dir, "trunc.idx")
	os.WriteFile(trunc, good[:len(good)-7], 0o644)
	_, errs, code = runCLI(t, "inspect", trunc)
	if code != exitIntegrity || !strings.Contains(errs, "trunc.idx") || !strings.Contains(errs, "offset") || !strings.Contains(errs, "chunks") {
		t.Fatalf("truncated: %d %q", code, errs)
	}
	garbled := bytes.Clone(good)
	garbled[9] = 5
	os.WriteFile(trunc, garbled, 0o644)
	if _, errs, code = runCLI(t, "diff", idx, trunc); code != exitIntegrity || !strings.Contains(errs, "offset 9 (kind)") {
		t.Fatalf("garbled: %d %q", code, errs)
	}

	// An existing index is not clobbered by a failed run.
	_, _, code = runCLI(t, "chunk", filepath.Join(dir, "nope.img"), "-o", idx)
	if now, _ := os.ReadFile(idx); code == 0 || !bytes.Equal(now, good) {
		t.Fatal("failed run changed the existing index")
	}

	// Usage errors.
	for _, args := range [][]string{{"chunk", img}, {"chunk", img, "-o", out, "--hash", "md5"}, {"chunk", img, "-o", out, "--min", "1M"}, {"diff", idx}, {"chunk", "--avg", "lots", img}} {
		if _, errs, code := runCLI(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want usage (%q)", args, code, errs)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"65536": 65536, "64K": 65536, "64KiB": 65536, "64kb": 65536, "1M": 1 << 20, "2GiB": 2 << 30} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("%s: %d %v", in, got, err)
		}
	}
	for _, in := range []string{"", "K", "-1", "1X", "99999999999T"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}
