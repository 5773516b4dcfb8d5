package main

import (
	"fmt"
	"math/rand/v2"
)

// keyGen picks the index of the next key, in [0, keys).
type keyGen interface {
	next() uint64
}

// uniformKeys picks every key with the same probability.
type uniformKeys struct {
	r *rand.Rand
	n uint64
}

func (g *uniformKeys) next() uint64 { return g.r.Uint64N(g.n) }

// zipfKeys picks key k with probability proportional to (1+k)^-s, so key 0 is
// the hottest. The proxy hashes the key names, so hot keys are not
// clustered on one backend by their index.
type zipfKeys struct {
	z *rand.Zipf
}

func (g *zipfKeys) next() uint64 { return g.z.Uint64() }

// newKeyGen returns a generator for dist ("uniform" or "zipf") over n keys.
// s is the zipf exponent and must be > 1 (math/rand's Zipf needs that).
func newKeyGen(dist string, n int, s float64, r *rand.Rand) (keyGen, error) {
	if err := checkKeys(dist, n, s); err != nil {
		return nil, err
	}
	if dist == "zipf" {
		return &zipfKeys{z: rand.NewZipf(r, s, 1, uint64(n-1))}, nil
	}
	return &uniformKeys{r: r, n: uint64(n)}, nil
}

// checkKeys checks the arguments of newKeyGen, naming the flag that is wrong.
func checkKeys(dist string, n int, s float64) error {
	switch {
	case n < 1:
		return fmt.Errorf("--keys: %d: must be at least 1", n)
	case dist != "uniform" && dist != "zipf":
		return fmt.Errorf("--dist: %q: must be uniform or zipf", dist)
	case dist == "zipf" && !(s > 1):
		return fmt.Errorf("--zipf-s: %v: must be greater than 1", s)
	}
	return nil
}
