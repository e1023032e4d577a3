package main

import (
	"context"
	"errors"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/chunker/delta"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/manifest/bundle"
	"github.com/shoalnet/shoal/manifest/tlog"
	"github.com/shoalnet/shoal/store"
	"github.com/shoalnet/shoal/updater"
)

// Exit codes. Scripts branch on these, so they are part of the CLI
// contract: keep them stable and add new ones at the end.
const (
	exitOK        = 0
	exitFailure   = 1 // anything not listed below
	exitUsage     = 2 // bad flags or arguments
	exitIntegrity = 3 // data, index or signature does not verify
	exitCanceled  = 130
)

// usageError marks errors in how the command was called.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// integrityErrors are the sentinels that mean "the bytes are not what they
// claim to be". Packages add theirs here as they are wired in.
var integrityErrors = []error{
	chunker.ErrMismatch,
	chunker.ErrMalformedIndex,
	delta.ErrCorrupt,
	delta.ErrTooLarge,
	delta.ErrBadRange,
	delta.ErrMalformedIndex,
	manifest.ErrThreshold,
	manifest.ErrRollback,
	manifest.ErrExpired,
	manifest.ErrMixAndMatch,
	manifest.ErrTooLarge,
	manifest.ErrBadMetadata,
	manifest.ErrBadState,
	manifest.ErrIndexHash,
	manifest.ErrMerkleRoot,
	manifest.ErrIndexMismatch,
	manifest.ErrChunkCorrupt,
	updater.ErrBadChunk,
	updater.ErrVerifyFailed,
	store.ErrMismatch,
	store.ErrCorrupt,
	bundle.ErrMalformed,
	bundle.ErrMissing,
	bundle.ErrExtra,
	tlog.ErrNotFound,
	tlog.ErrBadCheckpoint,
	tlog.ErrInconsistent,
	tlog.ErrCorrupt,
	tlog.ErrDuplicate,
	tlog.ErrEquivocation,
	tlog.ErrTooLarge,
	tlog.ErrMalformedRecord,
}

func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var u usageError
	if errors.As(err, &u) {
		return exitUsage
	}
	for _, s := range integrityErrors {
		if errors.Is(err, s) {
			return exitIntegrity
		}
	}
	if errors.Is(err, context.Canceled) {
		return exitCanceled
	}
	return exitFailure
}
