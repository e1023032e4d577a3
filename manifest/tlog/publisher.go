package tlog

import (
	"context"
	"fmt"
	"path/filepath"

	"golang.org/x/mod/sumdb/note"
)

// RepoDir is the log's directory inside a shoal repository.
const RepoDir = "log"

// Publisher logs targets metadata as a repository publisher writes it. Its
// Append method has the shape manifest's TargetsLog hook expects, so a
// publish cannot make targets visible that are not in the log.
type Publisher struct {
	// Signer signs checkpoints (note.NewSigner of GenerateKey's skey).
	Signer note.Signer
}

// Append logs the record of targets version version (the exact bytes
// written) in repo's log directory; the record has no channel, as one
// targets file serves the whole repository.
func (p Publisher) Append(ctx context.Context, repo string, version int64, targets []byte) error {
	rec, err := TargetsOf("", version, targets).Record()
	if err != nil {
		return fmt.Errorf("tlog: log targets version %d: %w", version, err)
	}
	if _, err := Append(ctx, filepath.Join(repo, RepoDir), p.Signer, rec); err != nil {
		return fmt.Errorf("tlog: log targets version %d: %w", version, err)
	}
	return nil
}
