package resp

import (
	"strconv"

	"github.com/tidwall/redcon"
)

// Encoders append one RESP2 value to dst and return the extended slice, as
// strconv's Append functions do, so a caller reuses one buffer for a whole
// batch of replies. Where redcon has the encoder, it writes the bytes.

// AppendCommand appends args as a request: an array of bulk strings.
func AppendCommand(dst []byte, args ...[]byte) []byte {
	dst = AppendArray(dst, len(args))
	for _, a := range args {
		dst = AppendBulk(dst, a)
	}
	return dst
}

// AppendError appends an error reply. msg starts with the error code ("ERR
// ...", "WRONGTYPE ..."); a CR or LF in it, which would end the reply
// early, is written as a space.
func AppendError(dst []byte, msg string) []byte {
	dst = append(dst, '-')
	for i := 0; i < len(msg); i++ {
		if b := msg[i]; b == '\r' || b == '\n' {
			dst = append(dst, ' ')
		} else {
			dst = append(dst, b)
		}
	}
	return append(dst, '\r', '\n')
}

// AppendOK appends the status reply +OK.
func AppendOK(dst []byte) []byte { return redcon.AppendOK(dst) }

// AppendInt appends an integer reply.
func AppendInt(dst []byte, n int64) []byte { return redcon.AppendInt(dst, n) }

// AppendArray appends the header of an array of n elements; the elements
// follow.
func AppendArray(dst []byte, n int) []byte { return redcon.AppendArray(dst, n) }

// AppendBulk appends b as a bulk string.
func AppendBulk(dst, b []byte) []byte { return redcon.AppendBulk(dst, b) }

// AppendBulkString appends s as a bulk string.
func AppendBulkString(dst []byte, s string) []byte { return redcon.AppendBulkString(dst, s) }

// AppendNull appends the null bulk string, $-1, RESP2's nil.
func AppendNull(dst []byte) []byte { return redcon.AppendNull(dst) }

// RESP3's own types, for clients that said HELLO 3. redcon writes RESP2
// only.

// AppendMap appends the header of a RESP3 map of n key-value pairs; the
// 2n elements follow.
func AppendMap(dst []byte, n int) []byte { return appendHeader(dst, '%', n) }

// AppendSet appends the header of a RESP3 set of n elements.
func AppendSet(dst []byte, n int) []byte { return appendHeader(dst, '~', n) }

// AppendPush appends the header of a RESP3 push message of n elements
// (pub/sub messages, invalidations); the elements follow.
func AppendPush(dst []byte, n int) []byte { return appendHeader(dst, '>', n) }

// AppendNull3 appends RESP3's null, _, which stands for both of RESP2's
// nils ($-1 and *-1).
func AppendNull3(dst []byte) []byte { return append(dst, '_', '\r', '\n') }

func appendHeader(dst []byte, kind byte, n int) []byte {
	dst = append(dst, kind)
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, '\r', '\n')
}

// AppendVerbatim appends s as a RESP3 verbatim string of the three-letter
// format ("txt", "mkd"), as Redis sends INFO and CLIENT LIST to RESP3
// clients.
func AppendVerbatim(dst []byte, format, s string) []byte {
	dst = appendHeader(dst, '=', len(format)+1+len(s))
	dst = append(dst, format...)
	dst = append(dst, ':')
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}
