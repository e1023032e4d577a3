package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

// runOrigin serves a repository directory over HTTP and records the time
// of the first request of each kind.
func runOrigin(args []string) error {
	fs := flag.NewFlagSet("origin", flag.ExitOnError)
	dir := fs.String("dir", "", "repository directory")
	listen := fs.String("listen", "127.0.0.1:0", "listen address")
	events := fs.String("events", "", "file the first request of each kind is appended to")
	fs.Parse(args)
	if *dir == "" || *events == "" {
		return fmt.Errorf("origin: -dir and -events are required")
	}
	ev, err := os.OpenFile(*events, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer ev.Close()
	var mu sync.Mutex
	seen := map[string]bool{}
	counts := map[string]int{}
	files := http.FileServer(http.Dir(*dir))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := time.Now()
		kind, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		mu.Lock()
		counts[kind]++
		if !seen[kind] {
			seen[kind] = true
			fmt.Fprintf(ev, "%.6f %s %s\n", unix(t), kind, r.URL.Path)
		}
		mu.Unlock()
		files.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := &http.Server{Handler: h}
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	fmt.Fprintf(ev, "# requests by kind: %v\n", counts)
	return nil
}
