package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Defaults of an HTTP fetcher; the options below change them.
const (
	// DefaultConnectTimeout bounds connecting, the TLS handshake and the
	// wait for response headers, each.
	DefaultConnectTimeout = 30 * time.Second
	// DefaultRetries is how many times a transient failure is retried
	// (so a file is asked for at most DefaultRetries+1 times).
	DefaultRetries = 4
	// DefaultBackoff is the wait before the first retry; it doubles for
	// each further one, up to DefaultMaxBackoff, and is jittered.
	DefaultBackoff    = 500 * time.Millisecond
	DefaultMaxBackoff = 30 * time.Second
	// DefaultMinRate and DefaultRateWindow: a body that delivers fewer
	// than DefaultMinRate bytes a second, measured over each window of
	// DefaultRateWindow (10 KiB in 10 s), has stalled. 1 KiB/s is far
	// below any link a device updates over (a 2G link carries ~10 KiB/s),
	// yet cuts a trickling origin after 10 s instead of hours.
	DefaultMinRate    = 1 << 10
	DefaultRateWindow = 10 * time.Second
)

// HTTP reads a repository from a static HTTP server. Build it with
// NewHTTP; it is safe for concurrent use.
type HTTP struct {
	base *url.URL
	cfg  httpConfig
}

var _ Fetcher = (*HTTP)(nil)

type httpConfig struct {
	client              *http.Client
	connectTimeout      time.Duration
	connectTimeoutSet   bool
	retries             int
	backoff, maxBackoff time.Duration
	minRate             int64
	window              time.Duration
}

// An HTTPOption configures NewHTTP (or New for an http(s) URL).
type HTTPOption func(*httpConfig) error

// WithClient makes the fetcher use client (its transport, proxy, TLS
// settings). The client's own timeouts then apply instead of
// WithConnectTimeout's, so the two options conflict. Give a client without
// an overall Timeout: the stall detector and the caller's context bound a
// transfer, and an overall timeout would cut large files on thin links.
func WithClient(client *http.Client) HTTPOption {
	return func(c *httpConfig) error {
		if client == nil {
			return errors.New("fetch: WithClient(nil)")
		}
		c.client = client
		return nil
	}
}

// WithConnectTimeout bounds connecting, the TLS handshake and the wait
// for response headers, each (default DefaultConnectTimeout).
func WithConnectTimeout(d time.Duration) HTTPOption {
	return func(c *httpConfig) error {
		if d <= 0 {
			return fmt.Errorf("fetch: connect timeout %v: want > 0", d)
		}
		c.connectTimeout, c.connectTimeoutSet = d, true
		return nil
	}
}

// WithRetries sets how many times a transient failure (a connection
// error, HTTP 5xx or 429, a stalled or cut body) is retried; 0 disables
// retries (default DefaultRetries). A missing file (404, 410), a file over
// its bound and the caller's context ending are never retried.
func WithRetries(n int) HTTPOption {
	return func(c *httpConfig) error {
		if n < 0 {
			return fmt.Errorf("fetch: retries %d: want >= 0", n)
		}
		c.retries = n
		return nil
	}
}

// WithBackoff sets the wait before the first retry (doubled for each
// further retry) and its cap. Each wait is drawn uniformly from its upper
// half (jitter), so devices that failed together do not retry together. A
// server's Retry-After (in seconds) lengthens a wait, up to the cap.
func WithBackoff(initial, max time.Duration) HTTPOption {
	return func(c *httpConfig) error {
		if initial <= 0 || max < initial {
			return fmt.Errorf("fetch: backoff %v up to %v: want 0 < initial <= max", initial, max)
		}
		c.backoff, c.maxBackoff = initial, max
		return nil
	}
}

// WithMinRate sets the minimum transfer rate: a response body that
// delivers fewer than bytesPerSec*window bytes in any window (counted
// from the response headers on) is cut with ErrStalled, which counts as
// transient and is retried. bytesPerSec 0 disables the check. Default:
// DefaultMinRate over DefaultRateWindow.
func WithMinRate(bytesPerSec int64, window time.Duration) HTTPOption {
	return func(c *httpConfig) error {
		if bytesPerSec < 0 || (bytesPerSec > 0 && window <= 0) {
			return fmt.Errorf("fetch: minimum rate %d B/s over %v: want a rate >= 0 and a window > 0", bytesPerSec, window)
		}
		c.minRate, c.window = bytesPerSec, window
		return nil
	}
}

// NewHTTP returns a fetcher for the repository at base, an http(s) URL.
func NewHTTP(base string, opts ...HTTPOption) (*HTTP, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("repository URL %q: %w", base, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("repository URL %q: want http or https", base)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("repository URL %q: no host", base)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	cfg := httpConfig{
		connectTimeout: DefaultConnectTimeout,
		retries:        DefaultRetries,
		backoff:        DefaultBackoff,
		maxBackoff:     DefaultMaxBackoff,
		minRate:        DefaultMinRate,
		window:         DefaultRateWindow,
	}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.client != nil && cfg.connectTimeoutSet {
		return nil, errors.New("fetch: WithClient and WithConnectTimeout conflict: set the timeouts on the client's transport")
	}
	if cfg.client == nil {
		cfg.client = &http.Client{Transport: newTransport(cfg.connectTimeout)}
	}
	return &HTTP{base: u, cfg: cfg}, nil
}

func newTransport(timeout time.Duration) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	t.DialContext = d.DialContext
	t.TLSHandshakeTimeout = timeout
	t.ResponseHeaderTimeout = timeout
	// A swarm node keeps many chunk GETs open at once (the scheduler's
	// origin window). With the default of 2 idle connections per host the
	// rest were closed after each chunk and dialled again, every new one
	// starting in TCP slow start, whose bursts overflow a thin uplink's
	// queue.
	t.MaxIdleConnsPerHost = 64
	return t
}

// URL returns the repository's base URL (ending in "/").
func (h *HTTP) URL() string { return h.base.String() }

// Fetch implements Fetcher. A declared Content-Length above maxBytes is
// refused before the body is read; a body that runs on past maxBytes is
// cut off there. Transient failures are retried (see WithRetries); the
// error after the last attempt says how many were made.
func (h *HTTP) Fetch(ctx context.Context, p string, maxBytes int64) ([]byte, error) {
	if err := CheckPath(p); err != nil {
		return nil, err
	}
	u := h.base.JoinPath(p).String()
	for attempt := 0; ; attempt++ {
		b, retryAfter, err := h.once(ctx, u, maxBytes)
		if err == nil {
			return b, nil
		}
		if cerr := ctx.Err(); cerr != nil {
			if !errors.Is(err, cerr) {
				err = fmt.Errorf("%w (%w)", err, cerr)
			}
			return nil, err
		}
		if retryAfter < 0 {
			return nil, err
		}
		if attempt >= h.cfg.retries {
			if attempt > 0 {
				return nil, fmt.Errorf("%w (gave up after %d attempts)", err, attempt+1)
			}
			return nil, err
		}
		if serr := sleep(ctx, max(h.delay(attempt), min(retryAfter, h.cfg.maxBackoff))); serr != nil {
			return nil, fmt.Errorf("%w (%w before retrying)", err, serr)
		}
	}
}

// delay is the jittered wait before retry attempt+1.
func (h *HTTP) delay(attempt int) time.Duration {
	d := h.cfg.backoff
	for range attempt {
		if d >= h.cfg.maxBackoff/2 {
			d = h.cfg.maxBackoff
			break
		}
		d *= 2
	}
	d = min(d, h.cfg.maxBackoff)
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// once makes one request. retryAfter < 0 means the failure is final;
// otherwise it is transient and retryAfter is the wait the server asked
// for (0: none).
func (h *HTTP) once(ctx context.Context, u string, maxBytes int64) (_ []byte, retryAfter time.Duration, _ error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, -1, fmt.Errorf("fetch %s: %w", u, err)
	}
	resp, err := h.cfg.client.Do(req)
	if err != nil {
		// Connection refused or reset, DNS, timeouts: worth another try.
		return nil, 0, fmt.Errorf("fetch %s: %w", u, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return nil, -1, fmt.Errorf("%s: %w (HTTP %d)", u, ErrNotFound, resp.StatusCode)
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return nil, parseRetryAfter(resp.Header.Get("Retry-After")), fmt.Errorf("fetch %s: HTTP %s", u, resp.Status)
	case resp.StatusCode != http.StatusOK:
		return nil, -1, fmt.Errorf("fetch %s: HTTP %s", u, resp.Status)
	}
	if resp.ContentLength > maxBytes {
		return nil, -1, fmt.Errorf("%s: %w: server declares %d bytes, at most %d", u, ErrTooLarge, resp.ContentLength, maxBytes)
	}
	body := io.Reader(resp.Body)
	if h.cfg.minRate > 0 {
		w := watchRate(h.cfg.minRate, h.cfg.window, resp.Body, cancel)
		defer w.stop()
		body = w
	}
	b, err := ReadAll(body, u, maxBytes)
	switch {
	case err == nil:
		return b, 0, nil
	case errors.Is(err, ErrTooLarge):
		return nil, -1, err
	case errors.Is(context.Cause(ctx), ErrStalled):
		return nil, 0, fmt.Errorf("%s: %w", u, context.Cause(ctx))
	}
	// A body cut short (connection reset, unexpected EOF): transient.
	return nil, 0, err
}

// parseRetryAfter reads a Retry-After header given in seconds; a date or
// nothing gives 0.
func parseRetryAfter(v string) time.Duration {
	s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
	if err != nil || s <= 0 {
		return 0
	}
	return time.Duration(s) * time.Second
}

// rateWatch counts the bytes read through it and, at the end of each
// window, cancels the request with ErrStalled when fewer than the
// minimum arrived in that window.
type rateWatch struct {
	r      io.Reader
	n      atomic.Int64
	timer  *time.Timer
	done   atomic.Bool
	need   int64
	window time.Duration
	rate   int64
	cancel context.CancelCauseFunc
}

func watchRate(rate int64, window time.Duration, r io.Reader, cancel context.CancelCauseFunc) *rateWatch {
	need := int64(float64(rate) * window.Seconds())
	w := &rateWatch{r: r, need: max(need, 1), window: window, rate: rate, cancel: cancel}
	w.timer = time.AfterFunc(window, w.check)
	return w
}

func (w *rateWatch) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	w.n.Add(int64(n))
	return n, err
}

func (w *rateWatch) check() {
	if w.done.Load() {
		return
	}
	if got := w.n.Swap(0); got < w.need {
		w.cancel(fmt.Errorf("%w: %d bytes in %v, below the minimum of %d B/s", ErrStalled, got, w.window, w.rate))
		return
	}
	w.timer.Reset(w.window)
}

func (w *rateWatch) stop() {
	w.done.Store(true)
	w.timer.Stop()
}
