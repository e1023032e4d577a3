package manifest

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/shoalnet/shoal/fetch"
)

// A repository on removable media is outside data: a named pipe where a
// metadata file belongs must be refused, not wait forever for a writer.
func TestDirFetcherRefusesFIFO(t *testing.T) {
	withFIFO(t, "Fetch", func(dir string) {
		_, err := fetch.Dir(dir).Fetch(context.Background(), "metadata/timestamp.json", 1<<10)
		if !errors.Is(err, fetch.ErrNotRegular) {
			t.Errorf("got %v, want fetch.ErrNotRegular", err)
		}
	})
}

// A named pipe in the served directory must get a 404, not hold the
// request's goroutine and descriptor until something writes to it.
func TestHandlerRefusesFIFO(t *testing.T) {
	withFIFO(t, "handler", func(dir string) {
		rec := httptest.NewRecorder()
		Handler(dir).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metadata/timestamp.json", nil))
		if rec.Code != http.StatusNotFound {
			t.Errorf("status %d, want 404", rec.Code)
		}
	})
}

// withFIFO puts a named pipe at metadata/timestamp.json of a fresh
// repository directory and runs read on it. If read blocks, the pipe is
// opened for writing to release it and the test fails; this is only a
// guard so a regression fails instead of hanging the run, no speed is
// asserted.
func withFIFO(t *testing.T, what string, read func(dir string)) {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "metadata"), 0o755); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "metadata", "timestamp.json")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		read(dir)
	}()
	var stop <-chan time.Time
	if dl, ok := t.Deadline(); ok {
		stop = time.After(time.Until(dl) / 2)
	}
	select {
	case <-done:
	case <-stop:
		if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			w.Close()
		}
		<-done
		t.Fatalf("%s blocked opening a named pipe", what)
	}
}
