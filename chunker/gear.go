package chunker

// gear is FastCDC's table of 256 random 64-bit values, one per byte value.
// It is generated from a fixed seed by splitmix64 rather than pasted in, so
// it is reproducible from this file alone; the known-vector tests fail if it
// ever changes, because every index ever published depends on it.
var gear = makeGear(0x73686f616c2d6364) // "shoal-cd"

func makeGear(seed uint64) (g [256]uint64) {
	s := seed
	for i := range g {
		s += 0x9e3779b97f4a7c15
		z := s
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		g[i] = z ^ (z >> 31)
	}
	return g
}
