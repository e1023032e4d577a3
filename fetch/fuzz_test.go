package fetch

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
)

// FuzzHTTPFetch serves arbitrary bodies with arbitrary declared lengths:
// the fetcher never returns more than its bound, and whatever it returns
// is the body.
func FuzzHTTPFetch(f *testing.F) {
	var (
		mu       sync.Mutex
		body     []byte
		declared string
		status   int
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		b, d, s := body, declared, status
		mu.Unlock()
		if d != "" {
			w.Header().Set("Content-Length", d)
		}
		w.WriteHeader(s)
		w.Write(b)
	}))
	f.Cleanup(srv.Close)
	h, err := NewHTTP(srv.URL, WithClient(srv.Client()), WithRetries(0))
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("hello"), int64(5), int64(10), uint16(200))
	f.Add([]byte("hello world"), int64(-1), int64(4), uint16(200))
	f.Add([]byte("x"), int64(1<<40), int64(4), uint16(200))
	f.Add([]byte("gone"), int64(4), int64(10), uint16(404))
	f.Fuzz(func(t *testing.T, b []byte, decl, max int64, st uint16) {
		if max < 0 || max > 1<<20 {
			return
		}
		mu.Lock()
		body, declared, status = b, "", 200+int(st%300)
		if decl >= 0 {
			declared = strconv.FormatInt(decl, 10)
		}
		mu.Unlock()
		got, err := h.Fetch(context.Background(), "metadata/timestamp.json", max)
		if err != nil {
			return
		}
		if int64(len(got)) > max {
			t.Fatalf("returned %d bytes, bound %d", len(got), max)
		}
		want := b
		if decl >= 0 && decl < int64(len(b)) {
			want = b[:decl] // the server cuts the body at what it declared
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("returned bytes that differ from the body")
		}
	})
}
