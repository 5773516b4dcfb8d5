package main

import (
	"fmt"
	"slices"
	"time"
)

// point is one sample of a series: when (since the start) and the value.
type point struct {
	at time.Duration
	v  float64
}

// driftRule is the upward-drift test of one series (RSS, goroutines).
//
// The trend is the Theil–Sen slope of the post-warm-up samples: the median
// of the slopes between every pair of them. Unlike a least-squares fit, a
// single outlier (the burst of a server restart) moves the median by at most
// one position, so a one-off spike does not read as growth, while growth
// that goes on at every sample does. The growth is the slope times the
// post-warm-up span (last sample minus first). The series drifts when that
// growth exceeds the allowance: max(Fraction of the first post-warm-up
// value, Floor). With fewer than MinSamples samples there is no verdict.
type driftRule struct {
	Fraction   float64
	Floor      float64
	MinSamples int
}

// driftResult says what the rule found.
type driftResult struct {
	Samples   int
	Slope     float64 // per second
	Growth    float64 // over the span
	Allowance float64
	Drifts    bool
	Checked   bool
}

func (r driftRule) judge(series []point) driftResult {
	res := driftResult{Samples: len(series)}
	if len(series) < max(r.MinSamples, 2) {
		return res
	}
	var slopes []float64
	for i := range series {
		for j := i + 1; j < len(series); j++ {
			dt := (series[j].at - series[i].at).Seconds()
			if dt <= 0 {
				continue
			}
			slopes = append(slopes, (series[j].v-series[i].v)/dt)
		}
	}
	if len(slopes) == 0 {
		return res
	}
	slices.Sort(slopes)
	n := len(slopes)
	res.Slope = slopes[n/2]
	if n%2 == 0 {
		res.Slope = (slopes[n/2-1] + slopes[n/2]) / 2
	}
	span := (series[len(series)-1].at - series[0].at).Seconds()
	res.Growth = res.Slope * span
	res.Allowance = max(r.Fraction*series[0].v, r.Floor)
	res.Drifts = res.Growth > res.Allowance
	res.Checked = true
	return res
}

func (d driftResult) String() string {
	if !d.Checked {
		return fmt.Sprintf("not checked (%d post-warm-up samples)", d.Samples)
	}
	return fmt.Sprintf("trend %+.4g over the post-warm-up span (%.4g/s over %d samples), allowance %.4g", d.Growth, d.Slope, d.Samples, d.Allowance)
}
