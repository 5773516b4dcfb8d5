package proxy

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// keyspaceOf returns the db line of an INFO reply's Keyspace section, ""
// when it has none.
func keyspaceOf(t *testing.T, info string, db int) string {
	t.Helper()
	_, section, ok := strings.Cut(info, "# Keyspace\r\n")
	if !ok {
		t.Fatalf("INFO reply %q has no Keyspace section", info)
	}
	m := regexp.MustCompile(fmt.Sprintf(`(?m)^db%d:[^\r]*`, db)).FindString(section)
	return m
}

// keyspaceFields parses db<n>:keys=K,expires=E,avg_ttl=A.
func keyspaceFields(t *testing.T, line string) (keys, expires, avgTTL int64) {
	t.Helper()
	if line == "" {
		return 0, 0, 0
	}
	m := regexp.MustCompile(`^db\d+:keys=(\d+),expires=(\d+),avg_ttl=(\d+)$`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("keyspace line %q is not db<n>:keys=K,expires=E,avg_ttl=A", line)
	}
	k, _ := strconv.ParseInt(m[1], 10, 64)
	e, _ := strconv.ParseInt(m[2], 10, 64)
	a, _ := strconv.ParseInt(m[3], 10, 64)
	return k, e, a
}

// INFO's Keyspace section is the pool's: keys and expires summed over the
// servers, avg_ttl their mean weighted by expires, and only redis_db,
// whatever other databases the servers hold.
func TestInfoKeyspaceSumsServers(t *testing.T) {
	const db = 2
	tp := startProxy(t, 3, fmt.Sprintf("  redis_db: %d\n", db), proxytest.RedisArgs("--enable-debug-command", "yes"))
	c := tp.client(t)
	if got := keyspaceOf(t, do(t, c, "INFO", "keyspace"), db); got != "" {
		t.Fatalf("INFO keyspace of an empty pool has %q, want no db line", got)
	}
	// Different counts and times to live on each server, and keys in
	// other databases that must not show.
	for i, r := range tp.redises {
		direct := r.Client(t)
		do(t, direct, "SET", "db0-key", "x")
		do(t, direct, "SELECT", "5")
		do(t, direct, "SET", "db5-key", "x")
		do(t, direct, "SELECT", strconv.Itoa(db))
		for j := range 10 * (i + 1) {
			do(t, direct, "SET", fmt.Sprintf("k%d", j), "v")
		}
		for j := range 3 * (i + 1) {
			do(t, direct, "EXPIRE", fmt.Sprintf("k%d", j), strconv.Itoa(1000*(i+1)))
		}
	}
	// avg_ttl is each server's running estimate, updated as it samples
	// keys to expire: wait until every server has one, then stop the
	// sampling so that the servers' numbers stay as they are read.
	deadline := time.Now().Add(20 * time.Second)
	for _, r := range tp.redises {
		direct := r.Client(t)
		do(t, direct, "SELECT", strconv.Itoa(db))
		for {
			if _, _, avg := keyspaceFields(t, keyspaceOf(t, do(t, direct, "INFO", "keyspace"), db)); avg > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s has no avg_ttl after 20s", r.Addr)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if got := do(t, direct, "DEBUG", "SET-ACTIVE-EXPIRE", "0"); got != "+OK\r\n" {
			t.Fatalf("DEBUG SET-ACTIVE-EXPIRE 0 on %s = %q", r.Addr, got)
		}
	}
	var keys, expires int64
	var weighted float64
	for _, r := range tp.redises {
		info := do(t, r.Client(t), "INFO", "keyspace")
		if keyspaceOf(t, info, 0) == "" || keyspaceOf(t, info, 5) == "" {
			t.Fatalf("%s INFO keyspace %q lacks db0 or db5", r.Addr, info)
		}
		k, e, a := keyspaceFields(t, keyspaceOf(t, info, db))
		keys, expires, weighted = keys+k, expires+e, weighted+float64(a)*float64(e)
	}
	want := fmt.Sprintf("db%d:keys=%d,expires=%d,avg_ttl=%d", db, keys, expires, int64(weighted/float64(expires)))
	if keys != 60 || expires != 18 {
		t.Fatalf("the servers hold %d keys and %d with a TTL in db %d, want 60 and 18", keys, expires, db)
	}
	for _, args := range [][]string{{"INFO"}, {"INFO", "keyspace"}, {"INFO", "all"}, {"INFO", "default"}, {"INFO", "server", "KEYSPACE"}} {
		info := do(t, c, args...)
		if got := keyspaceOf(t, info, db); got != want {
			t.Errorf("%v: keyspace line %q, want %q", args, got, want)
		}
		for _, other := range []int{0, 5} {
			if got := keyspaceOf(t, info, other); got != "" {
				t.Errorf("%v shows db %d, which is not the pool's: %q", args, other, got)
			}
		}
		infoHeaders(t, info) // laid out as Redis lays it out
	}
	if got := do(t, c, "DBSIZE"); got != fmt.Sprintf(":%d\r\n", keys) {
		t.Errorf("DBSIZE = %q, want %d, as INFO keyspace says", got, keys)
	}
}

// A server that is down makes INFO keyspace an error naming it, as every
// command that needs all servers; INFO of other sections needs no server.
func TestInfoKeyspaceServerDown(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := tp.client(t)
	do(t, c, "SET", "k", "v")
	tp.redises[1].Stop()
	wantErr := "-ERR server server1 (" + tp.redises[1].Addr + "): "
	for _, args := range [][]string{{"INFO", "keyspace"}, {"INFO", "server", "keyspace"}, {"INFO", "all", "Keyspace"}} {
		if got := do(t, c, args...); !strings.HasPrefix(got, wantErr) {
			t.Errorf("%v with a server down = %q, want prefix %q", args, got, wantErr)
		}
	}
	got := do(t, c, "INFO", "server", "clients")
	if h := infoHeaders(t, got); strings.Join(h, ",") != "Server,Clients" {
		t.Errorf("INFO server clients with a server down: sections %v", h)
	}
}

// INFO without naming the Keyspace section still answers while a server is
// down, its keyspace that of the servers that answered: ioredis sends INFO
// on every connect, with its default options, and gives up the connection
// when INFO is an error.
func TestInfoAnswersWhileAServerIsDown(t *testing.T) {
	tp := startProxy(t, 3, "")
	c := tp.client(t)
	for i := range 30 {
		do(t, c, "SET", fmt.Sprintf("k%d", i), "v")
	}
	tp.redises[1].Stop()
	var keys int64
	for _, r := range []*proxytest.Redis{tp.redises[0], tp.redises[2]} {
		k, _, _ := keyspaceFields(t, keyspaceOf(t, do(t, r.Client(t), "INFO", "keyspace"), 0))
		keys += k
	}
	want := fmt.Sprintf("db0:keys=%d,expires=0,avg_ttl=0", keys)
	for _, args := range [][]string{{"INFO"}, {"INFO", "default"}, {"INFO", "all"}, {"INFO", "everything"}} {
		info := do(t, c, args...)
		if got := keyspaceOf(t, info, 0); got != want {
			t.Errorf("%v with server1 down: keyspace line %q, want %q", args, got, want)
		}
		if h := infoHeaders(t, info); len(h) != 6 {
			t.Errorf("%v with server1 down: sections %v, want all six", args, h)
		}
	}
}

// parseKeyspace reads the pool's database line from a server's INFO
// keyspace reply, and refuses what is not one.
func TestParseKeyspace(t *testing.T) {
	bulk := func(s string) string { return fmt.Sprintf("$%d\r\n%s\r\n", len(s), s) }
	verbatim := func(s string) string { return fmt.Sprintf("=%d\r\ntxt:%s\r\n", len(s)+4, s) }
	tests := []struct {
		reply string
		want  keyspaceLine
		ok    bool
	}{
		{bulk("# Keyspace\r\n"), keyspaceLine{}, true},
		{bulk("# Keyspace\r\ndb0:keys=9,expires=9,avg_ttl=9\r\ndb3:keys=5,expires=2,avg_ttl=700\r\n"), keyspaceLine{5, 2, 700}, true},
		{bulk("# Keyspace\r\ndb3:keys=5,expires=0,avg_ttl=0\r\n"), keyspaceLine{5, 0, 0}, true},
		{verbatim("# Keyspace\r\ndb3:keys=5,expires=2,avg_ttl=7\r\n"), keyspaceLine{5, 2, 7}, true},
		{bulk("# Keyspace\r\ndb13:keys=5,expires=2,avg_ttl=7\r\n"), keyspaceLine{}, true},
		{bulk("# Keyspace\r\ndb3:keys=x,expires=2,avg_ttl=7\r\n"), keyspaceLine{}, false},
		{"$99\r\n# Keyspace\r\n", keyspaceLine{}, false},
		{"=14\r\nbin:# Keyspace\r\n\r\n", keyspaceLine{}, false},
		{":1\r\n", keyspaceLine{}, false},
		{"", keyspaceLine{}, false},
	}
	for _, tc := range tests {
		got, ok := parseKeyspace([]byte(tc.reply), 3)
		if ok != tc.ok || ok && got != tc.want {
			t.Errorf("parseKeyspace(%q, 3) = %+v, %v; want %+v, %v", tc.reply, got, ok, tc.want, tc.ok)
		}
	}
}

// With every server ejected, INFO still answers, with no keyspace line,
// and INFO keyspace gets the error DBSIZE gets.
func TestInfoAllServersEjected(t *testing.T) {
	tp := startProxy(t, 1, "  auto_eject_hosts: true\n  server_failure_limit: 1\n  server_retry_timeout: 600000\n")
	c := tp.client(t)
	do(t, c, "SET", "k", "v")
	tp.redises[0].Stop()
	waitFor(t, "server0 ejected", func() bool { return do(t, c, "GET", "k") == "-"+msgNoServer+"\r\n" })
	info := do(t, c, "INFO")
	if got := keyspaceOf(t, info, 0); got != "" {
		t.Errorf("INFO with every server ejected has keyspace line %q, want none", got)
	}
	if h := infoHeaders(t, info); len(h) != 6 {
		t.Errorf("INFO with every server ejected: sections %v, want all six", h)
	}
	if got, want := do(t, c, "INFO", "keyspace"), "-"+msgNoServer+"\r\n"; got != want {
		t.Errorf("INFO keyspace with every server ejected = %q, want %q", got, want)
	}
}
