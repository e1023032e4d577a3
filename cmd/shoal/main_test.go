package main

import (
	"os"
	"testing"
)

// TestMain lets tests run the real shoal binary as a subprocess: the test
// binary itself, re-executed with SHOAL_TEST_RUN_MAIN=1, behaves as shoal.
func TestMain(m *testing.M) {
	if os.Getenv("SHOAL_TEST_RUN_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}
