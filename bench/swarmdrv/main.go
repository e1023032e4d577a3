// Command swarmdrv drives the swarm benchmarks (bench/swarm-*.sh,
// docs/benchmarks.md "Swarm (issue 8)"). It is not part of shoal.
//
//	swarmdrv origin -dir REPO -listen ADDR -events FILE
//	    an HTTP origin serving a repository directory that appends
//	    "unix_seconds kind path" to FILE for the first request of each
//	    kind (metadata, index, chunks) and counts chunk requests
//	swarmdrv watch -api ADDR [-timeout D] [-every D]
//	    polls a node's /status every 20 ms (-every) and prints, as one JSON object,
//	    when a transfer first appears, when its first chunk is held, and
//	    when the updater reaches "tentative" (the flip)
//	swarmdrv fleet -n N -bootstrap MADDR -announce-api ADDR -repo DIR -root FILE -dir DIR -slot BYTES
//	    N device nodes in this process (each its own libp2p host, store
//	    and file-backed device), bootstrapped to one server node; once
//	    all are connected it asks the server to announce the repository,
//	    waits for every device to flip, then reboots and boot-checks each
//	    (commit) and prints one JSON object
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "origin":
		err = runOrigin(os.Args[2:])
	case "watch":
		err = runWatch(os.Args[2:])
	case "fleet":
		err = runFleet(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "swarmdrv:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: swarmdrv origin|watch|fleet [flags] (see the package comment)")
	os.Exit(2)
}

// unix is t as seconds since the epoch, for shell arithmetic.
func unix(t interface{ UnixNano() int64 }) float64 { return float64(t.UnixNano()) / 1e9 }
