package tlog_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"golang.org/x/mod/sumdb/note"
	sumtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest/tlog"
)

// A publisher logs each targets metadata file it publishes; a device that
// verified a targets file checks that it is in the log, and consistent with
// the log it saw before.
func Example() {
	ctx := context.Background()
	repo, err := os.MkdirTemp("", "repo")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(repo)
	logDir := filepath.Join(repo, "log")

	// Publisher, once: a log key. The verifier key goes to devices.
	skey, vkey, err := tlog.GenerateKey("fleet.example/log")
	if err != nil {
		log.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		log.Fatal(err)
	}

	// Publisher, per release: log the exact targets bytes it signed.
	var published [][]byte
	for v := int64(1); v <= 3; v++ {
		targets := fmt.Appendf(nil, `{"signed":{"_type":"targets","version":%d}}`, v)
		published = append(published, targets)
		rec, err := tlog.TargetsOf("stable", v, targets).Record()
		if err != nil {
			log.Fatal(err)
		}
		cp, err := tlog.Append(ctx, logDir, signer, rec)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("logged targets version", v, "- log size", cp.Tree.N)
	}

	// Device: it verified targets version 2 through TUF and now demands
	// that exactly those bytes are in the log. The first time it remembers
	// nothing (the empty tree).
	verifiers, err := tlog.NewVerifiers(vkey)
	if err != nil {
		log.Fatal(err)
	}
	r := tlog.NewReader(fetch.Dir(logDir), verifiers)
	rec, _ := tlog.TargetsOf("stable", 2, published[1]).Record()
	var last sumtlog.Tree // remembered from the previous update; zero at first
	cp, idx, err := r.Check(ctx, last, rec)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("targets version 2 is entry", idx, "of", cp.Tree.N)

	// Bytes the publisher never logged are refused.
	forged, _ := tlog.TargetsOf("stable", 2, []byte(`{"signed":{"evil":true}}`)).Record()
	_, _, err = r.Check(ctx, cp.Tree, forged)
	fmt.Println("unlogged targets refused:", errors.Is(err, tlog.ErrNotFound))

	// Auditor: re-derive everything.
	if _, err := r.Audit(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("audit ok")
	// Output:
	// logged targets version 1 - log size 1
	// logged targets version 2 - log size 2
	// logged targets version 3 - log size 3
	// targets version 2 is entry 1 of 3
	// unlogged targets refused: true
	// audit ok
}
