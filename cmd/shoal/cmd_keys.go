package main

import (
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoalnet/shoal/manifest"
)

func newKeysCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "keys",
		Short: "Create and rotate the signing keys of a release repository",
		Long: `keys manages a key directory: ed25519 keys for the four TUF roles (root,
timestamp, snapshot, targets) and the signed root metadata that devices are
provisioned with (DIR/root.json). See docs/trust.md for the key ceremony.`,
	}
	c.AddCommand(newKeysInitCmd(), newKeysRotateCmd())
	return c
}

// roleCountsFlag collects repeated role=N flags.
type roleCountsFlag map[string]int

func (f roleCountsFlag) String() string {
	var parts []string
	for r, n := range f {
		parts = append(parts, r+"="+strconv.Itoa(n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}
func (f roleCountsFlag) Type() string { return "role=N" }
func (f roleCountsFlag) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		role, n, ok := strings.Cut(part, "=")
		v, err := strconv.Atoi(n)
		if !ok || err != nil {
			return fmt.Errorf("want role=N (e.g. targets=2), got %q", part)
		}
		f[strings.TrimSpace(role)] = v
	}
	return nil
}

type keysResult struct {
	Dir         string              `json:"dir"`
	Root        string              `json:"root"`
	RootVersion int64               `json:"root_version"`
	Roles       map[string]roleInfo `json:"roles"`
	// LogKey is the transparency log's verifier key file (KEYS/log.pub)
	// and LogName its key name; empty without a log key.
	LogKey  string `json:"log_key,omitempty"`
	LogName string `json:"log_name,omitempty"`
}

type roleInfo struct {
	Threshold int      `json:"threshold"`
	KeyIDs    []string `json:"keyids"`
}

func printKeys(w io.Writer, asJSON bool, k *manifest.Keyring, verb string) error {
	r := keysResult{Dir: k.Dir(), Root: filepath.Join(k.Dir(), "root.json"), RootVersion: k.RootVersion(), Roles: map[string]roleInfo{}}
	for _, role := range manifest.Roles {
		r.Roles[role] = roleInfo{Threshold: k.Threshold(role), KeyIDs: k.KeyIDs(role)}
	}
	if s := k.LogSigner(); s != nil {
		r.LogKey, r.LogName = filepath.Join(k.Dir(), manifest.LogPubFile), s.Name()
	}
	if asJSON {
		return writeJSON(w, r)
	}
	fmt.Fprintf(w, "%s %s: root version %d\n", verb, r.Dir, r.RootVersion)
	for _, role := range manifest.Roles {
		ri := r.Roles[role]
		short := make([]string, len(ri.KeyIDs))
		for i, id := range ri.KeyIDs {
			short[i] = id[:16]
		}
		fmt.Fprintf(w, "  %-9s threshold %d of %d keys: %s\n", role, ri.Threshold, len(ri.KeyIDs), strings.Join(short, " "))
	}
	if r.LogKey != "" {
		fmt.Fprintf(w, "  log       checkpoints signed by %q\n", r.LogName)
		fmt.Fprintf(w, "provision devices with %s and %s\n", r.Root, r.LogKey)
	} else {
		fmt.Fprintf(w, "  log       no transparency log key\n")
		fmt.Fprintf(w, "provision devices with %s\n", r.Root)
	}
	return nil
}

func newKeysInitCmd() *cobra.Command {
	var (
		th      = roleCountsFlag{}
		counts  = roleCountsFlag{}
		expires time.Duration
		noLog   bool
		logName string
		asJSON  bool
	)
	c := &cobra.Command{
		Use:   "init DIR",
		Short: "Create keys for every role and the first root metadata",
		Long: `init creates DIR with ed25519 keys for root, timestamp, snapshot and targets
(private keys under DIR/private, mode 0600) and DIR/root.json, the public
trust root that devices are provisioned with. Each role's threshold is the
number of its keys that must sign; by default a role has as many keys as its
threshold.

init also makes the transparency log's key (unless --no-log): the signer in
DIR/private/log.skey (mode 0600), which publish uses to sign the log's
checkpoints, and the verifier key in DIR/log.pub, which devices and
auditors trust ('verify --require-log', 'log verify').`,
		Example: `  shoal keys init keys/
  shoal keys init keys/ --threshold root=2 --threshold targets=2 --keys root=3
  shoal keys init keys/ --log-name fleet.example/log
  shoal keys init keys/ --json | jq .roles.targets`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if noLog && logName != "" {
				return usageError{fmt.Errorf("--log-name and --no-log exclude each other")}
			}
			k, err := manifest.InitKeys(args[0], manifest.KeysOptions{Thresholds: th, Keys: counts, Expires: expires,
				NoLog: noLog, LogName: logName})
			if err != nil {
				return err
			}
			return printKeys(cmd.OutOrStdout(), asJSON, k, "created")
		},
	}
	f := c.Flags()
	f.Var(th, "threshold", "signatures a role needs, as role=N (repeatable)")
	f.Var(counts, "keys", "keys to create for a role, as role=N (default: its threshold)")
	f.DurationVar(&expires, "expires", 365*24*time.Hour, "root metadata lifetime")
	f.BoolVar(&noLog, "no-log", false, "make no transparency log key (publish then logs nothing)")
	f.StringVar(&logName, "log-name", "", "name of the log key, shown in every checkpoint (default "+manifest.DefaultLogName+")")
	f.BoolVar(&asJSON, "json", false, "print one JSON object on stdout")
	return c
}

func newKeysRotateCmd() *cobra.Command {
	var (
		role      string
		threshold int
		count     int
		expires   time.Duration
		asJSON    bool
	)
	c := &cobra.Command{
		Use:   "rotate DIR --role ROLE",
		Short: "Replace a role's keys and sign the next root version",
		Long: `rotate replaces every key of ROLE with new ones and writes the next root
version, signed by the threshold of the previous root's root keys and of the
new ones, so a device holding the old root accepts it. The old private keys
move to DIR/retired. Publish again afterwards: the repository then carries
the new root and metadata signed with the new keys.`,
		Example: `  shoal keys rotate keys/ --role timestamp
  shoal keys rotate keys/ --role targets --threshold 2 --keys 3`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if role == "" {
				return usageError{fmt.Errorf("missing --role (root, timestamp, snapshot or targets)")}
			}
			k, err := manifest.LoadKeys(args[0])
			if err != nil {
				return err
			}
			o := manifest.KeysOptions{Expires: expires, Thresholds: map[string]int{}, Keys: map[string]int{}}
			if threshold > 0 {
				o.Thresholds[role] = threshold
			}
			if count > 0 {
				o.Keys[role] = count
			}
			if err := k.Rotate(role, o); err != nil {
				return err
			}
			return printKeys(cmd.OutOrStdout(), asJSON, k, "rotated "+role+" in")
		},
	}
	f := c.Flags()
	f.StringVar(&role, "role", "", "role whose keys to replace (required)")
	f.IntVar(&threshold, "threshold", 0, "new threshold for the role (default: unchanged)")
	f.IntVar(&count, "keys", 0, "number of new keys (default: as many as before)")
	f.DurationVar(&expires, "expires", 365*24*time.Hour, "lifetime of the new root metadata")
	f.BoolVar(&asJSON, "json", false, "print one JSON object on stdout")
	return c
}
