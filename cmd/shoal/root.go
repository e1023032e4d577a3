package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "shoal",
		Short: "Ship OS and firmware releases to device fleets, chunk by verified chunk",
		Long: `shoal turns OS and firmware images into content-defined chunks, publishes
signed releases, and installs them into A/B slots on devices that trade chunks
with each other.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w\nRun '%s --help' for usage.", err, c.CommandPath())}
	})
	root.AddCommand(
		newChunkCmd(),
		newInspectCmd(),
		newDiffCmd(),
		newKeysCmd(),
		newPublishCmd(),
		newVerifyCmd(),
		newServeCmd(),
		newDeviceCmd(),
		newUpdateCmd(),
		newBundleCmd(),
		newLogCmd(),
		newNodeCmd(),
		newFleetCmd(),
		newSimCmd(),
	)
	return root
}

// exactArgs is cobra.ExactArgs with a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(c, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// writeJSON prints v as one indented JSON object.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// parseSize reads sizes such as 65536, 64K, 64KiB, 1M, 1GiB (binary units).
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(strings.ToUpper(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult, t = 1<<10, t[:n-1]
		case 'M':
			mult, t = 1<<20, t[:n-1]
		case 'G':
			mult, t = 1<<30, t[:n-1]
		case 'T':
			mult, t = 1<<40, t[:n-1]
		}
	}
	v, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err != nil || v < 0 || v > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q (want e.g. 65536, 64K, 1GiB)", s)
	}
	return v * mult, nil
}

// sizeFlag is a pflag.Value accepting parseSize syntax.
type sizeFlag struct{ v *int }

func (f sizeFlag) String() string { return strconv.Itoa(*f.v) }
func (f sizeFlag) Type() string   { return "size" }
func (f sizeFlag) Set(s string) error {
	v, err := parseSize(s)
	if err != nil {
		return err
	}
	if v > 1<<31 {
		return fmt.Errorf("size %q too large", s)
	}
	*f.v = int(v)
	return nil
}
