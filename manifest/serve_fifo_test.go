package manifest

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A named pipe in the served directory must get a 404, not hold the
// request's goroutine and descriptor until something writes to it.
func TestHandlerRefusesFIFO(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "metadata"), 0o755); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "metadata", "timestamp.json")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		Handler(dir).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metadata/timestamp.json", nil))
	}()
	// Only a guard so a regression fails instead of hanging the run; no
	// speed is asserted.
	var stop <-chan time.Time
	if dl, ok := t.Deadline(); ok {
		stop = time.After(time.Until(dl) / 2)
	}
	select {
	case <-done:
		if rec.Code != http.StatusNotFound {
			t.Fatalf("status %d, want 404", rec.Code)
		}
	case <-stop:
		if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			w.Close()
		}
		<-done
		t.Fatal("handler blocked opening a named pipe")
	}
}
