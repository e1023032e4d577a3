// Package boot drives a device's bootloader for A/B updates: put a new
// slot on trial for a few boots, find out which slot booted, and make the
// trial permanent or abandon it. Four adapters implement one small
// interface, [Adapter]:
//
//   - [GRUB]: the GRUB environment block (grubenv), read by the GRUB
//     script in packaging/grub/shoal.cfg. Interoperates with grub-editenv.
//   - [UBoot]: the U-Boot environment, one copy or two redundant ones,
//     with U-Boot's own boot counting (upgrade_available, bootcount,
//     bootlimit, altbootcmd) and the script in
//     packaging/uboot/shoal-env.txt. Interoperates with fw_printenv and
//     fw_setenv.
//   - [BLS]: systemd-boot's Boot Loader Specification entries with boot
//     counting in their file names (NAME+LEFT-DONE.conf).
//   - [File]: a JSON file, for containers, tests and the demo.
//
// # The contract
//
// There are two slots, A and B. The bootloader boots the default slot,
// unless a trial is pending: SetTentative(S, n) makes the next n
// power-ons boot S, counting down, and after that the bootloader falls
// back to the default (the other slot) on its own. MarkGood(S) makes S the
// default and ends any trial; MarkBad(S) makes the other slot the default
// and ends any trial. Status reports the stored state and the slot the
// running system booted from, which every bootloader script passes to the
// kernel as shoal.slot= on its command line (read from /proc/cmdline).
// Every change is durable when the call returns, is atomic with respect
// to power cuts, and is idempotent; a call that is refused changes
// nothing. [boottest.Run] checks all of this for an adapter.
//
// # Simulation
//
// Each adapter is also a [Simulator]: PowerOn does what the bootloader
// does at power-on, following the scripts in packaging/ step by step,
// including writing the counters back the way the bootloader does. The
// virtual device's reboot and the tests use it. It writes the command line
// it boots with to the file given by [WithCmdline] (playing the kernel),
// and refuses to run on an adapter that reads the real /proc/cmdline. The
// file adapter has no kernel command line: its PowerOn records the booted
// slot in its JSON, and in a container it is the bootloader.
//
// # Files
//
// Every file the adapters and simulators touch (the environment block,
// the U-Boot copies and their lock, the BLS entries and loader.conf, the
// JSON file, the command line file) goes through the updater/fsys
// interface given by [WithFS], the real filesystem by default. With an
// fsys.Crash the tests cut the power at each write, rename and sync of
// the boot state, and check that what is found at the next power-on is
// the state before or after the interrupted call.
//
// Parsers of bytes that come from outside ([ParseGRUBEnv],
// [DecodeUBootImage], [ParseBLSEntryName], [ParseFileState],
// [ParseFwEnvConfig]) are strict and fuzzed: state shoal does not fully
// understand is refused with [ErrCorrupt], never rewritten.
package boot
