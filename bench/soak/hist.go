package main

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// histogram counts latencies in fixed log-linear buckets: 16 per power of
// two of microseconds, so a bucket is at most 1/16 (6%) wide. Recording
// is one atomic add; the counts only grow, and a report takes the
// difference of two snapshots.
const (
	histSub     = 16
	histPowers  = 32
	histBuckets = histSub * histPowers
)

type histogram struct {
	counts [histBuckets]atomic.Uint64
}

type histSnapshot [histBuckets]uint64

func bucketOf(us uint64) int {
	if us < histSub {
		return int(us)
	}
	p := bits.Len64(us) - 1 // us in [2^p, 2^(p+1))
	sub := (us >> (p - 4)) & (histSub - 1)
	b := (p-3)*histSub + int(sub)
	if b >= histBuckets {
		return histBuckets - 1
	}
	return b
}

// bucketUpper returns the upper bound in microseconds of bucket b.
func bucketUpper(b int) uint64 {
	if b < histSub {
		return uint64(b)
	}
	p := b/histSub + 3
	sub := uint64(b % histSub)
	return (histSub+sub+1)<<(p-4) - 1
}

func (h *histogram) record(d time.Duration) {
	us := d.Microseconds()
	if us < 0 {
		us = 0
	}
	h.counts[bucketOf(uint64(us))].Add(1)
}

func (h *histogram) snapshot() histSnapshot {
	var s histSnapshot
	for i := range h.counts {
		s[i] = h.counts[i].Load()
	}
	return s
}

// quantiles returns the given quantiles of the counts in now minus before,
// as durations (the upper bound of the bucket), and the count.
func quantiles(now, before *histSnapshot, qs ...float64) ([]time.Duration, uint64) {
	var diff histSnapshot
	var total uint64
	for i := range diff {
		diff[i] = now[i] - before[i]
		total += diff[i]
	}
	out := make([]time.Duration, len(qs))
	if total == 0 {
		return out, 0
	}
	for j, q := range qs {
		rank := uint64(q*float64(total-1)) + 1
		var seen uint64
		for i, c := range diff {
			seen += c
			if seen >= rank {
				out[j] = time.Duration(bucketUpper(i)) * time.Microsecond
				break
			}
		}
	}
	return out, total
}
