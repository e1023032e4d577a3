package manifest

import (
	"errors"
	"fmt"

	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"

	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest/tlog"
)

// TrustOptions are what every command that verifies releases takes to
// decide what to trust: `verify`, `update apply`, `bundle verify`,
// `bundle import`, `device init` and the daemon. [TrustOptions.Load]
// reads and checks them once, with errors that name the file.
type TrustOptions struct {
	// Root is the path of the root.json the device was provisioned with.
	Root string
	// LogKey is the path of the transparency log's verifier key file
	// (KEYS/log.pub, read with [ReadLogKeyFile]). Required with
	// RequireLog; without it, the keys are only loaded and checked.
	LogKey string
	// RequireLog makes the client trust only targets metadata the log
	// proves (Trust.Witness).
	RequireLog bool
	// StateDir is a directory of remembered trust state (DirState).
	StateDir string
	// State is the remembered trust state, instead of StateDir (setting
	// both is an error). Both empty: nothing is remembered.
	State StateStore
}

// Trust is what [TrustOptions.Load] loaded: the parts of a
// [ClientConfig] that say what to trust.
type Trust struct {
	// Root is the provisioned root.json, checked to be a root signed by
	// its own threshold.
	Root []byte
	// LogKeys are the log verifier keys, when TrustOptions.LogKey is set.
	LogKeys []string
	// Witness demands log inclusion proofs, remembering its checkpoint in
	// State; set only with TrustOptions.RequireLog.
	Witness *LogWitness
	// State is the remembered trust state; nil: nothing is remembered.
	State StateStore
}

// Load reads the root and, when given, the log key file, and checks
// them: a root that is not a valid self-signed root.json, a key file
// without a usable key, RequireLog without LogKey, or both StateDir and
// State, are errors.
func (o TrustOptions) Load() (*Trust, error) {
	if o.Root == "" {
		return nil, errors.New("trust: no root.json given")
	}
	if o.RequireLog && o.LogKey == "" {
		return nil, errors.New("trust: requiring the transparency log needs the log's verifier key file")
	}
	if o.StateDir != "" && o.State != nil {
		return nil, errors.New("trust: both a state directory and a state store given")
	}
	root, err := fetch.ReadFile(o.Root, DefaultLimits.Root)
	if err != nil {
		return nil, fmt.Errorf("trusted root: %w", err)
	}
	if _, err := trustedmetadata.New(root); err != nil {
		return nil, fmt.Errorf("trusted root %s: %w", o.Root, classify("root.json", err))
	}
	t := &Trust{Root: root, State: o.State}
	if t.State == nil {
		t.State = StateIn(o.StateDir)
	}
	if o.LogKey != "" {
		if t.LogKeys, err = ReadLogKeyFile(o.LogKey); err != nil {
			return nil, err
		}
		if _, err := tlog.NewVerifiers(t.LogKeys...); err != nil {
			return nil, fmt.Errorf("log key file %s: %w", o.LogKey, err)
		}
	}
	if o.RequireLog {
		if t.Witness, err = NewLogWitness(t.LogKeys, t.State); err != nil {
			return nil, fmt.Errorf("log key file %s: %w", o.LogKey, err)
		}
	}
	return t, nil
}

// ClientConfig returns a ClientConfig trusting t and reading mirrors;
// the caller fills in the rest (Now, Limits, Rollout).
func (t *Trust) ClientConfig(mirrors ...fetch.Fetcher) ClientConfig {
	cfg := ClientConfig{TrustedRoot: t.Root, State: t.State, Mirrors: mirrors}
	if t.Witness != nil {
		cfg.Witness = t.Witness
	}
	return cfg
}
