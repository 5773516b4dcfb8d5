package proxy

import (
	"fmt"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// infoHeaders returns the section headers of an INFO reply, in order, and
// fails t if the reply is not laid out as Redis lays it out: sections
// separated by one empty line, every line ending in CRLF.
func infoHeaders(t *testing.T, reply string) []string {
	t.Helper()
	body, ok := strings.CutPrefix(reply, "$")
	if !ok {
		t.Fatalf("INFO reply %q is not a bulk string", reply)
	}
	n, body, _ := strings.Cut(body, "\r\n")
	if size, err := strconv.Atoi(n); err != nil || size != len(body)-2 {
		t.Fatalf("INFO reply %q: length %s for %d bytes", reply, n, len(body)-2)
	}
	body = strings.TrimSuffix(body, "\r\n") // the bulk string's own CRLF
	if body == "" {
		return nil
	}
	if !strings.HasSuffix(body, "\r\n") || strings.HasSuffix(body, "\r\n\r\n") {
		t.Fatalf("INFO reply %q: the last section must end with one CRLF", reply)
	}
	var headers []string
	for _, section := range strings.Split(strings.TrimSuffix(body, "\r\n"), "\r\n\r\n") {
		if !strings.HasPrefix(section, "# ") || strings.Contains(section, "\n\n") {
			t.Fatalf("INFO reply %q: malformed section %q", reply, section)
		}
		header, _, _ := strings.Cut(section, "\r\n")
		headers = append(headers, strings.TrimPrefix(header, "# "))
	}
	return headers
}

// INFO takes Redis 7's section arguments: one or more names in any case,
// all, default, everything; an unknown section gives an empty reply.
func TestInfoSections(t *testing.T) {
	tp := startProxy(t, 2, "")
	c := tp.client(t)
	every := []string{"Server", "Clients", "Memory", "Persistence", "Replication", "Keyspace"}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, every},
		{[]string{"default"}, every},
		{[]string{"ALL"}, every},
		{[]string{"everything"}, every},
		{[]string{"keyspace"}, []string{"Keyspace"}},
		{[]string{"KeySpace"}, []string{"Keyspace"}},
		{[]string{"keyspace", "server"}, []string{"Server", "Keyspace"}},
		{[]string{"clients", "clients", "memory"}, []string{"Clients", "Memory"}},
		{[]string{"bogus", "replication"}, []string{"Replication"}},
		{[]string{"keyspace", "default"}, every},
		{[]string{"bogus"}, nil},
		{[]string{"stats"}, nil},
	} {
		got := infoHeaders(t, do(t, c, append([]string{"INFO"}, tc.args...)...))
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("INFO %v: sections %v, want %v", tc.args, got, tc.want)
		}
	}
	// redis-server's own reply for a section it does not have.
	single := proxytest.StartRedis(t).Client(t)
	if got, want := do(t, c, "INFO", "bogus"), do(t, single, "INFO", "bogus"); got != want {
		t.Errorf("INFO bogus = %q, redis-server says %q", got, want)
	}
}

// INFO has the fields dashboards read: used_memory (the proxy's own),
// used_memory_human, maxmemory (the Go runtime's memory limit, 0 without
// one) and uptime_in_days.
func TestInfoMemoryAndUptime(t *testing.T) {
	tp := startProxy(t, 1, "")
	c := tp.client(t)
	field := func(info, name string) string {
		t.Helper()
		m := regexp.MustCompile(`\r\n` + name + `:([^\r]*)\r\n`).FindStringSubmatch(info)
		if m == nil {
			t.Fatalf("INFO has no %s: %q", name, info)
		}
		return m[1]
	}
	info := do(t, c, "INFO")
	if n, err := strconv.ParseUint(field(info, "used_memory"), 10, 64); err != nil || n == 0 {
		t.Errorf("used_memory = %q, want a positive number", field(info, "used_memory"))
	} else if human := field(info, "used_memory_human"); human != humanBytes(n) {
		t.Errorf("used_memory_human = %q for used_memory %d, want %q", human, n, humanBytes(n))
	}
	if got := field(info, "maxmemory"); got != "0" {
		t.Errorf("maxmemory = %q without a memory limit, want 0", got)
	}
	if got := field(info, "maxmemory_human"); got != "0B" {
		t.Errorf("maxmemory_human = %q without a memory limit, want 0B", got)
	}
	if got := field(info, "uptime_in_days"); got != "0" {
		t.Errorf("uptime_in_days = %q, want 0", got)
	}
	saved := debug.SetMemoryLimit(3 << 30)
	defer debug.SetMemoryLimit(saved)
	info = do(t, c, "INFO", "memory")
	if got := field(info, "maxmemory"); got != strconv.Itoa(3<<30) {
		t.Errorf("maxmemory = %q with a 3 GiB memory limit, want %d", got, 3<<30)
	}
	if got := field(info, "maxmemory_human"); got != "3.00G" {
		t.Errorf("maxmemory_human = %q with a 3 GiB memory limit, want 3.00G", got)
	}
}

// humanBytes writes sizes as Redis' *_human fields do.
func TestHumanBytes(t *testing.T) {
	for _, tc := range []struct {
		n    uint64
		want string
	}{
		{0, "0B"}, {1023, "1023B"}, {1024, "1.00K"}, {1536, "1.50K"}, {1<<20 - 1, "1024.00K"},
		{1 << 20, "1.00M"}, {5 << 30, "5.00G"}, {3 << 40, "3.00T"}, {7 << 50, "7.00P"}, {1 << 60, "1152921504606846976B"},
	} {
		if got := humanBytes(tc.n); got != tc.want {
			t.Errorf("humanBytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
	// redis-server's own used_memory_human for its used_memory.
	info := do(t, proxytest.StartRedis(t).Client(t), "INFO", "memory")
	m := regexp.MustCompile(`used_memory:(\d+)\r\nused_memory_human:([^\r]+)\r\n`).FindStringSubmatch(info)
	if m == nil {
		t.Fatalf("redis-server INFO memory: %q", info)
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	if got := humanBytes(n); got != m[2] {
		t.Errorf("humanBytes(%d) = %q, redis-server says %q", n, got, m[2])
	}
}
