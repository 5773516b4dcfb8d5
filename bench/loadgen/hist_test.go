package main

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestBucketBounds(t *testing.T) {
	for _, v := range []uint64{0, 1, 2, 127, 255, 256, 257, 511, 512, 513, 1000, 4095, 4096,
		123456, 1e6, 1e9, 123456789012, maxValue - 1, maxValue} {
		i := bucketOf(v)
		lo, hi := lowestOf(i), highestOf(i)
		if v < lo || v > hi {
			t.Errorf("bucketOf(%d) = %d holding [%d, %d], want a bucket that holds %d", v, i, lo, hi, v)
		}
		// The promise of a log-linear histogram: a bucket is at most 2^(1-subBits)
		// of its values wide.
		if width := hi - lo + 1; v >= subCount && float64(width)/float64(v) > 2.0/subCount {
			t.Errorf("bucket %d of %d is %d wide, more than %.4f of the value", i, v, width, 2.0/subCount)
		}
	}
	if got := bucketOf(maxValue); got != numBuckets-1 {
		t.Errorf("bucketOf(maxValue) = %d, want the last bucket %d", got, numBuckets-1)
	}
	if got := bucketOf(1 << 62); got != numBuckets-1 {
		t.Errorf("bucketOf(2^62) = %d, want it clamped to the last bucket %d", got, numBuckets-1)
	}
}

// Buckets must tile the value range: every bucket starts right after the
// previous one ends.
func TestBucketsAreContiguous(t *testing.T) {
	for i := 1; i < numBuckets; i++ {
		if lowestOf(i) != highestOf(i-1)+1 {
			t.Fatalf("bucket %d starts at %d, bucket %d ends at %d", i, lowestOf(i), i-1, highestOf(i-1))
		}
		if bucketOf(lowestOf(i)) != i || bucketOf(highestOf(i)) != i {
			t.Fatalf("bucketOf(lowestOf(%d)) = %d, bucketOf(highestOf(%d)) = %d, want %d",
				i, bucketOf(lowestOf(i)), i, bucketOf(highestOf(i)), i)
		}
	}
	if highestOf(numBuckets-1) != maxValue {
		t.Errorf("last bucket ends at %d, want %d", highestOf(numBuckets-1), maxValue)
	}
}

func TestQuantile(t *testing.T) {
	tests := []struct {
		name    string
		samples []time.Duration
		q       float64
		want    time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one sample", []time.Duration{3 * time.Millisecond}, 0.999, 3 * time.Millisecond},
		{"exact below 256ns", []time.Duration{10, 20, 30, 40}, 0.5, 20},
		{"p100 is max", []time.Duration{10, 20, 30, 40}, 1, 40},
		{"p0 is min", []time.Duration{10, 20, 30, 40}, 0, 10},
		{"negative is zero", []time.Duration{-5}, 0.5, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h histogram
			for _, d := range tc.samples {
				h.record(d)
			}
			if got := h.quantile(tc.q); got != tc.want {
				t.Errorf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
}

// quantile answers within one bucket width above the exact order statistic.
func TestQuantileAccuracy(t *testing.T) {
	var h histogram
	const n = 100000
	for i := 1; i <= n; i++ { // 1µs .. 100ms
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := time.Duration(q*n) * time.Microsecond
		got := h.quantile(q)
		if got < exact || float64(got-exact) > float64(exact)*2/subCount {
			t.Errorf("quantile(%v) = %v, want %v plus at most %.2f%%", q, got, exact, 200.0/subCount)
		}
	}
	if h.total != n {
		t.Errorf("total = %d, want %d", h.total, n)
	}
	if want := time.Duration(n+1) * time.Microsecond / 2; h.mean() != want {
		t.Errorf("mean() = %v, want %v", h.mean(), want)
	}
}

func TestRecordN(t *testing.T) {
	var a, b histogram
	a.recordN(time.Millisecond, 16)
	for range 16 {
		b.record(time.Millisecond)
	}
	a.recordN(time.Second, 0) // nothing succeeded in that pipeline
	if a != b {
		t.Errorf("recordN(1ms, 16) differs from 16 record(1ms): total %d vs %d, sum %d vs %d",
			a.total, b.total, a.sum, b.sum)
	}
}

// Merging per-worker histograms must give what one shared histogram would.
func TestMerge(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var all, merged histogram
	parts := make([]histogram, 4)
	for i := range 10000 {
		d := time.Duration(r.ExpFloat64() * float64(time.Millisecond))
		all.record(d)
		parts[i%len(parts)].record(d)
	}
	merged.merge(&histogram{}) // merging an empty one changes nothing
	for i := range parts {
		merged.merge(&parts[i])
	}
	if merged != all {
		t.Errorf("merged histogram differs: total %d vs %d, min %d vs %d, max %d vs %d",
			merged.total, all.total, merged.min, all.min, merged.max, all.max)
	}
}

func TestRecordAllocatesNothing(t *testing.T) {
	h := new(histogram)
	d := time.Duration(1)
	if allocs := testing.AllocsPerRun(1000, func() {
		h.record(d)
		h.recordN(d*1000, 16)
		d = d*3 + 7
	}); allocs != 0 {
		t.Errorf("record allocates %v times per call, want 0", allocs)
	}
}

func BenchmarkRecord(b *testing.B) {
	b.ReportAllocs()
	h := new(histogram)
	d := time.Duration(1)
	for b.Loop() {
		h.record(d)
		d = (d*7 + 13) & (1<<31 - 1)
	}
}
