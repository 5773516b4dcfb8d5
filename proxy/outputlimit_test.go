package proxy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// shardproxyProcess is shardproxy built from cmd/shardproxy and running as
// a process of its own, so that its memory can be measured alone.
type shardproxyProcess struct {
	proc  *proxytest.Process
	addr  string // the pool's listen address
	stats string // the stats port's address
	logs  *syncBuffer
}

// syncBuffer is a bytes.Buffer that a child process writes while the test
// reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startShardproxyProcess builds shardproxy and runs it with one pool named
// alpha over redises; extra is added to the pool's YAML.
func startShardproxyProcess(t *testing.T, redises []*proxytest.Redis, extra string) *shardproxyProcess {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "shardproxy")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/shardproxy/shardproxy/cmd/shardproxy").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	port, statsPort := proxytest.FreePort(t), proxytest.FreePort(t)
	var servers strings.Builder
	for i, r := range redises {
		fmt.Fprintf(&servers, "    - %s:1 server%d\n", r.Addr, i)
	}
	conf := filepath.Join(dir, "nutcracker.yml")
	yaml := fmt.Sprintf("alpha:\n  listen: 127.0.0.1:%d\n  redis: true\n%s  servers:\n%s", port, extra, servers.String())
	if err := os.WriteFile(conf, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	sp := &shardproxyProcess{addr: fmt.Sprintf("127.0.0.1:%d", port), stats: fmt.Sprintf("127.0.0.1:%d", statsPort), logs: &syncBuffer{}}
	cmd := exec.Command(bin, "-c", conf, "-s", strconv.Itoa(statsPort), "-a", "127.0.0.1", "-v", "5")
	cmd.Stdout, cmd.Stderr = sp.logs, sp.logs
	proc, err := proxytest.StartProcess(cmd)
	if err != nil {
		t.Fatal(err)
	}
	sp.proc = proc
	t.Cleanup(proc.Kill)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("shardproxy's log:\n%s", sp.logs.String())
		}
	})
	if err := proc.WaitUntil(20*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", sp.addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}); err != nil {
		t.Fatalf("shardproxy: %v\n%s", err, sp.logs.String())
	}
	return sp
}

// memory returns the process' resident set now and its peak, in bytes, from
// /proc/<pid>/status.
func (sp *shardproxyProcess) memory(t *testing.T) (rss, peak int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", sp.proc.Cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	field := func(name string) int64 {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, name+":"); ok {
				kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				if err != nil {
					t.Fatalf("/proc status %s: %q", name, line)
				}
				return kb << 10
			}
		}
		t.Fatalf("/proc status has no %s", name)
		return 0
	}
	return field("VmRSS"), field("VmHWM")
}

// responses returns the replies the pool's servers sent, from the stats
// port's JSON.
func (sp *shardproxyProcess) responses(t *testing.T) int64 {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + sp.stats + "/")
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatalf("stats: %v", err)
	}
	pool, _ := doc["alpha"].(map[string]any)
	var n int64
	for _, v := range pool {
		if srv, ok := v.(map[string]any); ok {
			if r, ok := srv["responses"].(float64); ok {
				n += int64(r)
			}
		}
	}
	return n
}

const mb = 1 << 20

// bigValue is a value of n bytes that differs at every 8 bytes, so a reply
// cut, shifted or swapped with another shows.
func bigValue(n int, seed byte) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(i/8+int(seed))%26
	}
	return string(b)
}

// readBulk reads one bulk reply and checks that it is want.
func readBulk(br *bufio.Reader, want string) error {
	line, err := br.ReadString('\n')
	if err != nil {
		return err
	}
	if line != fmt.Sprintf("$%d\r\n", len(want)) {
		return fmt.Errorf("reply header %q, want a bulk of %d bytes", line, len(want))
	}
	got := make([]byte, len(want)+2)
	if _, err := io.ReadFull(br, got); err != nil {
		return err
	}
	if string(got[:len(want)]) != want || string(got[len(want):]) != "\r\n" {
		return errors.New("reply body differs from the value")
	}
	return nil
}

// One client that pipelines many GETs of a large value and reads nothing
// must not make the proxy hold all the replies (it held 2.4 GB for 600 of
// 1 MB); other clients are still answered, and the replies all arrive, in
// order, once the client reads.
func TestSlowClientDoesNotGrowProxyMemory(t *testing.T) {
	r := proxytest.StartRedis(t)
	sp := startShardproxyProcess(t, []*proxytest.Redis{r}, "")
	value := bigValue(mb, 0)
	other := proxytest.Dial(t, sp.addr)
	if got := do(t, other, "SET", "big", value); got != "+OK\r\n" {
		t.Fatalf("SET big = %q", got)
	}
	// Warm up: the server connection's read buffer has grown for one large
	// reply, as it has on any proxy that serves large values.
	for i := 0; i < 3; i++ {
		if got := do(t, other, "GET", "big"); len(got) != len(value)+len("$1048576\r\n\r\n") {
			t.Fatalf("GET big: %d bytes", len(got))
		}
	}
	_, before := sp.memory(t)

	const n = 600
	slow, err := net.Dial("tcp", sp.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	var req []byte
	for i := 0; i < n; i++ {
		req = proxytest.AppendCommand(req, "GET", "big")
	}
	slow.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := slow.Write(req); err != nil {
		t.Fatal(err)
	}

	// Wait until the proxy has done all it will do for the slow client: the
	// replies it got from the server and its memory stop changing.
	// The other client's requests (4 so far) are not the slow client's.
	otherRequests := int64(4)
	lastResponses, lastRSS, stableSince := int64(-1), int64(-1), time.Now()
	for deadline := time.Now().Add(60 * time.Second); ; {
		resp := sp.responses(t) - otherRequests
		rss, _ := sp.memory(t)
		if resp != lastResponses || rss > lastRSS+mb {
			lastResponses, lastRSS, stableSince = resp, rss, time.Now()
		} else if time.Since(stableSince) > 2*time.Second {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the proxy did not settle: %d responses, RSS %d MB", resp, rss/mb)
		}
		// Meanwhile another client of the same server is answered.
		if got := do(t, other, "SET", "small", "v"); got != "+OK\r\n" {
			t.Fatalf("SET small = %q", got)
		}
		if got := do(t, other, "GET", "small"); got != "$1\r\nv\r\n" {
			t.Fatalf("GET small = %q", got)
		}
		otherRequests += 2
		time.Sleep(100 * time.Millisecond)
	}
	_, peak := sp.memory(t)
	growth := peak - before
	t.Logf("peak RSS %d MB before the slow client, %d MB after (+%d MB); the server answered %d of its %d GETs",
		before/mb, peak/mb, growth/mb, lastResponses, n)
	if growth > 128*mb {
		t.Errorf("one client that reads nothing grew the proxy's peak RSS by %d MB, want at most 128 MB", growth/mb)
	}

	// Once the client reads, every reply arrives, whole and in order.
	slow.SetReadDeadline(time.Now().Add(120 * time.Second))
	br := bufio.NewReaderSize(slow, 64<<10)
	for i := 0; i < n; i++ {
		if err := readBulk(br, value); err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
	}
	_, peak = sp.memory(t)
	t.Logf("peak RSS after the slow client read everything: %d MB (+%d MB)", peak/mb, (peak-before)/mb)
	if got := do(t, other, "GET", "small"); got != "$1\r\nv\r\n" {
		t.Fatalf("GET small = %q", got)
	}
}

// outputLimitCloses returns how many clients of the test pool were closed
// for their output buffer limit.
func (tp *testPool) outputLimitCloses() int64 {
	return tp.srv.poolList()[0].stats.ClientOutputLimitCloses.Load()
}

// waitOutputLimitCloses waits until n clients were closed for their output
// buffer limit.
func (tp *testPool) waitOutputLimitCloses(t *testing.T, n int64) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); tp.outputLimitCloses() < n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d clients closed for their output buffer limit, want %d", tp.outputLimitCloses(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readToClose reads what the proxy sent until the connection ends and
// returns how many bytes that was; it fails t if the connection stays open.
func readToClose(t *testing.T, c net.Conn) int64 {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, err := io.Copy(io.Discard, c)
	if isTimeout(err) {
		t.Fatalf("the connection is still open after %d bytes", n)
	}
	return n
}

// pipelineGets sends n GETs of key on a new connection and reads nothing.
func pipelineGets(t *testing.T, addr, key string, n int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var req []byte
	for i := 0; i < n; i++ {
		req = proxytest.AppendCommand(req, "GET", key)
	}
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	return c
}

// A client whose unwritten replies stay over the soft limit for the soft
// seconds is closed, whether they are a batch or one reply that the server
// connection's reader could not write at once; other clients go on.
func TestClientOverSoftOutputLimitIsClosed(t *testing.T) {
	tp := startProxy(t, 1, "  client_output_buffer_limit: 256mb 1mb 1\n")
	c := tp.client(t)
	value := bigValue(512<<10, 1)
	if got := do(t, c, "SET", "big", value); got != "+OK\r\n" {
		t.Fatalf("SET big = %q", got)
	}
	slow := pipelineGets(t, tp.addr, "big", 100)
	tp.waitOutputLimitCloses(t, 1)
	if got := readToClose(t, slow); got >= 100*int64(len(value)) {
		t.Errorf("the closed client got %d bytes, all its replies", got)
	}

	huge := bigValue(8*mb, 2)
	if got := do(t, c, "SET", "huge", huge); got != "+OK\r\n" {
		t.Fatalf("SET huge = %q", got)
	}
	slow = pipelineGets(t, tp.addr, "huge", 1)
	tp.waitOutputLimitCloses(t, 2)
	if got := readToClose(t, slow); got >= int64(len(huge)) {
		t.Errorf("the closed client got %d bytes, its whole reply", got)
	}
	if r := do(t, c, "GET", "big"); len(r) < len(value) {
		t.Fatalf("another client's GET big = %d bytes", len(r))
	}
}

// A client whose unwritten replies reach the hard limit is closed at once,
// without being sent the batch that reached it.
func TestClientOverHardOutputLimitIsClosed(t *testing.T) {
	tp := startProxy(t, 1, "  client_output_buffer_limit: 4mb 0 0\n")
	c := tp.client(t)
	value := bigValue(mb, 2)
	if got := do(t, c, "SET", "big", value); got != "+OK\r\n" {
		t.Fatalf("SET big = %q", got)
	}
	slow := pipelineGets(t, tp.addr, "big", 50)
	tp.waitOutputLimitCloses(t, 1)
	if got := readToClose(t, slow); got != 0 {
		t.Errorf("the client closed at its hard limit got %d bytes", got)
	}

	// A single reply larger than the hard limit, which the server
	// connection's reader would write to the client itself.
	huge := bigValue(16*mb, 3)
	if got := do(t, c, "SET", "huge", huge); got != "+OK\r\n" {
		t.Fatalf("SET huge = %q", got)
	}
	slow = pipelineGets(t, tp.addr, "huge", 1)
	tp.waitOutputLimitCloses(t, 2)
	if got := readToClose(t, slow); got >= int64(len(huge)) {
		t.Errorf("the client closed at its hard limit got its whole %d-byte reply", got)
	}
	if got := do(t, c, "GET", "big"); len(got) < len(value) {
		t.Fatalf("another client's GET big = %d bytes", len(got))
	}
}

// Small replies count against the hard limit too, though only large ones
// are counted as they arrive.
func TestClientOverHardOutputLimitWithSmallReplies(t *testing.T) {
	tp := startProxy(t, 1, "  client_output_buffer_limit: 64kb 0 0\n")
	c := tp.client(t)
	value := bigValue(5000, 4)
	if got := do(t, c, "SET", "small", value); got != "+OK\r\n" {
		t.Fatalf("SET small = %q", got)
	}
	slow := pipelineGets(t, tp.addr, "small", 16)
	tp.waitOutputLimitCloses(t, 1)
	if got := readToClose(t, slow); got != 0 {
		t.Errorf("the client closed at its hard limit got %d bytes", got)
	}
	// Under the limit, the same replies are served.
	for i := 0; i < 3; i++ {
		c.Send("GET", "small")
	}
	for i := 0; i < 3; i++ {
		if r, err := c.Read(); err != nil || string(r.Str) != value {
			t.Fatalf("GET small: %d bytes, %v", len(r.Str), err)
		}
	}
}

// A client that reads its large replies as they come is never closed,
// however many it asks for, even when its batches are over the soft limit;
// large and small replies and split MGETs keep their order.
func TestClientReadingLargeRepliesIsNotClosed(t *testing.T) {
	tp := startProxy(t, 3, "  client_output_buffer_limit: 8mb 1mb 30\n")
	c := tp.client(t)
	values := map[string]string{}
	var keys []string
	for i, r := range tp.redises {
		for j, size := range []int{5, 100 << 10, 300<<10 + i} {
			k := tp.keyOn(t, r, fmt.Sprintf("k%d:", j))
			values[k] = bigValue(size, byte(i+j))
			keys = append(keys, k)
			if got := do(t, c, "SET", k, values[k]); got != "+OK\r\n" {
				t.Fatalf("SET %s = %q", k, got)
			}
		}
	}
	for round := 0; round < 4; round++ {
		const n = 300
		for i := 0; i < n; i++ {
			if i%50 == 49 {
				c.Send(append([]string{"MGET"}, keys...)...)
				continue
			}
			c.Send("GET", keys[(i*7)%len(keys)])
		}
		for i := 0; i < n; i++ {
			r, err := c.Read()
			if err != nil {
				t.Fatalf("round %d, reply %d: %v (%d clients closed for their output buffer limit)", round, i, err, tp.outputLimitCloses())
			}
			if i%50 == 49 {
				if len(r.Elems) != len(keys) {
					t.Fatalf("round %d, reply %d: MGET = %d elements", round, i, len(r.Elems))
				}
				for j, e := range r.Elems {
					if string(e.Str) != values[keys[j]] {
						t.Fatalf("round %d, reply %d: MGET element %d differs", round, i, j)
					}
				}
				continue
			}
			if k := keys[(i*7)%len(keys)]; string(r.Str) != values[k] {
				t.Fatalf("round %d, reply %d: GET %s differs (%d bytes)", round, i, k, len(r.Str))
			}
		}
	}
	if n := tp.outputLimitCloses(); n != 0 {
		t.Errorf("%d clients closed for their output buffer limit", n)
	}
}

// The batch limit shrinks in proportion to replies over the budget and
// doubles back after full batches of small ones.
func TestBatchLimitFollowsReplySizes(t *testing.T) {
	defaultLimit := mustParse(t, "alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n  servers:\n    - 127.0.0.1:6379:1\n").Pools[0].ClientOutputBufferLimit
	c := &client{limit: initialBatch, pool: &pool{cfg: &config.Pool{ClientOutputBufferLimit: defaultLimit}}}
	steps := []struct {
		n     int
		total int64
		want  int
	}{
		{16, 16 * mb, 4},   // 1 MB replies: four of them fit the 4 MB budget
		{4, 4*mb + 100, 3}, // just over: fewer
		{3, 3 * mb, 3},     // within, but over half: stays
		{3, 64 * mb, 1},    // a huge one: one at a time
		{1, 64 * mb, 1},    // never below one
		{1, 100, 2},        // small again: doubles after a full batch
		{1, 100, 2},        // a batch that was not full says nothing
		{2, 200, 4},
		{4, 2 * mb, 8}, // exactly half the budget still doubles
		{8, 100, 16},
		{16, 100, 32},
		{32, 100, 64},
		{64, 100, 128},
		{128, 100, 256},
		{256, 100, maxBatch},
		{maxBatch, 100, maxBatch}, // and stops at maxBatch
		{100, 40 * mb, 10},        // a partial batch over the budget shrinks too
	}
	for i, s := range steps {
		c.adapt(s.n, s.total)
		if c.limit != s.want {
			t.Fatalf("step %d: adapt(%d, %d): limit %d, want %d", i, s.n, s.total, c.limit, s.want)
		}
	}
	// A small hard or soft limit lowers the budget.
	for _, tc := range []struct {
		lim  config.OutputBufferLimit
		want int64
	}{
		{config.OutputBufferLimit{}, replyBudget},
		{defaultLimit, replyBudget},
		{config.OutputBufferLimit{Hard: 8 * mb}, 2 * mb},
		{config.OutputBufferLimit{Soft: 2 * mb, SoftTime: time.Second}, mb},
		{config.OutputBufferLimit{Hard: 8 * mb, Soft: 1 * mb}, mb / 2},
	} {
		if got := batchBudget(&tc.lim); got != tc.want {
			t.Errorf("%+v: budget %d, want %d", tc.lim, got, tc.want)
		}
	}
}
