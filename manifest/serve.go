package manifest

import (
	"net/http"
	"os"
	"strings"
	"syscall"

	"github.com/shoalnet/shoal/manifest/tlog"
)

// Handler serves a repository directory over HTTP, as any static web
// server would: GET and HEAD only, byte ranges, content types by area
// (JSON for metadata/; octet-stream for index/, chunks/ and targets/,
// the TUF target files of stock clients), and nothing outside the
// directory: ".." segments, dot files (locks, temporaries) and symlinks
// that leave the directory get 400 or 404, and directories are not listed.
func Handler(repo string) http.Handler {
	return &repoHandler{dir: repo}
}

type repoHandler struct {
	dir string
}

func (h *repoHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	// r.URL.Path is already percent-decoded, so "%2e%2e" arrives as "..".
	p := strings.TrimPrefix(r.URL.Path, "/")
	if err := cleanRepoPath(p); err != nil {
		http.Error(w, "bad path", http.StatusBadRequest)
		return
	}
	for _, seg := range strings.Split(p, "/") {
		if strings.HasPrefix(seg, ".") {
			http.NotFound(w, r)
			return
		}
	}
	ctype := "application/octet-stream"
	switch {
	case strings.HasPrefix(p, metaDir+"/") && strings.HasSuffix(p, ".json"):
		ctype = "application/json"
	case strings.HasPrefix(p, "index/"), strings.HasPrefix(p, "chunks/"), strings.HasPrefix(p, targetsDir+"/"):
		// Indexes and chunk objects; targets/ holds the indexes again
		// under the names stock TUF clients ask for.
	default:
		// Other areas (e.g. a transparency log) are served as bytes too.
	}
	root, err := os.OpenRoot(h.dir)
	if err != nil {
		http.Error(w, "repository unavailable", http.StatusInternalServerError)
		return
	}
	defer root.Close()
	// os.Root refuses to follow a symlink out of the directory.
	// O_NONBLOCK: a named pipe must not hold the request until a writer
	// comes; the regular-file check below refuses it.
	f, err := root.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		// Missing, unreadable or outside the root: all look the same.
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if p == metaDir+"/"+timestampName || p == metaDir+"/root.json" ||
		// The log's checkpoint and lookup shards are replaced in place too.
		p == tlog.RepoDir+"/"+tlog.CheckpointPath || strings.HasPrefix(p, tlog.RepoDir+"/lookup/") {
		// Replaced in place: caches must ask again.
		w.Header().Set("Cache-Control", "no-cache")
	} else {
		// Content-addressed or version-numbered: never changes.
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	}
	http.ServeContent(w, r, "", st.ModTime(), f)
}
