// Command shoal ships OS and firmware releases to fleets of devices: it
// chunks images, publishes signed releases, and installs them into A/B
// slots. Every subcommand is a thin shell over a package; this file only
// maps errors to exit codes.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "shoal:", err)
	}
	os.Exit(exitCode(err))
}
