package main

import (
	"testing"
	"time"
)

// The value checker tells acknowledged, unknown-outcome, lost and
// misrouted values apart.
func TestKeyStateCheck(t *testing.T) {
	k := &keyState{name: "soak:{w1:k2}"}
	val := func(key string, seq uint64) []byte { return []byte(encodeValue(key, seq)) }
	expect := func(what string, value []byte, null bool, want verdict) {
		t.Helper()
		if got := k.check(value, null); got != want {
			t.Errorf("%s: check(%q, null=%v) = %v, want %v (state %+v)", what, value, null, got, want, *k)
		}
	}
	expect("never written", nil, true, valueOK)
	expect("another key's value", val("soak:{w1:k3}", 1), false, valueMisrouted)
	expect("not a soak value", []byte("hello"), false, valueMisrouted)

	s1 := k.nextSeq()
	k.setDone(s1, true)
	expect("acknowledged", val(k.name, 1), false, valueOK)
	expect("missing after an acknowledged SET", nil, true, valueLost)
	expect("a sequence never sent", val(k.name, 2), false, valueMisrouted)

	s2 := k.nextSeq()
	k.setDone(s2, false)
	s3 := k.nextSeq()
	k.setDone(s3, false)
	expect("last acknowledged after failures", val(k.name, 1), false, valueOK)
	expect("first failed attempt applied", val(k.name, 2), false, valueOK)
	expect("second failed attempt applied", val(k.name, 3), false, valueOK)
	expect("missing after failures", nil, true, valueLost)

	s4 := k.nextSeq()
	k.setDone(s4, true)
	expect("newly acknowledged", val(k.name, 4), false, valueOK)
	expect("older than the acknowledged", val(k.name, 3), false, valueLost)
	expect("much older", val(k.name, 1), false, valueLost)
	expect("other key with the right sequence", val("soak:{w1:k20}", 4), false, valueMisrouted)
}

func TestDecodeValue(t *testing.T) {
	for _, tc := range []struct {
		in  string
		key string
		seq uint64
		ok  bool
	}{
		{"a#1", "a", 1, true},
		{"soak:{w1#x}#12", "soak:{w1#x}", 12, true},
		{"a#0", "", 0, false},
		{"a#", "", 0, false},
		{"a", "", 0, false},
		{"a#-1", "", 0, false},
	} {
		key, seq, ok := decodeValue([]byte(tc.in))
		if ok != tc.ok || (ok && (string(key) != tc.key || seq != tc.seq)) {
			t.Errorf("decodeValue(%q) = %q, %d, %v; want %q, %d, %v", tc.in, key, seq, ok, tc.key, tc.seq, tc.ok)
		}
	}
}

// Quantiles come from the difference of two snapshots, within a bucket's
// width of the true value.
func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	before := h.snapshot()
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Millisecond)
	}
	now := h.snapshot()
	qs, n := quantiles(&now, &before, 0.5, 0.99, 0.999)
	if n != 1000 {
		t.Fatalf("count %d, want 1000", n)
	}
	for i, want := range []time.Duration{500 * time.Millisecond, 990 * time.Millisecond, 999 * time.Millisecond} {
		if qs[i] < want || float64(qs[i]) > float64(want)*1.07 {
			t.Errorf("quantile %d = %v, want within 7%% above %v", i, qs[i], want)
		}
	}
	for us := uint64(0); us < 1<<20; us = us*9/8 + 1 {
		b := bucketOf(us)
		if bucketUpper(b) < us || (b > 0 && bucketUpper(b-1) >= us) {
			t.Fatalf("%dus in bucket %d of upper bound %d (previous %d)", us, b, bucketUpper(b), bucketUpper(b-1))
		}
	}
}
