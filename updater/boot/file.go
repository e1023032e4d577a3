package boot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"
)

// FileState is the file adapter's JSON document. In a container there is
// no bootloader: whatever starts the container reads this file to pick the
// root file system, and calls PowerOn to do the bootloader's counting.
type FileState struct {
	// Default is the slot booted when no trial is pending.
	Default string `json:"default"`
	// Trial is the slot on trial, or "".
	Trial string `json:"trial,omitempty"`
	// TriesLeft is how many more boots Trial gets.
	TriesLeft int `json:"tries_left,omitempty"`
	// Booted is the slot chosen at the last PowerOn.
	Booted string `json:"booted,omitempty"`
}

// ParseFileState reads and checks a file adapter document. Unknown
// fields, trailing data and inconsistent states wrap ErrCorrupt.
func ParseFileState(b []byte) (FileState, error) {
	var s FileState
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&s); err != nil {
		return FileState{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if err := d.Decode(&struct{}{}); err != io.EOF {
		return FileState{}, fmt.Errorf("%w: trailing data after the JSON object", ErrCorrupt)
	}
	switch {
	case s.Default != SlotA && s.Default != SlotB:
		return FileState{}, fmt.Errorf("%w: default slot %q", ErrCorrupt, s.Default)
	case s.Trial != "" && s.Trial != other(s.Default):
		return FileState{}, fmt.Errorf("%w: trial slot %q with default %s", ErrCorrupt, s.Trial, s.Default)
	case s.TriesLeft < 0 || s.TriesLeft > MaxTries || (s.Trial == "" && s.TriesLeft != 0):
		return FileState{}, fmt.Errorf("%w: %d tries left for trial %q", ErrCorrupt, s.TriesLeft, s.Trial)
	case s.Booted != "" && s.Booted != SlotA && s.Booted != SlotB:
		return FileState{}, fmt.Errorf("%w: booted slot %q", ErrCorrupt, s.Booted)
	}
	return s, nil
}

// File is the adapter for containers, tests and the demo: the A/B state
// is a small JSON file replaced atomically on every change.
type File struct {
	path string
	opts options
	mu   sync.Mutex
}

var (
	_ Adapter   = (*File)(nil)
	_ Simulator = (*File)(nil)
)

// OpenFile returns the adapter for the JSON file at path, creating it
// (default slot A) if it does not exist. A file that exists but does not
// parse is an error and is left alone. Of the options only WithFS
// matters: the file adapter has no kernel command line.
func OpenFile(path string, opts ...Option) (*File, error) {
	f := &File{path: path, opts: buildOptions(opts)}
	_, err := f.load()
	if errors.Is(err, fs.ErrNotExist) {
		err = f.store(FileState{Default: SlotA}, nil)
	}
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (f *File) load() (FileState, error) {
	b, err := f.opts.readFile(f.path)
	if err != nil {
		return FileState{}, err
	}
	s, err := ParseFileState(b)
	if err != nil {
		return FileState{}, fmt.Errorf("%s: %w", f.path, err)
	}
	return s, nil
}

func (f *File) store(s FileState, old *FileState) error {
	if old != nil && *old == s {
		return nil
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return f.opts.replaceFile(f.path, append(b, '\n'))
}

func (f *File) update(ctx context.Context, fn func(s *FileState) error) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	old, err := f.load()
	if err != nil {
		return err
	}
	s := old
	if err := fn(&s); err != nil {
		return err
	}
	return f.store(s, &old)
}

// Status implements Adapter.
func (f *File) Status(ctx context.Context) (Status, error) {
	if err := ctxErr(ctx); err != nil {
		return Status{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s, err := f.load()
	if err != nil {
		return Status{}, err
	}
	return Status{Booted: s.Booted, Default: s.Default, Trial: s.Trial, TriesLeft: s.TriesLeft}, nil
}

// SetTentative implements Adapter.
func (f *File) SetTentative(ctx context.Context, slot string, tries int) error {
	if err := checkSlot(slot); err != nil {
		return err
	}
	if err := checkTries(tries); err != nil {
		return err
	}
	return f.update(ctx, func(s *FileState) error {
		if slot == s.Default {
			return fmt.Errorf("%w: %s in %s", ErrTrialOfDefault, slot, f.path)
		}
		s.Trial, s.TriesLeft = slot, tries
		return nil
	})
}

// MarkGood implements Adapter.
func (f *File) MarkGood(ctx context.Context, slot string) error {
	if err := checkSlot(slot); err != nil {
		return err
	}
	return f.update(ctx, func(s *FileState) error {
		s.Default, s.Trial, s.TriesLeft = slot, "", 0
		return nil
	})
}

// MarkBad implements Adapter.
func (f *File) MarkBad(ctx context.Context, slot string) error {
	if err := checkSlot(slot); err != nil {
		return err
	}
	return f.update(ctx, func(s *FileState) error {
		s.Default, s.Trial, s.TriesLeft = other(slot), "", 0
		return nil
	})
}

// PowerOn implements Simulator; in a container it is the bootloader: boot
// the trial slot while it has tries (taking one), else end the trial and
// boot the default, and record what booted.
func (f *File) PowerOn(ctx context.Context) (string, error) {
	var slot string
	err := f.update(ctx, func(s *FileState) error {
		slot = s.Default
		if s.Trial != "" {
			if s.TriesLeft > 0 {
				s.TriesLeft--
				slot = s.Trial
			} else {
				s.Trial = ""
			}
		}
		s.Booted = slot
		return nil
	})
	return slot, err
}
