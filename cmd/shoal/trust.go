package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/shoalnet/shoal/manifest"
)

// trustFlags are the trust options of every command that verifies
// releases (verify, bundle verify, bundle import, device init); a device
// config's [trust] table holds the same (updater.Config.TrustOptions).
type trustFlags struct {
	root       string
	logKey     string
	requireLog bool
	state      string
}

// add registers --root, --log-key, --require-log and, when stateHelp is
// not empty, --state.
func (t *trustFlags) add(f *pflag.FlagSet, rootHelp, stateHelp string) {
	f.StringVar(&t.root, "root", "", rootHelp)
	f.StringVar(&t.logKey, "log-key", "", "the transparency log's verifier key file (default with --require-log: log.pub next to --root)")
	f.BoolVar(&t.requireLog, "require-log", false, "trust only targets metadata the transparency log proves")
	if stateHelp != "" {
		f.StringVar(&t.state, "state", "", stateHelp)
	}
}

// defaultLogKey is log.pub next to the root, where `shoal keys init`
// writes it, or "" when there is none.
func (t *trustFlags) defaultLogKey() string {
	p := filepath.Join(filepath.Dir(t.root), manifest.LogPubFile)
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// options checks the flags and fills in defaults: --root is required, and
// --require-log without --log-key takes log.pub next to --root.
func (t *trustFlags) options() (manifest.TrustOptions, error) {
	if t.root == "" {
		return manifest.TrustOptions{}, usageError{errors.New("missing --root (the root.json the devices trust)")}
	}
	// A leading '@' (how 'bundle verify --log-key' once took files) is
	// still accepted.
	key := strings.TrimPrefix(t.logKey, "@")
	if key == "" && t.requireLog {
		if key = t.defaultLogKey(); key == "" {
			return manifest.TrustOptions{}, usageError{fmt.Errorf("--require-log: no --log-key given and no %s next to --root",
				filepath.Join(filepath.Dir(t.root), manifest.LogPubFile))}
		}
	}
	return manifest.TrustOptions{Root: t.root, LogKey: key, RequireLog: t.requireLog, StateDir: t.state}, nil
}

// load checks the flags and loads what they name.
func (t *trustFlags) load() (*manifest.Trust, error) {
	o, err := t.options()
	if err != nil {
		return nil, err
	}
	return o.Load()
}
