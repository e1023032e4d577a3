package manifest

import "github.com/shoalnet/shoal/fetch"

// Reading a repository is package fetch's job: a Client reads its
// mirrors through fetch.Fetcher (fetch.Dir, fetch.HTTP, a bundle.Reader),
// and a missing file wraps fetch.ErrNotFound.

// cleanRepoPath rejects paths that could leave the repository (see
// fetch.CheckPath).
func cleanRepoPath(p string) error { return fetch.CheckPath(p) }
