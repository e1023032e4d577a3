package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeysInitRotate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	out, errs, code := runCLI(t, "keys", "init", dir, "--threshold", "targets=2", "--keys", "root=2", "--json")
	if code != 0 {
		t.Fatalf("keys init: %d %s", code, errs)
	}
	var r keysResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if r.RootVersion != 1 || r.Roles["targets"].Threshold != 2 || len(r.Roles["targets"].KeyIDs) != 2 || len(r.Roles["root"].KeyIDs) != 2 {
		t.Fatalf("%+v", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "root.json")); err != nil {
		t.Fatal(err)
	}
	out, errs, code = runCLI(t, "keys", "rotate", dir, "--role", "timestamp", "--json")
	if code != 0 {
		t.Fatalf("keys rotate: %d %s", code, errs)
	}
	var r2 keysResult
	json.Unmarshal([]byte(out), &r2)
	if r2.RootVersion != 2 || r2.Roles["timestamp"].KeyIDs[0] == r.Roles["timestamp"].KeyIDs[0] {
		t.Fatalf("rotate: %+v", r2)
	}
	// Usage errors.
	for _, args := range [][]string{
		{"keys", "init", dir}, // exists
		{"keys", "init", t.TempDir(), "--threshold", "targets"}, // no =N
		{"keys", "rotate", dir},                                 // no --role
		{"keys", "rotate", dir, "--role", "mirror"},             // unknown role
	} {
		if _, _, code := runCLI(t, args...); code == 0 {
			t.Errorf("%v: exit 0", args)
		}
	}
}

// A key directory whose root.json is gone still holds the log key and the
// role keys: init refuses it, names what is there, and changes nothing.
func TestKeysInitRefusesLeftoverKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	if _, errs, code := runCLI(t, "keys", "init", dir); code != 0 {
		t.Fatalf("keys init: %d %s", code, errs)
	}
	pub, err := os.ReadFile(filepath.Join(dir, "log.pub"))
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadDir(filepath.Join(dir, "private"))
	if err := os.Remove(filepath.Join(dir, "root.json")); err != nil {
		t.Fatal(err)
	}
	_, errs, code := runCLI(t, "keys", "init", dir)
	if code != exitFailure || !strings.Contains(errs, "log.pub") || !strings.Contains(errs, "private/") || !strings.Contains(errs, "already holds keys") {
		t.Fatalf("init over leftover keys: exit %d %q", code, errs)
	}
	if now, _ := os.ReadFile(filepath.Join(dir, "log.pub")); !bytes.Equal(now, pub) {
		t.Fatal("log.pub replaced")
	}
	if after, _ := os.ReadDir(filepath.Join(dir, "private")); len(after) != len(before) {
		t.Fatalf("private/ held %d files, now %d", len(before), len(after))
	}
	if _, err := os.Stat(filepath.Join(dir, "root.json")); !os.IsNotExist(err) {
		t.Fatalf("root.json written: %v", err)
	}
}
