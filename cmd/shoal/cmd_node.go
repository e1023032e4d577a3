package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/shoalnet/shoal/node"
)

func newNodeCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "node",
		Short: "The shoal daemon: trade chunks with peers, hear signed releases, install them",
		Long: `A node joins its fleet's swarm (libp2p: TCP and QUIC, mDNS on the LAN, a
private DHT), hears release announcements on gossipsub and verifies each fully
before it relays it, fetches the chunks it lacks from LAN peers first, WAN
peers next and the origin last, installs through the device's updater, and
serves what it holds. A node without [device] is a cache node: a site gateway
that keeps whole releases and serves its LAN. See docs/swarm.md.`,
	}
	c.AddCommand(newNodeRunCmd(), newNodeStatusCmd(), newNodeAnnounceCmd())
	return c
}

func newNodeRunCmd() *cobra.Command {
	var cfgPath, logLevel, cpuProfile string
	c := &cobra.Command{
		Use:   "run --config node.toml",
		Short: "Run the daemon until SIGINT or SIGTERM",
		Example: `  shoal node run --config /etc/shoal/node.toml
  shoal node run --config gateway.toml --log-level debug`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cfgPath == "" {
				return usageError{fmt.Errorf("--config is required")}
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)}
			}
			cfg, err := node.LoadConfig(cfgPath)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer func() { pprof.StopCPUProfile(); f.Close() }()
			}
			ctx := cmd.Context()
			n, err := node.New(ctx, cfg, node.WithLogger(log))
			if err != nil {
				return err
			}
			defer n.Close()
			log.Info("node started", "peer_id", n.ID().String(), "addrs", n.Addrs(), "api", cfg.Node.API, "cache_node", cfg.CacheNode())
			// The API failing (its port taken) stops the node.
			ctx, cancel := context.WithCancelCause(ctx)
			defer cancel(nil)
			errc := make(chan error, 1)
			go func() {
				err := n.ServeAPI(ctx)
				if err != nil {
					cancel(err)
				}
				errc <- err
			}()
			if err := n.Run(ctx); err != nil {
				return err
			}
			// SIGINT or SIGTERM: a graceful stop is a success. Transfers
			// resume at the next start from what the slot holds.
			log.Info("node stopping", "cause", context.Cause(ctx))
			return <-errc
		},
	}
	c.Flags().StringVar(&cfgPath, "config", "", "node config (node.toml)")
	c.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error (JSON lines on stderr)")
	c.Flags().StringVar(&cpuProfile, "cpu-profile", "", "write a Go CPU profile to `FILE` until the node stops (for benchmarks)")
	c.Flags().MarkHidden("cpu-profile")
	return c
}

// nodeAPI is the API address of --api, or of --config's [node] api.
func nodeAPI(api, cfgPath string) (string, error) {
	if api != "" {
		return api, nil
	}
	if cfgPath == "" {
		return node.DefaultAPI, nil
	}
	cfg, err := node.LoadConfig(cfgPath)
	if err != nil {
		return "", err
	}
	return cfg.APIAddr()
}

func newNodeStatusCmd() *cobra.Command {
	var cfgPath, api string
	var asJSON bool
	c := &cobra.Command{
		Use:   "status [--config node.toml | --api HOST:PORT]",
		Short: "Show a running node's peers, releases, transfers and update state",
		Example: `  shoal node status
  shoal node status --config /etc/shoal/node.toml --json`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := nodeAPI(api, cfgPath)
			if err != nil {
				return err
			}
			s, err := node.ReadStatus(cmd.Context(), addr)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), s)
			}
			w := cmd.OutOrStdout()
			kind := "device node"
			if s.CacheNode {
				kind = "cache node"
			}
			fmt.Fprintf(w, "peer     %s (%s, fleet %s, channels %v)\n", s.PeerID, kind, s.Fleet, s.Channels)
			lan := 0
			for _, p := range s.Peers {
				if p.Class == "lan" {
					lan++
				}
			}
			fmt.Fprintf(w, "peers    %d (%d LAN, %d WAN)\n", len(s.Peers), lan, len(s.Peers)-lan)
			sort.Slice(s.Releases, func(i, j int) bool { return s.Releases[i].Name < s.Releases[j].Name })
			for _, r := range s.Releases {
				fmt.Fprintf(w, "holds    %s (%s)\n", r.Name, r.Index)
			}
			for _, t := range s.Transfers {
				state := "in progress"
				if t.Done {
					state = "done"
				}
				what := t.Kind
				if t.Release != "" && t.Release != t.Index {
					what += " of " + t.Release
				}
				fmt.Fprintf(w, "transfer %s (%s) %s: %d/%d pieces; from LAN %s, WAN %s, origin %s; %d bad blocks\n", t.Index, what, state, t.Held, t.Total,
					humanBytes(t.Bytes["lan"]), humanBytes(t.Bytes["wan"]), humanBytes(t.Bytes["origin"]), t.BadBlocks)
			}
			fmt.Fprintf(w, "served   %s in %d blocks\n", humanBytes(s.Served.Bytes), s.Served.Blocks)
			if u := s.Updater; u != nil {
				fmt.Fprintf(w, "updater  %s, slot %s v%d", u.State, u.ActiveSlot, u.ActiveVersion)
				if u.StagedVersion != 0 {
					fmt.Fprintf(w, ", v%d staged in slot %s", u.StagedVersion, u.TargetSlot)
				}
				fmt.Fprintln(w)
			}
			if s.LastError != "" {
				fmt.Fprintf(w, "error    %s\n", s.LastError)
			}
			return nil
		},
	}
	c.Flags().StringVar(&cfgPath, "config", "", "node config (node.toml), for its [node] api")
	c.Flags().StringVar(&api, "api", "", "the node API's address (default: "+node.DefaultAPI+")")
	c.Flags().BoolVar(&asJSON, "json", false, "print the status object as JSON")
	return c
}

func newNodeAnnounceCmd() *cobra.Command {
	var cfgPath, api, repo string
	c := &cobra.Command{
		Use:   "announce [--repo DIR|URL] [--config node.toml | --api HOST:PORT]",
		Short: "Have a running node announce a repository's current release to the fleet",
		Long: `announce asks the node to publish the repository's current signed metadata on
its release topics (default: the node's [node] origin). Every node verifies it
before it relays it, then fetches and installs the release.`,
		Example: `  shoal publish --repo repo --keys keys --channel stable --version 7 rootfs=img
  shoal node announce --repo repo --config gateway.toml`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := nodeAPI(api, cfgPath)
			if err != nil {
				return err
			}
			if repo != "" && !isURL(repo) {
				// The node resolves paths from its own working directory.
				if repo, err = absPath(repo); err != nil {
					return err
				}
			}
			if err := node.RequestAnnounce(cmd.Context(), addr, repo); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "announced")
			return nil
		},
	}
	c.Flags().StringVar(&repo, "repo", "", "repository directory or URL (default: the node's origin)")
	c.Flags().StringVar(&cfgPath, "config", "", "node config (node.toml), for its [node] api")
	c.Flags().StringVar(&api, "api", "", "the node API's address (default: "+node.DefaultAPI+")")
	return c
}

func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// absPath resolves an existing path from this process's directory.
func absPath(p string) (string, error) {
	if _, err := os.Stat(p); err != nil {
		return "", err
	}
	return filepath.Abs(p)
}
