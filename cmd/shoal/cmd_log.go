package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	sumtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/manifest/tlog"
)

func newLogCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "log",
		Short: "Audit a repository's transparency log",
		Long: `Every targets version 'shoal publish' signs is appended to an append-only
Merkle log in the repository (REPO/log), with checkpoints signed by the key
directory's log key. See docs/trust.md, "Transparency log".`,
	}
	c.AddCommand(newLogVerifyCmd())
	return c
}

// readLogKeyFile reads a log verifier key file (KEYS/log.pub) with
// manifest.ReadLogKeyFile, the one parser of these files; a leading '@',
// as 'bundle verify --log-key' takes it, is allowed.
func readLogKeyFile(name string) ([]string, error) {
	keys, err := manifest.ReadLogKeyFile(strings.TrimPrefix(name, "@"))
	if err != nil {
		return nil, fmt.Errorf("--log-key: %w", err)
	}
	return keys, nil
}

type logVerifyJSON struct {
	Repo     string `json:"repo"`
	TreeSize int64  `json:"tree_size"`
	RootHash string `json:"root_hash"`
	Signed   bool   `json:"signed"`
	OK       bool   `json:"ok"`
}

func newLogVerifyCmd() *cobra.Command {
	var (
		repo   string
		logKey string
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "verify --repo DIR|URL [--log-key FILE]",
		Short: "Re-check the whole log: every entry, every tile, the checkpoint",
		Long: `verify audits the repository's transparency log against its current
checkpoint: the checkpoint's signature by the log key (--log-key, e.g.
KEYS/log.pub), every entry bundle decoded and every entry re-hashed into the
signed root, every hash tile re-derived from the entries and compared byte
for byte, every lookup line checked, and no record logged twice or two
different targets logged under one version.

It prints the log's size and OK, or the first mismatch with the file and
the entry index, and exits with 3. Without --log-key the checkpoint's
signature is not checked (everything else is), and the output says so.`,
		Example: `  shoal log verify --repo repo/ --log-key keys/log.pub
  shoal log verify --repo http://origin:8080/ --log-key log.pub --json`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if repo == "" {
				return usageError{fmt.Errorf("missing --repo")}
			}
			f, err := fetch.New(repo)
			if err != nil {
				return err
			}
			lf := fetch.Sub(f, tlog.RepoDir)
			ctx := cmd.Context()
			var tree sumtlog.Tree
			if logKey != "" {
				keys, err := readLogKeyFile(logKey)
				if err != nil {
					return err
				}
				vs, err := tlog.NewVerifiers(keys...)
				if err != nil {
					return fmt.Errorf("%s: %w", logKey, err)
				}
				cp, err := tlog.NewReader(lf, vs).Audit(ctx)
				if err != nil {
					return fmt.Errorf("log of %s: %w", repo, err)
				}
				tree = cp.Tree
			} else {
				msg, err := lf.Fetch(ctx, tlog.CheckpointPath, tlog.MaxCheckpointSize)
				if err != nil {
					return fmt.Errorf("log of %s: %w", repo, err)
				}
				if tree, err = manifest.UnverifiedCheckpoint(msg); err != nil {
					return fmt.Errorf("log of %s: %s: %w", repo, tlog.CheckpointPath, err)
				}
				if err := tlog.NewReader(lf, nil).AuditTree(ctx, tree); err != nil {
					return fmt.Errorf("log of %s: %w", repo, err)
				}
			}
			out := logVerifyJSON{Repo: repo, TreeSize: tree.N, RootHash: tree.Hash.String(), Signed: logKey != "", OK: true}
			return printLogVerify(cmd.OutOrStdout(), asJSON, out)
		},
	}
	f := c.Flags()
	f.StringVar(&repo, "repo", "", "repository directory or http(s) URL")
	f.StringVar(&logKey, "log-key", "", "the log's verifier key file (KEYS/log.pub); without it the signature is not checked")
	f.BoolVar(&asJSON, "json", false, "print one JSON object on stdout")
	return c
}

func printLogVerify(w io.Writer, asJSON bool, out logVerifyJSON) error {
	if asJSON {
		return writeJSON(w, out)
	}
	sig := "signed checkpoint"
	if !out.Signed {
		sig = "checkpoint signature NOT checked (give --log-key)"
	}
	fmt.Fprintf(w, "log of %s: %d entries, root hash %s, %s: OK\n", out.Repo, out.TreeSize, out.RootHash, sig)
	return nil
}
