package main

import (
	"math/rand/v2"
	"testing"
	"time"
)

func series(n int, f func(i int) float64) []point {
	out := make([]point, n)
	for i := range out {
		out[i] = point{at: time.Duration(i+1) * time.Minute, v: f(i)}
	}
	return out
}

// The drift rule passes flat noisy series and one-off spikes, and fails
// steady growth.
func TestDriftRule(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const mib = 1 << 20
	rule := driftRule{Fraction: 0.10, Floor: 16 * mib, MinSamples: 3}
	for _, tc := range []struct {
		name   string
		series []point
		drifts bool
	}{
		{"flat with noise", series(25, func(int) float64 { return 250*mib + rng.Float64()*20*mib }), false},
		{"spike at a restart", series(25, func(i int) float64 {
			if i == 12 {
				return 600 * mib
			}
			return 250*mib + rng.Float64()*5*mib
		}), false},
		{"spike at the last sample", series(25, func(i int) float64 {
			if i == 24 {
				return 600 * mib
			}
			return 250 * mib
		}), false},
		{"step down", series(25, func(i int) float64 {
			if i > 10 {
				return 200 * mib
			}
			return 250 * mib
		}), false},
		{"slow growth within the allowance", series(25, func(i int) float64 { return 250*mib + float64(i)*0.5*mib }), false},
		{"steady growth", series(25, func(i int) float64 { return 250*mib + float64(i)*2*mib }), true},
		{"steady growth with noise", series(25, func(i int) float64 { return 250*mib + float64(i)*3*mib + rng.Float64()*10*mib }), true},
		{"growth in the second half", series(25, func(i int) float64 { return 250*mib + float64(max(0, i-12))*8*mib }), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := rule.judge(tc.series)
			if !res.Checked || res.Drifts != tc.drifts {
				t.Errorf("judge = %s, drifts %v; want drifts %v", res, res.Drifts, tc.drifts)
			}
		})
	}
}

// Goroutines use a floor, not the fraction, when the count is small.
func TestDriftRuleFloor(t *testing.T) {
	rule := driftRule{Fraction: 0.10, Floor: 100, MinSamples: 3}
	small := series(10, func(i int) float64 { return 50 + float64(i)*5 }) // +45 over the span
	if res := rule.judge(small); res.Drifts {
		t.Errorf("growth of 45 under a floor of 100: %s", res)
	}
	big := series(10, func(i int) float64 { return 50 + float64(i)*20 }) // +180
	if res := rule.judge(big); !res.Drifts {
		t.Errorf("growth of 180 over a floor of 100 passed: %s", res)
	}
}

// Too few samples give no verdict rather than a failure.
func TestDriftRuleTooFewSamples(t *testing.T) {
	rule := driftRule{Fraction: 0.10, Floor: 1, MinSamples: 3}
	res := rule.judge(series(2, func(i int) float64 { return float64(i) * 1e9 }))
	if res.Checked || res.Drifts {
		t.Errorf("two samples: %s, drifts %v", res, res.Drifts)
	}
}
