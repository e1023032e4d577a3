package fetch

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fast are options that keep retry tests quick.
var fast = []HTTPOption{WithBackoff(time.Millisecond, 5*time.Millisecond)}

func newHTTP(t *testing.T, srv *httptest.Server, opts ...HTTPOption) *HTTP {
	t.Helper()
	h, err := NewHTTP(srv.URL+"/repo", append(append([]HTTPOption{WithClient(srv.Client())}, fast...), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// counting serves handler and counts the requests.
func counting(handler func(n int64, w http.ResponseWriter, r *http.Request)) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handler(n.Add(1), w, r)
	}))
	return srv, &n
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestHTTPRetriesTransientFailures(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(w http.ResponseWriter)
	}{
		{"503", func(w http.ResponseWriter) { http.Error(w, "busy", http.StatusServiceUnavailable) }},
		{"500", func(w http.ResponseWriter) { http.Error(w, "oops", http.StatusInternalServerError) }},
		{"429", func(w http.ResponseWriter) { http.Error(w, "slow down", http.StatusTooManyRequests) }},
		{"connection reset", func(w http.ResponseWriter) {
			c, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				c.Close()
			}
		}},
		{"body cut short", func(w http.ResponseWriter) {
			// Less than the declared length: the server closes the
			// connection after the handler returns.
			w.Header().Set("Content-Length", "100")
			w.Write([]byte("only part"))
			w.(http.Flusher).Flush()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, n := counting(func(n int64, w http.ResponseWriter, r *http.Request) {
				if n <= 2 {
					tc.fail(w)
					return
				}
				w.Write([]byte("payload"))
			})
			defer srv.Close()
			b, err := newHTTP(t, srv, WithRetries(3)).Fetch(testCtx(t), "metadata/timestamp.json", 100)
			if err != nil || string(b) != "payload" {
				t.Fatalf("got %q, %v; want payload", b, err)
			}
			if got := n.Load(); got != 3 {
				t.Fatalf("%d requests, want 3 (two failures, then success)", got)
			}
		})
	}
}

func TestHTTPGivesUpAfterRetries(t *testing.T) {
	srv, n := counting(func(_ int64, w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusBadGateway)
	})
	defer srv.Close()
	_, err := newHTTP(t, srv, WithRetries(2)).Fetch(testCtx(t), "metadata/timestamp.json", 100)
	if err == nil || !strings.Contains(err.Error(), "502") || !strings.Contains(err.Error(), "3 attempts") {
		t.Fatalf("got %v, want HTTP 502 after 3 attempts", err)
	}
	if got := n.Load(); got != 3 {
		t.Fatalf("%d requests, want 3", got)
	}
}

func TestHTTPFinalFailuresAreNotRetried(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		is      error
	}{
		{"404", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }, ErrNotFound},
		{"410", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "gone", http.StatusGone) }, ErrNotFound},
		{"403", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusForbidden) }, nil},
		{"declared too large", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "101")
			w.Write(make([]byte, 101))
		}, ErrTooLarge},
		{"body past bound", func(w http.ResponseWriter, r *http.Request) {
			// No Content-Length: the body runs on until cut.
			for range 100 {
				if _, err := w.Write(make([]byte, 1000)); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		}, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, n := counting(func(_ int64, w http.ResponseWriter, r *http.Request) { tc.handler(w, r) })
			defer srv.Close()
			_, err := newHTTP(t, srv, WithRetries(3)).Fetch(testCtx(t), "index/x", 100)
			if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("got %v, want %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), srv.URL+"/repo/index/x") {
				t.Errorf("error %q does not name the URL", err)
			}
			if got := n.Load(); got != 1 {
				t.Fatalf("%d requests, want 1 (no retry)", got)
			}
		})
	}
}

// A server that trickles one byte a second is cut at the end of the first
// rate window, retried (a stall is transient), and cut again.
func TestHTTPStalledBodyIsCut(t *testing.T) {
	srv, n := counting(func(_ int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		for {
			if _, err := w.Write([]byte{'x'}); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(time.Second):
			}
		}
	})
	defer srv.Close()
	const window = 300 * time.Millisecond
	start := time.Now()
	_, err := newHTTP(t, srv, WithRetries(1), WithMinRate(100, window)).Fetch(testCtx(t), "chunks/ab/x", 1000)
	elapsed := time.Since(start)
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("got %v, want ErrStalled", err)
	}
	if got := n.Load(); got != 2 {
		t.Fatalf("%d requests, want 2 (one retry)", got)
	}
	// Two windows and a short backoff; far below the 1000 s the body needs.
	if elapsed < 2*window || elapsed > 5*time.Second {
		t.Fatalf("took %v, want about two windows of %v", elapsed, window)
	}
}

// A slow body above the minimum rate is not cut.
func TestHTTPSlowBodyAboveMinRate(t *testing.T) {
	srv, n := counting(func(_ int64, w http.ResponseWriter, r *http.Request) {
		for range 20 { // 20 × 50 bytes every 40 ms: ~1250 B/s for 0.8 s
			if _, err := w.Write(make([]byte, 50)); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(40 * time.Millisecond)
		}
	})
	defer srv.Close()
	b, err := newHTTP(t, srv, WithRetries(0), WithMinRate(100, 200*time.Millisecond)).Fetch(testCtx(t), "chunks/ab/x", 1000)
	if err != nil || len(b) != 1000 {
		t.Fatalf("got %d bytes, %v; want 1000", len(b), err)
	}
	if n.Load() != 1 {
		t.Fatalf("%d requests, want 1", n.Load())
	}
}

// A server that accepts and never answers is given up on after the
// connect timeout, not waited on forever.
func TestHTTPResponseHeaderTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	h, err := NewHTTP(srv.URL, WithConnectTimeout(200*time.Millisecond), WithRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := h.Fetch(testCtx(t), "metadata/timestamp.json", 100); err == nil {
		t.Fatal("fetch from a silent server succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v, want about 200ms", d)
	}
}

// The caller's context ends a backoff wait at once.
func TestHTTPContextEndsRetries(t *testing.T) {
	srv, _ := counting(func(_ int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3600")
		http.Error(w, "busy", http.StatusServiceUnavailable)
	})
	defer srv.Close()
	h, err := NewHTTP(srv.URL, WithClient(srv.Client()), WithBackoff(time.Hour, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = h.Fetch(ctx, "metadata/timestamp.json", 100)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("got %v, want the 503 and the deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v after the deadline", d)
	}
}

func TestHTTPRetryAfterLengthensBackoff(t *testing.T) {
	var first, gap atomic.Int64
	srv, _ := counting(func(n int64, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			first.Store(time.Now().UnixNano())
			w.Header().Set("Retry-After", "1")
			http.Error(w, "busy", http.StatusTooManyRequests)
			return
		}
		gap.Store(time.Now().UnixNano() - first.Load())
		w.Write([]byte("ok"))
	})
	defer srv.Close()
	h := newHTTP(t, srv, WithBackoff(time.Millisecond, 2*time.Second))
	if _, err := h.Fetch(testCtx(t), "a", 10); err != nil {
		t.Fatal(err)
	}
	if d := time.Duration(gap.Load()); d < 900*time.Millisecond {
		t.Fatalf("retried after %v, server asked for 1s", d)
	}
}

func TestHTTPOptions(t *testing.T) {
	for name, opts := range map[string][]HTTPOption{
		"client and timeout":  {WithClient(http.DefaultClient), WithConnectTimeout(time.Second)},
		"nil client":          {WithClient(nil)},
		"negative retries":    {WithRetries(-1)},
		"backoff max<init":    {WithBackoff(time.Second, time.Millisecond)},
		"rate without window": {WithMinRate(10, 0)},
		"zero timeout":        {WithConnectTimeout(0)},
	} {
		if _, err := NewHTTP("http://example.invalid/", opts...); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for _, base := range []string{"ftp://x/", "http://", "::"} {
		if _, err := NewHTTP(base); err == nil {
			t.Errorf("NewHTTP(%q) accepted", base)
		}
	}
	h, err := NewHTTP("https://origin.example/repo")
	if err != nil || h.URL() != "https://origin.example/repo/" {
		t.Fatalf("URL %v, %v", h, err)
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	h, err := NewHTTP("http://x/", WithBackoff(100*time.Millisecond, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for attempt, want := range []time.Duration{100, 200, 400, 800, 1000, 1000, 1000} {
		want *= time.Millisecond
		for range 20 {
			if d := h.delay(attempt); d < want/2 || d > want {
				t.Fatalf("attempt %d: delay %v, want in [%v, %v]", attempt, d, want/2, want)
			}
		}
	}
	if d := h.delay(200); d > time.Second {
		t.Fatalf("delay after many attempts %v, cap 1s", d)
	}
	if got := parseRetryAfter(" 7 "); got != 7*time.Second {
		t.Fatalf("Retry-After 7: %v", got)
	}
	if got := parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT"); got != 0 {
		t.Fatalf("Retry-After date: %v", got)
	}
}
