package hashring

// SlotCount is the number of Redis Cluster hash slots.
const SlotCount = 16384

// KeySlot returns key's Redis Cluster hash slot, as CLUSTER KEYSLOT answers
// it: the CRC-16/XMODEM of the key's hash tag (see ClusterTag), or of the
// whole key when it has none, modulo 16384. It allocates nothing.
func KeySlot(key []byte) uint16 {
	part, _ := ClusterTag(key)
	var crc uint16
	for _, b := range part {
		crc = crc<<8 ^ crc16Table[byte(crc>>8)^b]
	}
	return crc & (SlotCount - 1)
}

// ClusterTag returns the part of key that Redis Cluster hashes and true
// when key has a hash tag: the bytes between the first '{' and the first
// '}' after it, if there are any. Otherwise, with no '{', no '}' after it or
// nothing between them ("a{}{b}"), it returns key and false, and the whole
// key is hashed. It is nutcracker's rule for hash_tag "{}" (TagKey); Redis
// Cluster applies it to every key, with no option. The tag is a subslice of
// key.
func ClusterTag(key []byte) ([]byte, bool) {
	part := tagPart(key, '{', '}')
	return part, len(part) != len(key)
}
