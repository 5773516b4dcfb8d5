package statsport

import (
	"os"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/shardproxy/shardproxy/proxy/stats"
)

// nutcrackerVersion is the stats document's "version": tools that read
// nutcracker's stats (exporters, dashboards) check it or parse it, so
// shardproxy reports the nutcracker it replaces, not its own version.
const nutcrackerVersion = "0.5.0"

// hostname is the document's "source", read once (nutcracker reads it at
// start); "unknown" when gethostname fails, as in nutcracker.
var hostname = sync.OnceValue(func() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "unknown"
	}
	return h
})

// jsonFields are the fields of stats.Fields that nutcracker's document
// has, per scope, in the table's order.
var jsonFields = func() (byScope [stats.PerServer + 1][]*stats.Field) {
	for i := range stats.Fields {
		if f := &stats.Fields[i]; f.Nutcracker != "" {
			byScope[f.Scope] = append(byScope[f.Scope], f)
		}
	}
	return byScope
}()

// appendJSON appends nutcracker's stats document for snap to dst: the bytes
// nutcracker 0.5.0 would send on its stats port for the same configuration,
// ending in "}\n". It builds the text the way nutcracker's stats buffer
// does (stats_add_header, stats_add_num, stats_begin_nesting,
// stats_end_nesting, stats_add_footer): every member ends in ", ", and
// closing a nesting rewrites that ending, so the punctuation is
// nutcracker's byte for byte:
//
//	{"service":"nutcracker", ..., "pool": {"client_eof":0, ..., "server": {"server_eof":0, ...}},"pool2": {...}}}
//
// Pools are in the snapshot's order (nutcracker's: shorter names first),
// each pool's servers in ring order, keyed by ring name.
//
// One difference: nutcracker writes names unescaped, so a name holding '"',
// '\' or a control character breaks its JSON. Here names are JSON-escaped
// (and invalid UTF-8 becomes U+FFFD); for every other name, which is every
// name anyone feeds nutcracker's exporters, the bytes are the same.
func appendJSON(dst []byte, snap *stats.Snapshot) []byte {
	b := append(dst, '{')
	b = statsAddString(b, "service", "nutcracker")
	b = statsAddString(b, "source", hostname())
	b = statsAddString(b, "version", nutcrackerVersion)
	for _, f := range jsonFields[stats.PerProcess] {
		b = statsAddNum(b, f.Nutcracker, snap.Process[f.Index])
	}
	for i := range snap.Pools {
		p := &snap.Pools[i]
		b = statsBeginNesting(b, p.Name)
		for _, f := range jsonFields[stats.PerPool] {
			b = statsAddNum(b, f.Nutcracker, p.Values[f.Index])
		}
		if p.Cluster != nil {
			b = appendClusterJSON(b, p.Cluster)
		}
		for j := range p.Servers {
			s := &p.Servers[j]
			b = statsBeginNesting(b, s.Name)
			for _, f := range jsonFields[stats.PerServer] {
				b = statsAddNum(b, f.Nutcracker, s.Values[f.Index])
			}
			if s.Group != nil {
				b = appendGroupJSON(b, s.Group)
			}
			if s.Cluster != nil {
				b = appendClusterNodeJSON(b, s.Cluster)
			}
			b = statsEndNesting(b)
		}
		b = statsEndNesting(b)
	}
	return statsAddFooter(b)
}

// statsAddString appends "key":"value", as stats_add_string does.
func statsAddString(b []byte, key, value string) []byte {
	b = appendJSONString(b, key)
	b = append(b, ':')
	b = appendJSONString(b, value)
	return append(b, ", "...)
}

// statsAddNum appends "key":value, as stats_add_num does.
func statsAddNum(b []byte, key string, value int64) []byte {
	b = appendJSONString(b, key)
	b = append(b, ':')
	b = strconv.AppendInt(b, value, 10)
	return append(b, ", "...)
}

// statsBeginNesting appends "name": { as stats_begin_nesting does.
func statsBeginNesting(b []byte, name string) []byte {
	b = appendJSONString(b, name)
	return append(b, ": {"...)
}

// statsEndNesting closes an object as stats_end_nesting does: the last
// member's ", " becomes "},"; right after a closed object, "}," becomes
// "}},".
func statsEndNesting(b []byte) []byte {
	n := len(b)
	switch {
	case n >= 2 && b[n-2] == ',' && b[n-1] == ' ':
		b[n-2], b[n-1] = '}', ','
	case n >= 2 && b[n-2] == '}' && b[n-1] == ',':
		b[n-1] = '}'
		b = append(b, ',')
	}
	return b
}

// statsAddFooter ends the document as stats_add_footer does: the final ","
// becomes "}" and a newline follows. nutcracker always has a pool; without
// one the header's last ", " is replaced, where nutcracker would leave an
// invalid ",}".
func statsAddFooter(b []byte) []byte {
	n := len(b)
	if n >= 2 && b[n-2] == ',' && b[n-1] == ' ' {
		b[n-2], b[n-1] = '}', '\n'
		return b
	}
	b[n-1] = '}'
	return append(b, '\n')
}

// appendJSONString appends s as a JSON string. Bytes that need no escape
// are copied as they are, so a name nutcracker accepts without '"', '\' or
// control characters comes out exactly as nutcracker writes it.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
