package main

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"time"

	"github.com/shoalnet/shoal/node"
)

// watchResult is what watch prints: unix times (0: not seen).
type watchResult struct {
	TransferStart float64 `json:"transfer_start"`
	FirstHeld     float64 `json:"first_held"`
	Flip          float64 `json:"flip"`
	Chunks        int     `json:"chunks"`
	BytesBySource map[string]int64
	LastError     string `json:"last_error,omitempty"`
}

// runWatch polls a node's status until its updater is tentative (or
// -until-held: until its first chunk is held).
func runWatch(args []string) error {
	fs := flag.NewFlagSet("watch", flag.ExitOnError)
	api := fs.String("api", "", "the node's API address")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	untilHeld := fs.Bool("until-held", false, "stop once the first chunk is held")
	every := fs.Duration("every", 20*time.Millisecond, "poll period (each poll costs the node CPU: 5 ms took 3% of a 1 GiB transfer's)")
	fs.Parse(args)
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var r watchResult
	tk := time.NewTicker(*every)
	defer tk.Stop()
	for {
		st, err := node.ReadStatus(ctx, *api)
		t := time.Now()
		if err == nil {
			for _, tr := range st.Transfers {
				if tr.Kind != "release" {
					continue // the one-piece download of an index, deltas
				}
				if r.TransferStart == 0 {
					r.TransferStart = unix(t)
				}
				if tr.Held > 0 && r.FirstHeld == 0 {
					r.FirstHeld = unix(t)
				}
				r.Chunks, r.BytesBySource = tr.Total, tr.Bytes
			}
			r.LastError = st.LastError
			if st.Updater != nil && st.Updater.State == "tentative" {
				r.Flip = unix(t)
			}
			if r.Flip != 0 || (*untilHeld && r.FirstHeld != 0) {
				return json.NewEncoder(os.Stdout).Encode(r)
			}
		}
		select {
		case <-ctx.Done():
			json.NewEncoder(os.Stdout).Encode(r)
			return ctx.Err()
		case <-tk.C:
		}
	}
}
