// Package resp is the Redis wire format (RESP2 and RESP3) as the proxy
// speaks it: a
// Parser for client requests, a ReplyScanner that finds where a server's
// reply ends, and Append functions that encode requests and replies. It
// works on byte slices only: no I/O, no logging, no state beyond the
// position inside an unfinished command or reply.
//
// Parser reads both request forms redis-server reads: arrays of bulk
// strings ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n") and inline lines ("GET k\r\n",
// split and unquoted as redis-server's sdssplitargs does). It returns
// arguments as slices of the caller's buffer and remembers how far it got
// in an incomplete command, so a large request arriving in many reads is
// scanned once and parsing allocates nothing once its argument slices have
// grown to the largest command seen.
//
// Limits: a bulk string may be at most MaxBulkLen (512 MB, Redis' default
// proto-max-bulk-len), a request at most MaxArgs arguments, an inline
// request at most MaxInlineLen bytes. Declared lengths are checked before
// the caller is asked for more bytes, so a request that announces a 2 GB
// bulk or a billion arguments costs an error, not memory. A malformed
// request is an error whose text is redis-server's ("Protocol error:
// invalid bulk length"), which the proxy answers as "-ERR ..." and after
// which it closes the connection, as redis-server does.
//
// The parser is ours rather than github.com/tidwall/redcon's reader, which
// panics on a negative bulk length such as "*1\r\n$-2\r\n" and allocates per
// command. It is fuzzed (FuzzRequestParser): every input gives commands,
// "need more" or an error, and the same ones however it is cut into reads.
//
// ReplyScanner reads RESP2 and RESP3 replies without decoding them: the
// proxy copies each reply as a raw byte range, and forwards a RESP3
// server's bytes to a RESP3 client unchanged. It checks the framing (type
// bytes, lengths, nesting, attributes), not the content, and is fuzzed
// (FuzzReplyScanner) with seeds of every type.
//
// The encoders follow strconv: AppendBulk(dst, b) appends to dst and
// returns the extended slice, so a batch of replies is built in one
// reused buffer. redcon's append functions write the bytes where it has
// one; AppendCommand and AppendError, whose rules are the proxy's, are
// written here.
package resp
