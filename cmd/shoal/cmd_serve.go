package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoalnet/shoal/manifest"
)

func newServeCmd() *cobra.Command {
	var repo, listen string
	c := &cobra.Command{
		Use:   "serve --repo DIR [--listen ADDR]",
		Short: "Serve a release repository over HTTP",
		Long: `serve makes a repository directory available over HTTP: GET and HEAD, byte
ranges, JSON content type for metadata and octet-stream for indexes,
chunks and TUF target files (targets/), and nothing outside DIR (no "..",
no dot files, no symlinks that leave it, no directory listings). It is a
convenience: any static web server or object store that serves DIR works
as well as an origin, for shoal devices and stock TUF clients alike.
Stop it with Ctrl-C.`,
		Example: `  shoal serve --repo repo/ --listen 127.0.0.1:8080
  shoal verify --repo http://127.0.0.1:8080/ --root keys/root.json`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if repo == "" {
				return usageError{fmt.Errorf("missing --repo")}
			}
			if st, err := os.Stat(repo); err != nil {
				return err
			} else if !st.IsDir() {
				return fmt.Errorf("%s: not a directory", repo)
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			srv := &http.Server{
				Handler:           manifest.Handler(repo),
				ReadHeaderTimeout: 10 * time.Second,
				IdleTimeout:       2 * time.Minute,
			}
			fmt.Fprintf(cmd.OutOrStdout(), "serving %s on http://%s/\n", repo, ln.Addr())
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ln) }()
			select {
			case err := <-done:
				return err
			case <-ctx.Done():
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := srv.Shutdown(sctx); err != nil {
					return err
				}
				if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
					return err
				}
				return nil
			}
		},
	}
	c.Flags().StringVar(&repo, "repo", "", "repository directory")
	c.Flags().StringVar(&listen, "listen", "127.0.0.1:8080", "address to listen on")
	return c
}
