package main

import (
	"math"
	"math/bits"
	"time"
)

// The histogram is log-linear, like HdrHistogram: values below 2^subBits ns
// each have their own bucket, and every power of two above that is split into
// 2^(subBits-1) equal buckets, so a bucket is never wider than 2^(1-subBits)
// (0.8%) of the values in it. Buckets are fixed, so recording is an index
// computation and an add: no allocation, no lock, no resizing.
const (
	subBits    = 8
	subCount   = 1 << subBits // linear buckets for 0..255 ns
	halfCount  = subCount / 2 // buckets per power of two above that
	maxBits    = 40           // 2^40 ns is about 18 minutes; larger values are clamped
	maxValue   = 1<<maxBits - 1
	numBuckets = (maxBits-subBits)*halfCount + subCount
)

// histogram records latencies in nanoseconds. Each worker owns one and
// nothing else touches it until the worker has finished; the results are
// merged afterwards. The zero value is an empty histogram.
type histogram struct {
	counts [numBuckets]uint64
	total  uint64
	sum    uint64 // ns; 2^64 ns is 584 years
	min    uint64 // valid when total > 0
	max    uint64
}

// bucketOf returns the index of the bucket that holds v.
func bucketOf(v uint64) int {
	if v > maxValue {
		v = maxValue
	}
	l := bits.Len64(v)
	if l <= subBits {
		return int(v)
	}
	shift := l - subBits
	return shift*halfCount + int(v>>shift)
}

// lowestOf returns the smallest value that falls into bucket i.
// i may be numBuckets, which gives maxValue+1.
func lowestOf(i int) uint64 {
	if i < subCount {
		return uint64(i)
	}
	shift := i/halfCount - 1
	top := i - shift*halfCount
	return uint64(top) << shift
}

// highestOf returns the largest value that falls into bucket i.
func highestOf(i int) uint64 {
	return lowestOf(i+1) - 1
}

// record adds one sample.
func (h *histogram) record(d time.Duration) {
	h.recordN(d, 1)
}

// recordN adds n samples of the same value, which is how a pipeline round
// trip is counted: every request in it waited that long.
func (h *histogram) recordN(d time.Duration, n uint64) {
	if n == 0 {
		return
	}
	v := uint64(0)
	if d > 0 {
		v = uint64(d)
	}
	h.counts[bucketOf(v)] += n
	if h.total == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.total += n
	h.sum += v * n
}

// merge adds every sample of o to h.
func (h *histogram) merge(o *histogram) {
	if o.total == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.total == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.total += o.total
	h.sum += o.sum
}

// quantile returns the value below or at which a fraction q of the samples
// lie. Like HdrHistogram it answers with the highest value of the bucket that
// holds that sample, kept within the recorded min and max, so it errs high by
// less than one bucket width. An empty histogram answers 0.
func (h *histogram) quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	rank = max(rank, 1)
	rank = min(rank, h.total)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := min(highestOf(i), h.max)
			v = max(v, h.min)
			return time.Duration(v)
		}
	}
	return time.Duration(h.max) // not reached: the counts add up to total
}

// mean returns the average sample, 0 when empty.
func (h *histogram) mean() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(h.sum / h.total)
}
