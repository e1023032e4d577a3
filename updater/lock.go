package updater

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/shoalnet/shoal/updater/fsys"
)

// ErrLocked: another process (a CLI command or the daemon) is changing the
// device; the error names it.
var ErrLocked = errors.New("updater: device is in use")

// lockFile is the lock's name in the state directory.
const lockFile = "lock"

// DefaultLockWait is how long Open waits for another holder of the
// device's lock before it gives up.
const DefaultLockWait = 10 * time.Second

// lockState takes the exclusive lock of the state directory, waiting up to
// wait (with backoff) while someone else holds it.
func lockState(ctx context.Context, f fsys.FS, dir, holder string, wait time.Duration) (func() error, error) {
	p := filepath.Join(dir, lockFile)
	info := fmt.Sprintf("pid %d (%s) since %s", os.Getpid(), holder, time.Now().UTC().Format(time.RFC3339))
	deadline := time.Now().Add(wait)
	delay := 10 * time.Millisecond
	for {
		unlock, err := f.TryLock(p, info)
		if err == nil {
			return unlock, nil
		}
		if !errors.Is(err, fsys.ErrLocked) {
			return nil, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, fmt.Errorf("%w: %w (waited %v)", ErrLocked, err, wait)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(min(delay, left)):
		}
		delay = min(2*delay, 250*time.Millisecond)
	}
}
