package updater

import (
	"fmt"
	"io/fs"

	"github.com/shoalnet/shoal/internal/inputfile"
	"github.com/shoalnet/shoal/updater/fsys"
)

// CheckSlots makes sure the two slots are two different files or block
// devices, comparing what the paths resolve to (device and inode, or the
// device number of a block device), not how they are spelled: slot A given
// as a symlink to slot B's image, as ./slot-b.img, or as another
// /dev/disk/by-* name of the same partition would otherwise let an update
// overwrite the running release. A slot that is a directory, a FIFO, a
// socket or a character device is refused too.
func (c *Config) CheckSlots(f fsys.FS) error {
	a, b := c.SlotPath("A"), c.SlotPath("B")
	sa, err := slotInfo(f, "a", a)
	if err != nil {
		return err
	}
	sb, err := slotInfo(f, "b", b)
	if err != nil {
		return err
	}
	if inputfile.Same(sa, sb, a, b) {
		return fmt.Errorf("%w: [slots] a (%s) and b (%s) are the same file", ErrConfig, a, b)
	}
	return nil
}

func slotInfo(f fsys.FS, name, p string) (fs.FileInfo, error) {
	st, err := f.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("%w: [slots] %s: %w", ErrConfig, name, err)
	}
	m := st.Mode()
	switch {
	case m.IsRegular():
	case inputfile.IsBlockDevice(m):
	default:
		return nil, fmt.Errorf("%w: [slots] %s (%s) is %s, not an image file or block device", ErrConfig, name, p, inputfile.Kind(m))
	}
	return st, nil
}
