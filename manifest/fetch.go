package manifest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"syscall"
	"time"
)

// Fetcher reads files of a repository by their slash-separated path
// relative to the repository's top (e.g. "metadata/timestamp.json").
//
// Fetch returns at most maxBytes bytes: a longer file is an error wrapping
// ErrTooLarge, and a missing one wraps ErrNotFound. The returned slice
// belongs to the caller. Implementations must be safe for concurrent use.
type Fetcher interface {
	Fetch(ctx context.Context, path string, maxBytes int64) ([]byte, error)
}

// cleanRepoPath rejects paths that could leave the repository: absolute
// paths, "..", empty or dot segments, backslashes and NUL bytes.
func cleanRepoPath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\\\x00") {
		return fmt.Errorf("repository path %q: not a relative slash path", p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("repository path %q: bad segment %q", p, seg)
		}
	}
	return nil
}

// DirFetcher reads a repository from a local directory (a mounted USB
// stick, a local mirror). Symlinks that leave the directory are refused.
type DirFetcher struct {
	Dir string
}

// Fetch implements Fetcher.
func (d DirFetcher) Fetch(ctx context.Context, p string, maxBytes int64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := cleanRepoPath(p); err != nil {
		return nil, err
	}
	r, err := os.OpenRoot(d.Dir)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	// O_NONBLOCK: opening a named pipe on hostile media must not wait
	// for a writer; the check below then refuses it. Regular files
	// ignore the flag.
	f, err := r.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", path.Join(d.Dir, p), ErrNotFound)
		}
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w: not a regular file", path.Join(d.Dir, p), ErrNotFound)
	}
	return readLimited(f, p, maxBytes)
}

// readLimited reads r to the end, failing with ErrTooLarge as soon as it
// has seen more than max bytes: the buffer never grows past max+1.
func readLimited(r io.Reader, p string, max int64) ([]byte, error) {
	if max < 0 {
		max = 0
	}
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: %w: more than %d bytes", p, ErrTooLarge, max)
	}
	return b, nil
}

// HTTPFetcher reads a repository from any static HTTP server.
type HTTPFetcher struct {
	Base   *url.URL // the repository's top; must end in "/" (NewHTTPFetcher ensures it)
	Client *http.Client
}

// NewHTTPFetcher returns a fetcher for the repository at base. client may
// be nil for a client with a 60 s overall timeout per file.
func NewHTTPFetcher(base string, client *http.Client) (*HTTPFetcher, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("repository URL %q: %w", base, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("repository URL %q: want http or https", base)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	if client == nil {
		client = &http.Client{Timeout: 60 * time.Second}
	}
	return &HTTPFetcher{Base: u, Client: client}, nil
}

// Fetch implements Fetcher. A declared Content-Length above maxBytes is
// refused before the body is read; a body that runs on past maxBytes is
// cut off there.
func (h *HTTPFetcher) Fetch(ctx context.Context, p string, maxBytes int64) ([]byte, error) {
	if err := cleanRepoPath(p); err != nil {
		return nil, err
	}
	u := h.Base.JoinPath(p)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := h.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", u, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return nil, fmt.Errorf("%s: %w (HTTP %d)", u, ErrNotFound, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("fetch %s: HTTP %s", u, resp.Status)
	}
	if resp.ContentLength > maxBytes {
		return nil, fmt.Errorf("%s: %w: server declares %d bytes, at most %d", u, ErrTooLarge, resp.ContentLength, maxBytes)
	}
	return readLimited(resp.Body, u.String(), maxBytes)
}

// NewFetcher returns an HTTPFetcher for an http(s) URL and a DirFetcher
// for anything else.
func NewFetcher(repo string) (Fetcher, error) {
	if strings.HasPrefix(repo, "http://") || strings.HasPrefix(repo, "https://") {
		return NewHTTPFetcher(repo, nil)
	}
	st, err := os.Stat(repo)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("repository %s: not a directory", repo)
	}
	return DirFetcher{Dir: repo}, nil
}
