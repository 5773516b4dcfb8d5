package hashring

import "bytes"

// TagKey returns the part of key that is hashed under hash_tag tag, a
// 2-byte string such as "{}", or "" for none. It follows nutcracker:
// the tag opens at the first occurrence of tag[0] and closes at the first
// tag[1] after it; when there is no opening byte, no closing byte after it,
// or nothing between them, the whole key is hashed. So "a{}{b}" hashes whole
// and "user{1}x" hashes "1". With "$$" the closing "$" is the next one after
// the first. A tag that is not exactly 2 bytes long leaves key as it is.
// TagKey returns a subslice of key and allocates nothing.
func TagKey(key []byte, tag string) []byte {
	if len(tag) != 2 {
		return key
	}
	return tagPart(key, tag[0], tag[1])
}

func tagPart(key []byte, open, closing byte) []byte {
	i := bytes.IndexByte(key, open)
	if i < 0 {
		return key
	}
	j := bytes.IndexByte(key[i+1:], closing)
	if j <= 0 { // missing, or an empty tag
		return key
	}
	return key[i+1 : i+1+j]
}
