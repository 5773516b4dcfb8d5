package main

import (
	"bytes"
	"strconv"
)

// A key's value is "<key>#<sequence>": the value names the key it was
// written to, so a reply for another key is a misrouted one, and the
// sequence orders one writer's SETs.

func encodeValue(key string, seq uint64) string {
	return key + "#" + strconv.FormatUint(seq, 10)
}

// decodeValue splits a value into its key and sequence; ok is false for
// anything the soak did not write.
func decodeValue(v []byte) (key []byte, seq uint64, ok bool) {
	i := bytes.LastIndexByte(v, '#')
	if i < 0 {
		return nil, 0, false
	}
	seq, err := strconv.ParseUint(string(v[i+1:]), 10, 64)
	if err != nil || seq == 0 {
		return nil, 0, false
	}
	return v[:i], seq, true
}

// keyState is what the one writer of a key knows: the last SET the server
// acknowledged, and the SETs since then whose outcome is unknown (an error
// or a broken connection: the server may or may not have applied them).
// Sequences start at 1; 0 means none.
type keyState struct {
	name      string
	owner     int    // index of the server the ring places the key on
	acked     uint64 // last acknowledged sequence
	unknownLo uint64 // first unacknowledged attempt after acked, 0 if none
	attempted uint64 // last sequence sent
}

// verdict is the result of checking a GET reply against a keyState.
type verdict int

const (
	valueOK        verdict = iota
	valueMisrouted         // the value belongs to another key, or is not ours
	valueLost              // the value is older than the last acknowledged one, or missing
)

func (v verdict) String() string {
	switch v {
	case valueOK:
		return "ok"
	case valueMisrouted:
		return "misrouted"
	default:
		return "lost"
	}
}

// nextSeq returns the sequence of the next SET and records the attempt.
func (k *keyState) nextSeq() uint64 {
	k.attempted++
	return k.attempted
}

// setDone records the outcome of the SET of seq: acknowledged, or unknown.
func (k *keyState) setDone(seq uint64, acked bool) {
	if acked {
		k.acked = seq
		k.unknownLo = 0
		return
	}
	if k.unknownLo == 0 {
		k.unknownLo = seq
	}
}

// check judges the value a GET of the key returned (null for a nil reply):
// it must be this key's, and either the last acknowledged value or one of
// the attempts after it whose outcome is unknown. With no acknowledged
// write, nil is fine.
func (k *keyState) check(value []byte, null bool) verdict {
	if null {
		if k.acked == 0 {
			return valueOK
		}
		return valueLost
	}
	key, seq, ok := decodeValue(value)
	if !ok || string(key) != k.name {
		return valueMisrouted
	}
	if seq == k.acked {
		return valueOK
	}
	if k.unknownLo != 0 && seq >= k.unknownLo && seq <= k.attempted {
		return valueOK
	}
	if seq > k.attempted {
		// A sequence never sent for this key: not ours.
		return valueMisrouted
	}
	return valueLost
}
