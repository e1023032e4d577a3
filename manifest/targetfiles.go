package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/shoalnet/shoal/internal/atomicfile"
)

// targetsDir holds the repository's TUF target files, so that a stock TUF
// client (go-tuf, python-tuf, ...) given REPO/metadata/ and REPO/targets/
// can download and verify every target. With consistent snapshots such a
// client asks for target path DIR/NAME as targets/DIR/<hash>.NAME, with
// the hex of a hash the target lists; shoal's targets list only sha256.
// Each file is a hard link to the target's index file (a copy where the
// filesystem cannot link), so it costs a directory entry.
const targetsDir = "targets"

// TargetFilePath returns the repository path where a stock TUF client with
// consistent snapshots fetches the target with path targetPath and the
// given sha256: "targets/DIR/<hex sha256>.NAME".
func TargetFilePath(targetPath string, sha256sum []byte) string {
	dir, name := path.Split(targetPath)
	return targetsDir + "/" + dir + hex.EncodeToString(sha256sum) + "." + name
}

// linkFile makes a hard link; a variable so that tests can take links away.
var linkFile = os.Link

// writeTargetFiles gives every target its file under targets/: a hard link
// to the target's index file (a delta target's: its delta index file), or
// a copy where linking fails (another
// filesystem, or one without hard links). A file already in place is kept
// when it holds the target's bytes (an earlier publish made it) and
// replaced when not; each new file appears under its name in one rename,
// never half written. When it returns, every name and every directory it
// created is durable (directory fsync), so the targets metadata written
// after it never names a missing file. Older releases' files are never
// removed: a client holding an older targets version may still ask.
func writeTargetFiles(repo string, targets map[string]*metadata.TargetFiles) error {
	top := filepath.Join(repo, targetsDir)
	dirty := map[string]bool{}
	for _, p := range slices.Sorted(maps.Keys(targets)) {
		tf := targets[p]
		src, err := targetSource(repo, p, tf)
		if err != nil {
			return err
		}
		sum := tf.Hashes["sha256"]
		if len(tf.Hashes) != 1 || len(sum) != sha256.Size {
			// A stock client picks any listed hash for the file name.
			return fmt.Errorf("target %s: %w: want exactly one hash, sha256", p, ErrBadMetadata)
		}
		rel := TargetFilePath(p, sum)
		if !filepath.IsLocal(filepath.FromSlash(rel)) {
			return fmt.Errorf("target %s: %w: path leaves the repository", p, ErrBadMetadata)
		}
		final := filepath.Join(repo, filepath.FromSlash(rel))
		if targetFileCurrent(final, src, tf.Length, sum) {
			continue
		}
		if err := mkdirsUnder(top, filepath.Dir(final), dirty); err != nil {
			return fmt.Errorf("target %s: %w", p, err)
		}
		if err := placeTargetFile(top, src, final, tf.Length, sum); err != nil {
			return fmt.Errorf("target %s: %w", p, err)
		}
		dirty[filepath.Dir(final)] = true
	}
	return syncDirs(slices.Sorted(maps.Keys(dirty)))
}

// targetSource returns the repository file that holds the bytes of the
// target at path p: the index of a release target, the delta index of a
// delta target.
func targetSource(repo, p string, tf *metadata.TargetFiles) (string, error) {
	var rel string
	if isDeltaTargetPath(p) {
		dt, err := parseDeltaTarget(p, tf)
		if err != nil {
			return "", err
		}
		rel = DeltaIndexPath(dt.DeltaIndex)
	} else {
		_, a, err := parseTarget(p, tf)
		if err != nil {
			return "", err
		}
		rel = IndexPath(a.Index)
	}
	return filepath.Join(repo, filepath.FromSlash(rel)), nil
}

// targetFileCurrent reports whether final already holds the target's
// bytes: the index file itself (a link) or a file of the right length
// and hash.
func targetFileCurrent(final, src string, length int64, sum []byte) bool {
	st, err := os.Lstat(final)
	if err != nil || !st.Mode().IsRegular() || st.Size() != length {
		return false
	}
	if sst, err := os.Lstat(src); err == nil && os.SameFile(st, sst) {
		return true
	}
	return checkFile(final, length, sum, nil) == nil
}

// placeTargetFile makes final a link to src (through a temporary name in
// top, renamed into place), or an atomically written copy of it. src must
// hold the target's bytes: a link publishes whatever the file holds.
func placeTargetFile(top, src, final string, length int64, sum []byte) error {
	if err := checkFile(src, length, sum, nil); err != nil {
		return err
	}
	tmp := filepath.Join(top, "."+filepath.Base(final)+tmpSuffix)
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := linkFile(src, tmp); err == nil {
		if err := os.Rename(tmp, final); err != nil {
			os.Remove(tmp)
			return err
		}
		return nil
	}
	return atomicfile.Write(final, 0o644, func(w io.Writer) error {
		return checkFile(src, length, sum, w)
	})
}

// checkFile reads the regular file p (without waiting on a FIFO), checks
// its length and sha256, and copies its bytes to w if w is not nil.
func checkFile(p string, length int64, sum []byte, w io.Writer) error {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", p)
	}
	if st.Size() != length {
		return fmt.Errorf("%s: %w: %d bytes, the target lists %d", p, ErrBadMetadata, st.Size(), length)
	}
	h := sha256.New()
	var dst io.Writer = h
	if w != nil {
		dst = io.MultiWriter(h, w)
	}
	n, err := io.Copy(dst, io.LimitReader(f, length+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	if n != length || !bytes.Equal(h.Sum(nil), sum) {
		return fmt.Errorf("%s: %w: its bytes do not match the target's length and sha256", p, ErrBadMetadata)
	}
	return nil
}

// mkdirsUnder creates dir and its missing parents up to top (which must
// exist), refusing anything on the way that is not a directory (a symlink
// could lead out of the repository), and marks the parent of every
// directory it creates for fsync.
func mkdirsUnder(top, dir string, dirty map[string]bool) error {
	rel, err := filepath.Rel(top, dir)
	if err != nil || !filepath.IsLocal(rel) {
		return fmt.Errorf("%s is not under %s", dir, top)
	}
	cur := top
	for _, seg := range strings.Split(rel, string(filepath.Separator)) {
		next := filepath.Join(cur, seg)
		err := os.Mkdir(next, 0o755)
		switch {
		case err == nil:
			dirty[cur] = true
		case errors.Is(err, fs.ErrExist):
			st, err := os.Lstat(next)
			if err != nil {
				return err
			}
			if !st.IsDir() {
				return fmt.Errorf("%s: not a directory", next)
			}
		default:
			return err
		}
		cur = next
	}
	return nil
}

// removeTargetTemps removes the temporary links a publish that died left
// in targets/.
func removeTargetTemps(top string) error {
	ents, err := os.ReadDir(top)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") && strings.HasSuffix(e.Name(), tmpSuffix) {
			if err := os.Remove(filepath.Join(top, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}
