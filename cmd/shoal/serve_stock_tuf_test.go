package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"
)

// TestServeStockTUFClient: what `shoal publish` writes and `shoal serve`
// serves is a standard TUF repository: go-tuf's own client, given
// URL/metadata/ and URL/targets/, refreshes the metadata and downloads
// and verifies every target, each the bytes of its index file, or for a
// delta target (publish --delta-from) the bytes of its delta index.
func TestServeStockTUFClient(t *testing.T) {
	keys, repo, _ := publishTwo(t)
	img := filepath.Join(t.TempDir(), "v3.img")
	writeImage(t, img, 1<<20, 3)
	if _, errs, code := runCLI(t, "publish", "--repo", repo, "--keys", keys, "--channel", "stable", "--version", "3",
		"--hardware", "rpi4", "--delta-from", "1,2", "rootfs="+img); code != 0 {
		t.Fatal(errs)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := newRootCmd()
	var out syncBuffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"serve", "--repo", repo, "--listen", "127.0.0.1:0"})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop")
		}
	}()
	re := regexp.MustCompile(`http://[0-9.:]+/`)
	var url string
	for deadline := time.Now().Add(10 * time.Second); url == "" && time.Now().Before(deadline); {
		url = re.FindString(out.String())
		time.Sleep(10 * time.Millisecond)
	}
	if url == "" {
		t.Fatalf("serve printed no address: %q", out.String())
	}

	root, err := os.ReadFile(filepath.Join(keys, "root.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.New(url+"metadata/", root)
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	cfg.LocalMetadataDir, cfg.LocalTargetsDir = filepath.Join(cache, "metadata"), filepath.Join(cache, "targets")
	cfg.RemoteTargetsURL = url + "targets/"
	up, err := updater.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Refresh(); err != nil {
		t.Fatalf("stock TUF client refresh: %v", err)
	}
	targets := up.GetTopLevelTargets()
	if len(targets) != 5 {
		t.Fatalf("stock client sees %d targets, want 5 (three releases, two delta indexes)", len(targets))
	}
	deltas := 0
	for p := range targets {
		tf, err := up.GetTargetInfo(p)
		if err != nil {
			t.Fatal(err)
		}
		_, data, err := up.DownloadTarget(tf, "", "")
		if err != nil {
			t.Fatalf("stock TUF client download %s: %v", p, err)
		}
		var custom struct {
			Index string `json:"index"`
			Delta *struct {
				DeltaIndex string `json:"delta_index"`
			} `json:"delta"`
		}
		if tf.Custom == nil || json.Unmarshal(*tf.Custom, &custom) != nil || (custom.Index == "" && custom.Delta == nil) {
			t.Fatalf("target %s: no index in custom", p)
		}
		file := filepath.Join(repo, "index", custom.Index)
		if custom.Delta != nil {
			deltas++
			file = filepath.Join(repo, "deltas", "index", custom.Delta.DeltaIndex)
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, want) {
			t.Fatalf("target %s: downloaded bytes differ from %s", p, file)
		}
	}
	if deltas != 2 {
		t.Fatalf("%d delta targets, want 2", deltas)
	}
}
