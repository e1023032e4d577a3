package manifest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/note"
	sumtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest/tlog"
)

// This file joins the TUF chain to the transparency log (manifest/tlog):
// [RepoLog] is the publisher's [TargetsLog], [LogWitness] the device's
// [TargetsWitness]. Both log the same record for a targets version, built
// by logRecord, so what one appends the other can prove.

// LogStateFile is the file in a device's trust state ([StateStore]) that
// holds the signed checkpoint a [LogWitness] remembered last.
const LogStateFile = "log.checkpoint"

// logRecord is the log entry of targets metadata version version: the
// channel-less record, since one targets file serves the whole repository.
func logRecord(version int64, targets []byte) ([]byte, error) {
	return tlog.TargetsOf("", version, targets).Record()
}

// maxLogKeyFile bounds a log verifier key file: a key is about 90 bytes.
const maxLogKeyFile = 64 << 10

// ParseLogKeys parses the content of a log verifier key file
// (KEYS/log.pub): one key per line, as tlog.GenerateKey writes it;
// surrounding space is trimmed, and blank lines and lines starting with
// '#' are skipped. The keys themselves are checked by [NewLogWitness] (or
// tlog.NewVerifiers). It is the one parser of these files: every reader
// of a log key file goes through it or [ReadLogKeyFile].
func ParseLogKeys(b []byte) []string {
	var keys []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		keys = append(keys, l)
	}
	return keys
}

// ReadLogKeyFile reads and parses the log verifier key file at path (see
// [ParseLogKeys]). The file must be a regular file of at most 64 KiB
// (a named pipe is refused, not waited on) holding at least one key; the
// error names the file.
func ReadLogKeyFile(path string) ([]string, error) {
	b, err := fetch.ReadFile(path, maxLogKeyFile)
	if err != nil {
		return nil, fmt.Errorf("log key file: %w", err)
	}
	keys := ParseLogKeys(b)
	if len(keys) == 0 {
		return nil, fmt.Errorf("log key file %s: no key in the file", path)
	}
	return keys, nil
}

// UnverifiedCheckpoint returns the tree a checkpoint note states without
// checking its signature: for tools that look at a log whose key they were
// not given. The note must still be well formed, at most
// tlog.MaxCheckpointSize bytes, and its text exactly a tree. Errors wrap
// tlog.ErrBadCheckpoint. Nothing a device relies on may come from here.
func UnverifiedCheckpoint(msg []byte) (sumtlog.Tree, error) {
	return tlog.UnverifiedCheckpoint(msg)
}

// LogProof says where a targets version sits in the log.
type LogProof struct {
	// Tree is the signed tree the record was proven in.
	Tree sumtlog.Tree
	// Entry is the record's index in the log.
	Entry int64
	// Checkpoint is the signed note of Tree, as fetched or written.
	Checkpoint []byte
}

// RepoLog is the publisher's side of the log: the [TargetsLog] that
// appends every targets version publish signs to the repository's log
// directory, with checkpoints signed by the key directory's log key (see
// [Keyring.TargetsLog]). It remembers the checkpoint of its last append
// for the publisher's report.
type RepoLog struct {
	signer    note.Signer
	verifiers note.Verifiers

	mu   sync.Mutex
	last *LogProof
}

// NewRepoLog returns a RepoLog signing with signer; vkey is the matching
// verifier key, used to read back what the log holds.
func NewRepoLog(signer note.Signer, vkey string) (*RepoLog, error) {
	vs, err := tlog.NewVerifiers(vkey)
	if err != nil {
		return nil, err
	}
	return &RepoLog{signer: signer, verifiers: vs}, nil
}

// Append implements TargetsLog.
func (l *RepoLog) Append(ctx context.Context, repo string, version int64, targets []byte) error {
	rec, err := logRecord(version, targets)
	if err != nil {
		return fmt.Errorf("log targets version %d: %w", version, err)
	}
	cp, err := tlog.Append(ctx, filepath.Join(repo, tlog.RepoDir), l.signer, rec)
	if err != nil {
		return fmt.Errorf("log targets version %d: %w", version, err)
	}
	l.mu.Lock()
	l.last = &LogProof{Tree: cp.Tree, Entry: cp.Tree.N - 1, Checkpoint: cp.Note}
	l.mu.Unlock()
	return nil
}

// Last returns where the last Append put its record, or nil before one.
func (l *RepoLog) Last() *LogProof {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// LastLogged returns the targets version of the newest entry in repo's
// log, 0 for no log (or an entry that is not a targets record). Publish
// numbers the next targets version above it: a publish that died after
// logging its targets but before writing timestamp.json must not reuse
// that version number for other bytes, which auditors would see as two
// targets with one version.
func (l *RepoLog) LastLogged(ctx context.Context, repo string) (int64, error) {
	rd := tlog.NewReader(fetch.Dir(filepath.Join(repo, tlog.RepoDir)), l.verifiers)
	cp, err := rd.Checkpoint(ctx)
	if errors.Is(err, fetch.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read back the log of %s: %w", repo, err)
	}
	if cp.Tree.N == 0 {
		return 0, nil
	}
	rec, err := rd.Record(ctx, cp.Tree, cp.Tree.N-1)
	if err != nil {
		return 0, fmt.Errorf("read back the log of %s: %w", repo, err)
	}
	t, err := tlog.ParseTargets(rec)
	if err != nil {
		return 0, nil
	}
	return t.Version, nil
}

// LogWitness is the device's side of the log: the [TargetsWitness] that
// admits a targets version only when the repository's log proves it is
// included in a checkpoint signed by a trusted log key, and that
// checkpoint is consistent with the one the device remembered (so a log
// that forked, a split view, is refused). It remembers the larger of the
// two checkpoints in its [StateStore] ([LogStateFile]) after each
// successful check.
//
// Errors wrap manifest/tlog sentinels: ErrNotFound (the targets version
// is not in the log, or the repository has no log), ErrBadCheckpoint
// (not signed by a trusted key, malformed), ErrInconsistent (split view
// or rewritten history), ErrCorrupt (log files do not match the signed
// tree). A [Client] refuses every mirror after an ErrInconsistent: two
// signed, diverging checkpoints prove the log key holder equivocated.
//
// A LogWitness is safe for concurrent use.
type LogWitness struct {
	verifiers note.Verifiers
	state     StateStore

	mu     sync.Mutex
	proofs map[sumtlog.Hash]LogProof
}

// NewLogWitness returns a witness trusting the log verifier keys vkeys
// (at least one) that remembers the last checkpoint in state, the same
// store a device's [Client] keeps its TUF state in (nil: in memory, only
// for the witness's lifetime, so the first check merely proves
// inclusion).
func NewLogWitness(vkeys []string, state StateStore) (*LogWitness, error) {
	vs, err := tlog.NewVerifiers(vkeys...)
	if err != nil {
		return nil, err
	}
	if state == nil {
		state = &MemState{}
	}
	return &LogWitness{verifiers: vs, state: state, proofs: map[sumtlog.Hash]LogProof{}}, nil
}

// Witness implements TargetsWitness: f serves the repository whose
// targets metadata version version is about to be trusted; its log is
// read from tlog.RepoDir.
func (w *LogWitness) Witness(ctx context.Context, f fetch.Fetcher, version int64, targets []byte) error {
	rec, err := logRecord(version, targets)
	if err != nil {
		return fmt.Errorf("targets version %d: %w", version, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	last, err := w.remembered()
	if err != nil {
		return err
	}
	cp, idx, err := tlog.NewReader(fetch.Sub(f, tlog.RepoDir), w.verifiers).Check(ctx, last.Tree, rec)
	if err != nil {
		return fmt.Errorf("targets version %d: %w", version, explainLogError(err, last))
	}
	if last.Note == nil || cp.Tree.N > last.Tree.N {
		if err := w.remember(cp); err != nil {
			return err
		}
	}
	h := sumtlog.RecordHash(rec)
	if p, ok := w.proofs[h]; !ok || cp.Tree.N > p.Tree.N {
		w.proofs[h] = LogProof{Tree: cp.Tree, Entry: idx, Checkpoint: cp.Note}
	}
	return nil
}

// Proof returns where Witness proved targets version version (with
// exactly these bytes) to be, in the largest tree it saw it in.
func (w *LogWitness) Proof(version int64, targets []byte) (LogProof, bool) {
	rec, err := logRecord(version, targets)
	if err != nil {
		return LogProof{}, false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	p, ok := w.proofs[sumtlog.RecordHash(rec)]
	return p, ok
}

// Remembered returns the checkpoint the witness remembers (the zero
// Checkpoint before the first successful check).
func (w *LogWitness) Remembered() (tlog.Checkpoint, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.remembered()
}

// remembered loads the remembered checkpoint. A state file that does not
// verify is an error, not a reason to forget: forgetting would let a
// forked log through.
func (w *LogWitness) remembered() (tlog.Checkpoint, error) {
	b, err := w.state.ReadFile(LogStateFile, tlog.MaxCheckpointSize)
	if errors.Is(err, fs.ErrNotExist) {
		return tlog.Checkpoint{}, nil
	}
	name := stateName(w.state, LogStateFile)
	if err != nil {
		return tlog.Checkpoint{}, fmt.Errorf("%w: remembered log checkpoint %s: %w", ErrBadState, name, err)
	}
	cp, err := tlog.VerifyCheckpoint(b, w.verifiers)
	if err != nil {
		return tlog.Checkpoint{}, fmt.Errorf("%w: remembered log checkpoint %s (remove it only if the log key was replaced on purpose): %w", ErrBadState, name, err)
	}
	return cp, nil
}

func (w *LogWitness) remember(cp tlog.Checkpoint) error {
	if err := w.state.WriteFile(LogStateFile, cp.Note); err != nil {
		return fmt.Errorf("remember log checkpoint: %w", err)
	}
	return nil
}

// explainLogError adds what a person needs to read an error of
// tlog.Reader.Check, keeping its sentinel; a log file that is missing
// altogether means the record cannot be proven, which a device that
// requires the log treats as "not in the log".
func explainLogError(err error, last tlog.Checkpoint) error {
	switch {
	case errors.Is(err, tlog.ErrBadCheckpoint):
		return fmt.Errorf("%s/%s: %w", tlog.RepoDir, tlog.CheckpointPath, err)
	case errors.Is(err, tlog.ErrInconsistent):
		return fmt.Errorf("split view: the log does not extend the checkpoint remembered before (tree of %d entries): %w", last.Tree.N, err)
	case errors.Is(err, tlog.ErrNotFound), errors.Is(err, tlog.ErrCorrupt), errors.Is(err, tlog.ErrTooLarge):
		return err
	case errors.Is(err, fetch.ErrNotFound):
		return fmt.Errorf("%w: cannot be proven, a log file is missing: %w", tlog.ErrNotFound, err)
	}
	return err
}
