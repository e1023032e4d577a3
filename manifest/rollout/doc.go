// Package rollout decides whether one device may take one release now: a
// staged percentage (in basis points) drawn by deterministic cohort hashing,
// label selectors (region, hardware, tier, ...) and a minimum installed
// version. Everything here is a pure function of its arguments (no clock,
// no randomness, no I/O), so the publisher's preview, the device and the
// simulator reach the same verdict.
//
// A Policy travels inside signed release metadata as JSON (see
// Policy.UnmarshalJSON, which is strict) and is written on the command
// line in a small syntax (see ParsePolicy and docs/rollout.md):
//
//	percent=10, region in (eu,uk), tier!=lab, min-installed=41
//
// The caller drives it like this:
//
//  1. The publisher builds a Policy (ParsePolicy or a literal), calls
//     Validate, and stores it in the release's custom metadata.
//  2. The device, after verifying the release metadata, decodes the policy
//     and calls Eligible with its own Device description and the release's
//     ReleaseRef. It installs only when Decision.Eligible is true, and
//     reports Decision.Reason and Decision.Cohort otherwise (metrics, logs).
//  3. To widen a rollout, the publisher re-signs the metadata with a larger
//     percentage; the release identity (channel and version) must stay the
//     same, so every device that was already in keeps its place and only
//     new devices join.
package rollout
