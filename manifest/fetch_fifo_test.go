package manifest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A repository on removable media is outside data: a named pipe where a
// metadata file belongs must be refused, not wait forever for a writer.
func TestDirFetcherRefusesFIFO(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "metadata"), 0o755); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "metadata", "timestamp.json")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := DirFetcher{Dir: dir}.Fetch(context.Background(), "metadata/timestamp.json", 1<<10)
		done <- err
	}()
	// Only a guard so a regression fails instead of hanging the run; no
	// speed is asserted.
	var stop <-chan time.Time
	if dl, ok := t.Deadline(); ok {
		stop = time.After(time.Until(dl) / 2)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("got %v, want ErrNotFound", err)
		}
	case <-stop:
		if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			w.Close()
		}
		<-done
		t.Fatal("Fetch blocked opening a named pipe")
	}
}
