package bundle

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/shoalnet/shoal/fetch"
)

// OpenSource opens where a device takes a release from: an http(s) URL
// is an origin (configured by opts), a directory a repository (a mirror,
// a mounted stick), and any other file a bundle, opened with [Open] (so a
// named pipe or device is refused, never waited on). The closer is never
// nil; close it when done (it closes the bundle file).
func OpenSource(src string, opts ...fetch.HTTPOption) (fetch.Fetcher, io.Closer, error) {
	if strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://") {
		f, err := fetch.NewHTTP(src, opts...)
		if err != nil {
			return nil, nil, err
		}
		return f, nopCloser{}, nil
	}
	st, err := os.Stat(src)
	if err != nil {
		return nil, nil, fmt.Errorf("source: %w", err)
	}
	if st.IsDir() {
		return fetch.Dir(src), nopCloser{}, nil
	}
	r, err := Open(src)
	if err != nil {
		return nil, nil, err
	}
	return r, r, nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }
