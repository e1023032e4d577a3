package updater

import (
	"github.com/shoalnet/shoal/updater/boot"
	"github.com/shoalnet/shoal/updater/fsys"
)

// bootFSOption routes the boot adapter's file I/O through f.
func bootFSOption(f fsys.FS) []boot.Option { return nil }
