package main

import (
	"archive/tar"
	"bufio"
	"cmp"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// span is a byte range [start, end) of a file.
type span struct{ start, end uint64 }

// member is one tar entry: its whole extent in the archive (extension
// headers, header, data and padding) and a digest of those bytes.
type member struct {
	span
	sum [32]byte
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n uint64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += uint64(n)
	return n, err
}

// tarMembers lists the entries of a tar file by name. archive/tar does not
// report offsets, so they are derived: after an entry's data has been read
// to the end, the reader stands at the end of the data; the next entry
// (its extension headers first) starts at the next 512-byte boundary.
func tarMembers(path string) (map[string]member, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cr := &countingReader{r: bufio.NewReaderSize(f, 1<<20)}
	tr := tar.NewReader(cr)
	out := map[string]member{}
	var start uint64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: entry after offset %d: %w", path, start, err)
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, h.Name, err)
		}
		end := (cr.n + 511) &^ 511
		m := member{span: span{start, end}}
		raw := io.NewSectionReader(f, int64(start), int64(end-start))
		s := sha256.New()
		if _, err := io.Copy(s, raw); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, h.Name, err)
		}
		copy(m.sum[:], s.Sum(nil))
		out[h.Name] = m
		start = end
	}
}

// changedSpans returns the merged extents of the members of newTar that are
// not byte-identical (same name, same header, same data) in oldTar: the
// bytes an ideal delta would have to send.
func changedSpans(oldTar, newTar string) ([]span, error) {
	old, err := tarMembers(oldTar)
	if err != nil {
		return nil, err
	}
	nw, err := tarMembers(newTar)
	if err != nil {
		return nil, err
	}
	var changed []span
	for name, m := range nw {
		if o, ok := old[name]; !ok || o.sum != m.sum {
			changed = append(changed, m.span)
		}
	}
	return mergeSpans(changed), nil
}

// mergeSpans sorts spans and joins those that touch or overlap.
func mergeSpans(s []span) []span {
	sortSpans(s)
	var out []span
	for _, x := range s {
		if n := len(out); n > 0 && x.start <= out[n-1].end {
			out[n-1].end = max(out[n-1].end, x.end)
			continue
		}
		out = append(out, x)
	}
	return out
}

func sortSpans(s []span) {
	slices.SortFunc(s, func(a, b span) int { return cmp.Compare(a.start, b.start) })
}

// overlap returns how many bytes of x lie inside the sorted spans s.
func overlap(x span, s []span) uint64 {
	var n uint64
	for _, y := range s {
		if y.start >= x.end {
			break
		}
		if y.end > x.start {
			n += min(x.end, y.end) - max(x.start, y.start)
		}
	}
	return n
}
