package hashring

// SlotCount is the number of Redis Cluster hash slots.
const SlotCount = 16384

// slotTables[k][b] is the CRC-16/XMODEM register after byte b followed by k
// zero bytes, starting from 0: with them KeySlot folds eight bytes of a key
// into the register per step instead of one (slicing-by-8); slotTables[0] is
// crc16Table.
var slotTables = func() (t [8][256]uint16) {
	t[0] = crc16Table
	for k := 1; k < len(t); k++ {
		for b := range t[k] {
			prev := t[k-1][b]
			t[k][b] = prev<<8 ^ crc16Table[prev>>8]
		}
	}
	return t
}()

// KeySlot returns key's Redis Cluster hash slot, as CLUSTER KEYSLOT answers
// it: the CRC-16/XMODEM of the key's hash tag (see ClusterTag), or of the
// whole key when it has none, modulo 16384. It allocates nothing.
func KeySlot(key []byte) uint16 {
	part, _ := ClusterTag(key)
	var crc uint16
	t := &slotTables
	for len(part) >= 8 {
		crc = t[7][part[0]^byte(crc>>8)] ^ t[6][part[1]^byte(crc)] ^
			t[5][part[2]] ^ t[4][part[3]] ^ t[3][part[4]] ^ t[2][part[5]] ^ t[1][part[6]] ^ t[0][part[7]]
		part = part[8:]
	}
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
