package updater_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/updater"
	"github.com/shoalnet/shoal/updater/boot"
	"github.com/shoalnet/shoal/updater/fsys"
)

// initOptions are the options of a file-adapter device in dir for the
// world's keys.
func (w *world) initOptions(dir string) updater.InitOptions {
	return updater.InitOptions{
		Dir:      dir,
		SlotSize: 1<<20 + 512,
		Trust: manifest.TrustOptions{Root: filepath.Join(w.dir, "keys", "root.json"),
			LogKey: filepath.Join(w.dir, "keys", manifest.LogPubFile)},
		Device:  updater.DeviceConfig{Channel: "stable", Labels: map[string]string{"region": "eu"}},
		Adapter: "file",
		Tries:   2,
		Health:  updater.HealthConfig{Commands: []string{"true"}, Deadline: updater.Duration{Duration: time.Second}},
	}
}

// A device InitDevice creates is what its config says, reads back as
// written, and installs a release.
func TestInitDeviceFile(t *testing.T) {
	w := newWorld(t)
	v1 := w.publish("stable", 1, nil)
	dir := filepath.Join(w.dir, "dev-7")
	o := w.initOptions(dir)
	cfg, err := updater.InitDevice(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}

	// The config on disk is the one returned, and it round-trips:
	// encoded and parsed again, it is the same config.
	loaded, err := updater.LoadConfig(filepath.Join(dir, updater.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(loaded, cfg) {
		t.Fatalf("LoadConfig: %+v\nInitDevice returned %+v", loaded, cfg)
	}
	text, err := loaded.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if again, err := updater.ParseConfig(text, dir); err != nil || !reflect.DeepEqual(again, loaded) {
		t.Fatalf("the encoded config parses to %+v (%v), want %+v", again, err, loaded)
	}
	if cfg.Device.ID != "dev-7" || cfg.Device.Labels["region"] != "eu" || cfg.Boot.Tries != 2 ||
		!cfg.Boot.Virtual || cfg.Slots.Artifact != "rootfs" || len(cfg.Health.Commands) != 1 {
		t.Fatalf("config: %+v", cfg)
	}

	for _, s := range []string{"A", "B"} {
		st, err := os.Stat(cfg.SlotPath(s))
		if err != nil || st.Size() != o.SlotSize || !st.Mode().IsRegular() {
			t.Fatalf("slot %s: %v %v", s, st, err)
		}
	}
	if cfg.SlotPath("A") == cfg.SlotPath("B") {
		t.Fatal("one file for both slots")
	}
	for src, dst := range map[string]string{o.Trust.Root: "root.json", o.Trust.LogKey: manifest.LogPubFile} {
		want, _ := os.ReadFile(src)
		got, err := os.ReadFile(filepath.Join(dir, dst))
		if err != nil || len(want) == 0 || !bytes.Equal(got, want) {
			t.Fatalf("%s is not a copy of %s: %v", dst, src, err)
		}
	}
	if cfg.Trust.LogKey != manifest.LogPubFile || cfg.Trust.RequireLog {
		t.Fatalf("[trust]: %+v", cfg.Trust)
	}

	// The device boots A with nothing installed and takes v1 into B.
	if r := reboot(t, cfg); r.Booted != "A" {
		t.Fatalf("first boot: %+v", r)
	}
	res, err := w.apply(open(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	if res.Slot != "B" || !slotHolds(t, cfg, "B", v1) {
		t.Fatalf("apply: %+v", res)
	}
}

// Every boot adapter gets its state in the device directory, and the
// device boots slot A from it.
func TestInitDeviceEveryAdapter(t *testing.T) {
	w := newWorld(t)
	for _, adapter := range boot.Adapters {
		t.Run(adapter, func(t *testing.T) {
			o := w.initOptions(filepath.Join(t.TempDir(), "dev"))
			o.Adapter = adapter
			o.Trust.LogKey, o.Health = "", updater.HealthConfig{}
			cfg, err := updater.InitDevice(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			rel, _ := boot.VirtualPath(adapter)
			if cfg.Boot.Path != rel {
				t.Fatalf("[boot] path %q, want %q", cfg.Boot.Path, rel)
			}
			if _, err := os.Stat(filepath.Join(o.Dir, rel)); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(o.Dir, manifest.LogPubFile)); !errors.Is(err, fs.ErrNotExist) || cfg.Trust.LogKey != "" {
				t.Fatalf("no log key given, but log.pub: %v, [trust] log_key %q", err, cfg.Trust.LogKey)
			}
			if r := reboot(t, cfg); r.Booted != "A" {
				t.Fatalf("first boot: %+v", r)
			}
		})
	}
}

// Options that make no device are refused before anything is written.
func TestInitDeviceBadOptions(t *testing.T) {
	w := newWorld(t)
	notRoot := filepath.Join(w.dir, "not-root.json")
	os.WriteFile(notRoot, []byte(`{"signed": {}}`), 0o644)
	for _, c := range []struct {
		name   string
		mod    func(*updater.InitOptions)
		config bool // wraps ErrConfig
	}{
		{"zero slot size", func(o *updater.InitOptions) { o.SlotSize = 0 }, true},
		{"negative slot size", func(o *updater.InitOptions) { o.SlotSize = -1 << 20 }, true},
		{"tries", func(o *updater.InitOptions) { o.Tries = boot.MaxTries + 1 }, true},
		{"adapter", func(o *updater.InitOptions) { o.Adapter = "grubb" }, true},
		{"no channel", func(o *updater.InitOptions) { o.Device.Channel = "" }, true},
		{"no root", func(o *updater.InitOptions) { o.Trust.Root = "" }, true},
		{"require log without key", func(o *updater.InitOptions) { o.Trust.LogKey, o.Trust.RequireLog = "", true }, true},
		{"root that is no root", func(o *updater.InitOptions) { o.Trust.Root = notRoot }, false},
		{"missing log key", func(o *updater.InitOptions) { o.Trust.LogKey = filepath.Join(w.dir, "nope.pub") }, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := w.initOptions(filepath.Join(t.TempDir(), "dev"))
			c.mod(&o)
			_, err := updater.InitDevice(context.Background(), o)
			if err == nil || errors.Is(err, updater.ErrConfig) != c.config {
				t.Fatalf("err %v, want an error (ErrConfig: %v)", err, c.config)
			}
			if _, serr := os.Stat(o.Dir); !errors.Is(serr, fs.ErrNotExist) {
				t.Fatalf("refused (%v) but created %s", err, o.Dir)
			}
		})
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	o := w.initOptions(filepath.Join(t.TempDir(), "dev"))
	if _, err := updater.InitDevice(ctx, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled: %v", err)
	}
	if _, err := os.Stat(o.Dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("canceled init created the directory")
	}
}

// A directory that holds a device, or files where the slots go, is not
// reused: nothing in it is overwritten.
func TestInitDeviceRefusesExisting(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()

	t.Run("config", func(t *testing.T) {
		o := w.initOptions(filepath.Join(t.TempDir(), "dev"))
		os.MkdirAll(o.Dir, 0o755)
		old := []byte("# someone's device\n")
		os.WriteFile(filepath.Join(o.Dir, updater.ConfigFile), old, 0o644)
		if _, err := updater.InitDevice(ctx, o); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("init over a device: %v", err)
		}
		if b, _ := os.ReadFile(filepath.Join(o.Dir, updater.ConfigFile)); !bytes.Equal(b, old) {
			t.Fatalf("config overwritten: %q", b)
		}
		if ents, _ := os.ReadDir(o.Dir); len(ents) != 1 {
			t.Fatalf("init wrote %d entries next to the existing config", len(ents)-1)
		}
	})

	// slot-b.img is a symlink to another image: creating the slot must not
	// truncate what it points to.
	t.Run("slot symlink", func(t *testing.T) {
		o := w.initOptions(filepath.Join(t.TempDir(), "dev"))
		os.MkdirAll(o.Dir, 0o755)
		precious := filepath.Join(t.TempDir(), "precious.img")
		want := bytes.Repeat([]byte("keep"), 1000)
		os.WriteFile(precious, want, 0o644)
		if err := os.Symlink(precious, filepath.Join(o.Dir, "slot-b.img")); err != nil {
			t.Fatal(err)
		}
		if _, err := updater.InitDevice(ctx, o); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("init with slot-b.img a symlink: %v", err)
		}
		if b, _ := os.ReadFile(precious); !bytes.Equal(b, want) {
			t.Fatal("the symlink's target was changed")
		}
		assertNoDevice(t, o.Dir)
	})

	// A dangling symlink passes a Stat, but the exclusive create refuses
	// it, and slot A, already made, is removed again.
	t.Run("dangling slot symlink", func(t *testing.T) {
		o := w.initOptions(filepath.Join(t.TempDir(), "dev"))
		os.MkdirAll(o.Dir, 0o755)
		target := filepath.Join(t.TempDir(), "elsewhere.img")
		if err := os.Symlink(target, filepath.Join(o.Dir, "slot-b.img")); err != nil {
			t.Fatal(err)
		}
		if _, err := updater.InitDevice(ctx, o); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("init with slot-b.img a dangling symlink: %v", err)
		}
		if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
			t.Fatal("init created the symlink's target")
		}
		if _, err := os.Lstat(filepath.Join(o.Dir, "slot-a.img")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatal("a refused init left slot-a.img behind")
		}
		assertNoDevice(t, o.Dir)
	})

	t.Run("boot state", func(t *testing.T) {
		o := w.initOptions(filepath.Join(t.TempDir(), "dev"))
		os.MkdirAll(o.Dir, 0o755)
		os.WriteFile(filepath.Join(o.Dir, "boot.json"), []byte("{}"), 0o644)
		if _, err := updater.InitDevice(ctx, o); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("init over boot state: %v", err)
		}
		if _, err := os.Stat(filepath.Join(o.Dir, "slot-a.img")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatal("refused init created a slot")
		}
		assertNoDevice(t, o.Dir)
	})
}

// failConfig is the real filesystem, except that creating the config
// fails: the last step of an init.
type failConfig struct{ fsys.OS }

func (f failConfig) OpenFile(name string, flag int, perm fs.FileMode) (fsys.File, error) {
	if filepath.Base(name) == updater.ConfigFile {
		return nil, fmt.Errorf("open %s: %w", name, syscall.ENOSPC)
	}
	return f.OS.OpenFile(name, flag, perm)
}

// The trust files: another root.json in the directory is refused, not
// overwritten; the root given from inside the directory is kept; and an
// init that fails at its last step leaves nothing of its own, so that
// the retry succeeds.
func TestInitDeviceTrustFilesAndCleanup(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()

	t.Run("another root.json", func(t *testing.T) {
		o := w.initOptions(filepath.Join(t.TempDir(), "dev"))
		os.MkdirAll(o.Dir, 0o755)
		old := []byte("{\"someone\": \"else\"}")
		os.WriteFile(filepath.Join(o.Dir, "root.json"), old, 0o644)
		if _, err := updater.InitDevice(ctx, o); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("init over another root.json: %v", err)
		}
		if b, _ := os.ReadFile(filepath.Join(o.Dir, "root.json")); !bytes.Equal(b, old) {
			t.Fatal("root.json overwritten")
		}
		assertNoDevice(t, o.Dir)
	})

	t.Run("root from inside the directory", func(t *testing.T) {
		o := w.initOptions(filepath.Join(t.TempDir(), "dev"))
		os.MkdirAll(o.Dir, 0o755)
		b, err := os.ReadFile(o.Trust.Root)
		if err != nil {
			t.Fatal(err)
		}
		o.Trust.Root = filepath.Join(o.Dir, "root.json")
		os.WriteFile(o.Trust.Root, b, 0o644)
		if _, err := updater.InitDevice(ctx, o); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(o.Trust.Root); !bytes.Equal(got, b) {
			t.Fatal("root.json changed")
		}
	})

	t.Run("failure at the last step", func(t *testing.T) {
		o := w.initOptions(filepath.Join(t.TempDir(), "dev"))
		o.FS = failConfig{}
		if _, err := updater.InitDevice(ctx, o); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("init with the config's create failing: %v", err)
		}
		if ents, _ := os.ReadDir(o.Dir); len(ents) != 0 {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Fatalf("a failed init left %v", names)
		}
		o.FS = nil
		if _, err := updater.InitDevice(ctx, o); err != nil {
			t.Fatalf("the retry: %v", err)
		}
	})
}

func assertNoDevice(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, updater.ConfigFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("refused init wrote %s: %v", updater.ConfigFile, err)
	}
}
