package chunker

// Cutter finds chunk boundaries with explicit normalization. It runs the
// same code as [Split] (with [Params.Normalization] it cuts exactly where
// Split does), so experiments with other normalizations measure the
// shipped cutter rather than a copy. Split itself never takes another
// normalization: an index records only Params, from which its boundaries
// must be reproducible. A Cutter is immutable and safe for concurrent use.
type Cutter struct {
	c *cutter
}

// NewCutter returns a cutter for p with normalization n.
func NewCutter(p Params, n Normalization) (*Cutter, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := n.validate(p); err != nil {
		return nil, err
	}
	return &Cutter{c: newCutterNorm(p, n)}, nil
}

// Cut returns the length of the chunk that starts at data[0]: all of data
// if it is no longer than the minimum size, and never more than the
// maximum. Pass at least Max bytes unless the stream ends sooner.
func (c *Cutter) Cut(data []byte) int { return c.c.cut(data) }
