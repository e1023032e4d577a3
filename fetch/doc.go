// Package fetch reads the files of a shoal repository (metadata, indexes,
// chunk objects, transparency log tiles) from wherever they are: a local
// directory, a static HTTP server, a bundle file, later the swarm's peers.
// Everything that reads a repository goes through one small interface,
// [Fetcher], so the trust chain (manifest), the transparency log
// (manifest/tlog) and the bundle reader (manifest/bundle) neither know nor
// care where bytes come from: none of them trusts the source, they check
// what it returns.
//
// # Contract
//
// Fetch(ctx, path, maxBytes) returns the whole file at path, a
// slash-separated path relative to the repository's top
// ("metadata/timestamp.json", "log/tile/8/0/000"). It never returns, nor
// buffers, more than maxBytes bytes: a longer file fails with an error
// wrapping [ErrTooLarge]. A file the source does not have wraps
// [ErrNotFound], the one not-found error every caller branches on. The
// returned slice belongs to the caller. Implementations are safe for
// concurrent use.
//
// # Implementations
//
//   - [Dir] reads a directory (a mounted USB stick, a local mirror). It
//     stays inside the directory (os.Root), refuses paths with ".." or
//     empty segments, and opens without blocking, so a named pipe or a
//     device node on hostile media is refused ([ErrNotRegular]) instead of
//     waited on.
//   - [HTTP] reads a static web server. Connecting, the TLS handshake and
//     waiting for response headers each have a timeout; transient failures
//     (connection errors, 5xx, 429, a stalled body) are retried with
//     exponential backoff and jitter; a body that delivers less than a
//     minimum rate over a window is cut with [ErrStalled]. There is no
//     overall per-file timeout, so a large file on a thin link still
//     arrives: the stall detector and the caller's context bound it.
//   - [Sub] serves a subdirectory of another Fetcher (the transparency log
//     of a repository is Sub(f, "log")).
//
// [New] picks HTTP for an http(s) URL and Dir for a directory. [ReadAll]
// is the one bounded reader every implementation (and anything else in
// shoal that reads outside data of bounded size) uses; [OpenFile] and
// [ReadFile] open local files the same non-blocking, regular-files-only
// way Dir does.
package fetch
