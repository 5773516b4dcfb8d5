package main

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestCheckKeys(t *testing.T) {
	tests := []struct {
		dist    string
		n       int
		s       float64
		wantErr string // empty: no error
	}{
		{"uniform", 1, 0, ""},
		{"zipf", 100, 1.01, ""},
		{"uniform", 0, 0, "--keys"},
		{"zipf", 100, 1, "--zipf-s"},
		{"zipf", 100, math.NaN(), "--zipf-s"},
		{"gauss", 100, 1.1, "--dist"},
	}
	for _, tc := range tests {
		err := checkKeys(tc.dist, tc.n, tc.s)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("checkKeys(%q, %d, %v) = %v, want nil", tc.dist, tc.n, tc.s, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("checkKeys(%q, %d, %v) = %v, want an error about %s", tc.dist, tc.n, tc.s, err, tc.wantErr)
		}
	}
}

// counts draws n keys from a generator over keys keys.
func counts(t *testing.T, dist string, keys int, s float64, n int) []int {
	t.Helper()
	g, err := newKeyGen(dist, keys, s, rand.New(rand.NewPCG(7, 8)))
	if err != nil {
		t.Fatalf("newKeyGen(%q, %d, %v): %v", dist, keys, s, err)
	}
	c := make([]int, keys)
	for range n {
		k := g.next()
		if k >= uint64(keys) {
			t.Fatalf("%s next() = %d, want < %d", dist, k, keys)
		}
		c[k]++
	}
	return c
}

func TestUniformKeys(t *testing.T) {
	const keys, n = 10, 100000
	c := counts(t, "uniform", keys, 0, n)
	for k, got := range c {
		// The seed is fixed, so this is deterministic; 5% is about 10 sigma.
		if want := n / keys; math.Abs(float64(got-want)) > 0.05*float64(want) {
			t.Errorf("key %d drawn %d times, want %d ± 5%%", k, got, want)
		}
	}
	if c := counts(t, "uniform", 1, 0, 100); c[0] != 100 {
		t.Errorf("a key space of 1 drew key 0 %d times, want 100", c[0])
	}
}

func TestZipfKeys(t *testing.T) {
	const keys, n, s = 1000, 200000, 1.2
	c := counts(t, "zipf", keys, s, n)
	var h float64 // generalized harmonic number: the normalizer of P(k) = (k+1)^-s / h
	for k := 1; k <= keys; k++ {
		h += math.Pow(float64(k), -s)
	}
	for _, k := range []int{0, 1, 9, 99} {
		want := float64(n) * math.Pow(float64(k+1), -s) / h
		if got := float64(c[k]); math.Abs(got-want) > 0.1*want {
			t.Errorf("key %d drawn %.0f times, want %.0f ± 10%%", k, got, want)
		}
	}
	if !(c[0] > c[1] && c[1] > c[10] && c[10] > c[100]) {
		t.Errorf("zipf counts are not decreasing with rank: key 0: %d, 1: %d, 10: %d, 100: %d", c[0], c[1], c[10], c[100])
	}
}

func TestKeyNames(t *testing.T) {
	w := &worker{prefix: "p:"}
	for _, tc := range []struct {
		i    uint64
		want string
	}{{0, "p:0"}, {42, "p:42"}, {99999, "p:99999"}} {
		if got := w.key(tc.i); got != tc.want {
			t.Errorf("key(%d) = %q, want %q", tc.i, got, tc.want)
		}
	}
	// Strings returned earlier must not change when the buffer is reused.
	a := w.key(1)
	_ = w.key(2)
	if a != "p:1" {
		t.Errorf("key(1) became %q after key(2)", a)
	}
}
