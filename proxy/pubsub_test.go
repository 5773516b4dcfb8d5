package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// psStep is one command of a pub/sub exchange and how many replies it gets.
type psStep struct {
	args    []string
	replies int
}

func ps(replies int, args ...string) psStep { return psStep{args: args, replies: replies} }

// exchange runs steps on c and returns every reply's raw bytes, in order.
func exchange(t *testing.T, c *proxytest.Conn, steps []psStep) []string {
	t.Helper()
	var out []string
	for _, st := range steps {
		if err := c.Send(st.args...); err != nil {
			t.Fatalf("%q: %v", st.args, err)
		}
		for range st.replies {
			r, err := c.Read()
			if err != nil {
				t.Fatalf("%q: %v", st.args, err)
			}
			out = append(out, string(r.Raw()))
		}
	}
	return out
}

// readMessage reads one reply from c, failing t on an error.
func readMessage(t *testing.T, c *proxytest.Conn) string {
	t.Helper()
	r, err := c.Read()
	if err != nil {
		t.Fatalf("reading a message: %v", err)
	}
	return string(r.Raw())
}

// expectClosed checks that the proxy closes each of conns, which get
// nothing more before that.
func expectClosed(t *testing.T, conns ...*proxytest.Conn) {
	t.Helper()
	for _, c := range conns {
		c.Timeout = 10 * time.Second
		r, err := c.Read()
		switch {
		case err == nil:
			t.Fatalf("got %q, want the connection closed", r.Raw())
		case isTimeout(err):
			t.Fatalf("the connection is still open: %v", err)
		}
	}
}

func message(channel, payload string) string {
	return fmt.Sprintf("*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(channel), channel, len(payload), payload)
}

func pmessage(pattern, channel, payload string) string {
	return fmt.Sprintf("*4\r\n$8\r\npmessage\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n",
		len(pattern), pattern, len(channel), channel, len(payload), payload)
}

func smessage(channel, payload string) string {
	return fmt.Sprintf("*3\r\n$8\r\nsmessage\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(channel), channel, len(payload), payload)
}

// channelsOnEveryServer returns one channel owned by each server of tp.
func channelsOnEveryServer(t *testing.T, tp *testPool, prefix string) []string {
	t.Helper()
	var chans []string
	for _, r := range tp.redises {
		chans = append(chans, tp.keyOn(t, r, prefix))
	}
	return chans
}

// A subscriber on one connection hears channels of every server, patterns
// across servers and shard channels, and its confirmations and errors are
// byte for byte what one redis-server sends.
func TestPubSubAcrossServers(t *testing.T) {
	tp := startProxy(t, 3, "")
	chans := channelsOnEveryServer(t, tp, "news.")
	shard := channelsOnEveryServer(t, tp, "shard.")
	steps := []psStep{
		ps(3, append([]string{"SUBSCRIBE"}, chans...)...),
		ps(1, "SUBSCRIBE", chans[0]), // again: the count stays
		ps(2, "PSUBSCRIBE", "news.*", "other.*"),
		ps(3, append([]string{"SSUBSCRIBE"}, shard...)...),
		ps(1, "GET", "x"),
		ps(1, "CLIENT", "ID"),
		ps(1, "PING"),
		ps(1, "PING", "hello"),
		ps(2, "UNSUBSCRIBE", chans[1], "never"),
		ps(1, "PUNSUBSCRIBE", "other.*"),
		ps(1, "SUNSUBSCRIBE", shard[2]),
	}
	single := proxytest.StartRedis(t).Client(t)
	want := exchange(t, single, steps)
	sub := tp.client(t)
	got := exchange(t, sub, steps)
	for i := range want {
		if i >= len(got) || got[i] != want[i] {
			t.Fatalf("reply %d: proxy %q, redis-server %q\nproxy:  %q\nserver: %q", i, got[i], want[i], got, want)
		}
	}

	pub := tp.client(t)
	for _, ch := range []string{chans[0], chans[2]} {
		if got := do(t, pub, "PUBLISH", ch, "hi "+ch); got != ":2\r\n" {
			t.Fatalf("PUBLISH %s = %q, want :2 (the channel and the pattern)", ch, got)
		}
		got := []string{readMessage(t, sub), readMessage(t, sub)}
		want := []string{message(ch, "hi "+ch), pmessage("news.*", ch, "hi "+ch)}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("after PUBLISH %s: %q, want %q", ch, got, want)
		}
	}
	// chans[1] is left: only the pattern hears it.
	if got := do(t, pub, "PUBLISH", chans[1], "p"); got != ":1\r\n" {
		t.Fatalf("PUBLISH %s = %q, want :1", chans[1], got)
	}
	if got, want := readMessage(t, sub), pmessage("news.*", chans[1], "p"); got != want {
		t.Fatalf("pattern message = %q, want %q", got, want)
	}
	for _, ch := range shard[:2] {
		if got := do(t, pub, "SPUBLISH", ch, "s"); got != ":1\r\n" {
			t.Fatalf("SPUBLISH %s = %q, want :1", ch, got)
		}
		if got, want := readMessage(t, sub), smessage(ch, "s"); got != want {
			t.Fatalf("shard message = %q, want %q", got, want)
		}
	}

	// UNSUBSCRIBE without arguments leaves every channel, then says there
	// were none; the order of the channels is the server's own.
	tail := []psStep{ps(2, "UNSUBSCRIBE"), ps(1, "UNSUBSCRIBE"), ps(1, "PUNSUBSCRIBE"), ps(1, "PUNSUBSCRIBE"),
		ps(1, "SUNSUBSCRIBE"), ps(1, "SUNSUBSCRIBE"), ps(1, "GET", "x"), ps(1, "PING")}
	want = exchange(t, single, tail)
	got = exchange(t, sub, tail)
	// The channels in any order, the counts going down in order.
	for _, group := range [][2]int{{0, 2}, {5, 7}} {
		sortChannels(got[group[0]:group[1]])
		sortChannels(want[group[0]:group[1]])
	}
	if !slices.Equal(got, want) {
		t.Fatalf("after UNSUBSCRIBE:\nproxy:  %q\nserver: %q", got, want)
	}
	if got := do(t, pub, "PUBLISH", chans[0], "gone"); got != ":0\r\n" {
		t.Fatalf("PUBLISH after every client left = %q, want :0", got)
	}
}

// sortChannels puts unsubscribe confirmations in the order of their
// channels, keeping each place's count where it was.
func sortChannels(confirmations []string) {
	var heads, counts []string
	for _, c := range confirmations {
		i := strings.LastIndex(c[:len(c)-2], "\r\n:")
		heads, counts = append(heads, c[:i+2]), append(counts, c[i+2:])
	}
	slices.Sort(heads)
	for i := range confirmations {
		confirmations[i] = heads[i] + counts[i]
	}
}

// PUBSUB CHANNELS, NUMSUB, NUMPAT and their shard forms answer for the
// whole pool.
func TestPubSubIntrospection(t *testing.T) {
	tp := startProxy(t, 3, "")
	chans := channelsOnEveryServer(t, tp, "c.")
	shard := channelsOnEveryServer(t, tp, "s.")
	sub := tp.client(t)
	exchange(t, sub, []psStep{
		ps(3, append([]string{"SUBSCRIBE"}, chans...)...),
		ps(1, "PSUBSCRIBE", "c.*"),
		ps(3, append([]string{"SSUBSCRIBE"}, shard...)...),
	})
	other := tp.client(t)
	exchange(t, other, []psStep{ps(1, "SUBSCRIBE", chans[0])})
	c := tp.client(t)

	r, err := c.Do("PUBSUB", "CHANNELS")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range r.Elems {
		names = append(names, string(e.Str))
	}
	slices.Sort(names)
	if want := slices.Sorted(slices.Values(chans)); !slices.Equal(names, want) {
		t.Fatalf("PUBSUB CHANNELS = %q, want %q", names, want)
	}
	if got, want := do(t, c, "PUBSUB", "CHANNELS", "nomatch*"), "*0\r\n"; got != want {
		t.Fatalf("PUBSUB CHANNELS nomatch* = %q, want %q", got, want)
	}
	r, _ = c.Do("PUBSUB", "SHARDCHANNELS")
	if len(r.Elems) != 3 {
		t.Fatalf("PUBSUB SHARDCHANNELS = %q, want 3 channels", r.Raw())
	}
	// Each proxy counts once on its server, however many of its clients listen.
	want := fmt.Sprintf("*6\r\n$%d\r\n%s\r\n:1\r\n$%d\r\n%s\r\n:1\r\n$4\r\nnone\r\n:0\r\n", len(chans[0]), chans[0], len(chans[2]), chans[2])
	if got := do(t, c, "PUBSUB", "NUMSUB", chans[0], chans[2], "none"); got != want {
		t.Fatalf("PUBSUB NUMSUB = %q, want %q", got, want)
	}
	want = fmt.Sprintf("*2\r\n$%d\r\n%s\r\n:1\r\n", len(shard[1]), shard[1])
	if got := do(t, c, "PUBSUB", "SHARDNUMSUB", shard[1]); got != want {
		t.Fatalf("PUBSUB SHARDNUMSUB = %q, want %q", got, want)
	}
	if got := do(t, c, "PUBSUB", "NUMSUB"); got != "*0\r\n" {
		t.Fatalf("PUBSUB NUMSUB without channels = %q", got)
	}
	if got := do(t, c, "PUBSUB", "NUMPAT"); got != ":1\r\n" {
		t.Fatalf("PUBSUB NUMPAT = %q, want :1", got)
	}
}

// A subscriber that never reads is closed at its pubsub hard limit, and
// counted, while the other clients keep being answered.
func TestPubSubSlowSubscriberCutOff(t *testing.T) {
	tp := startProxy(t, 3, "  client_output_buffer_limit_pubsub: 256kb 0 0\n")
	nc, err := net.Dial("tcp", tp.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	slow := proxytest.NewConn(nc)
	ch := tp.keyOn(t, tp.redises[0], "slow.")
	exchange(t, slow, []psStep{ps(1, "SUBSCRIBE", ch)})

	pub, other := tp.client(t), tp.client(t)
	key := tp.keyOn(t, tp.redises[0], "k.")
	do(t, pub, "SET", key, "v")
	payload := strings.Repeat("x", 64<<10)
	stats := tp.srv.poolList()[0].stats
	for i := 0; stats.ClientOutputLimitCloses.Load() == 0; i++ {
		if i == 2000 {
			t.Fatal("the subscriber that does not read was not closed")
		}
		if r, err := pub.Do("PUBLISH", ch, payload); err != nil || r.IsError() {
			t.Fatalf("PUBLISH: %q, %v", r.Raw(), err)
		}
		if got := do(t, other, "PING"); got != "+PONG\r\n" {
			t.Fatalf("PING = %q", got)
		}
		if got := do(t, other, "GET", key); got != "$1\r\nv\r\n" {
			t.Fatalf("GET = %q", got)
		}
	}
	nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.Copy(io.Discard, nc); err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("the slow subscriber's connection did not end: %v", err)
	}
	if got := do(t, other, "GET", key); got != "$1\r\nv\r\n" {
		t.Fatalf("GET after = %q", got)
	}
}

// A subscription connection that fails closes its subscribers, so that
// they subscribe again rather than wait for nothing.
func TestPubSubServerKilledClosesSubscribers(t *testing.T) {
	tp := startProxy(t, 3, "")
	ch := tp.keyOn(t, tp.redises[1], "k.")
	sub := tp.client(t)
	exchange(t, sub, []psStep{ps(1, "SUBSCRIBE", ch)})
	patterns := tp.client(t)
	exchange(t, patterns, []psStep{ps(1, "PSUBSCRIBE", "*")})
	bystander := tp.client(t)
	exchange(t, bystander, []psStep{ps(1, "SUBSCRIBE", tp.keyOn(t, tp.redises[0], "k."))})
	tp.redises[1].Kill()
	expectClosed(t, sub, patterns)
	if got := do(t, bystander, "PING"); got != "*2\r\n$4\r\npong\r\n$0\r\n\r\n" {
		t.Fatalf("subscriber of another server: PING = %q", got)
	}
}

// A reload that keeps the server keeps the subscription; one that moves
// the channel to another server closes the subscriber.
func TestPubSubReload(t *testing.T) {
	a, b := proxytest.StartRedis(t), proxytest.StartRedis(t)
	listen := fmt.Sprintf("127.0.0.1:%d", proxytest.FreePort(t))
	srv := startServer(t, poolYAML(listen, "", a.Addr+":1 s0"), Options{})
	sub := proxytest.Dial(t, listen)
	exchange(t, sub, []psStep{ps(1, "SUBSCRIBE", "ch")})
	if err := srv.Reload(mustParse(t, poolYAML(listen, "  timeout: 4000\n", a.Addr+":1 s0"))); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	pub := proxytest.Dial(t, listen)
	if got := do(t, pub, "PUBLISH", "ch", "kept"); got != ":1\r\n" {
		t.Fatalf("PUBLISH after a reload that keeps the server = %q", got)
	}
	if got, want := readMessage(t, sub), message("ch", "kept"); got != want {
		t.Fatalf("message = %q, want %q", got, want)
	}
	if err := srv.Reload(mustParse(t, poolYAML(listen, "", b.Addr+":1 s0"))); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	expectClosed(t, sub)
}

// CLIENT KILL TYPE pubsub kills the subscribed clients and TYPE normal the
// others; a client that disconnects gives up its subscriptions.
func TestPubSubClientKillAndDisconnect(t *testing.T) {
	tp := startProxy(t, 3, "")
	ch := tp.keyOn(t, tp.redises[2], "k.")
	sub := tp.client(t)
	exchange(t, sub, []psStep{ps(1, "SUBSCRIBE", ch)})
	admin := tp.client(t)
	if got := do(t, admin, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"); got != ":0\r\n" {
		t.Fatalf("CLIENT KILL TYPE normal = %q, want :0", got)
	}
	if got := do(t, admin, "CLIENT", "KILL", "TYPE", "pubsub"); got != ":1\r\n" {
		t.Fatalf("CLIENT KILL TYPE pubsub = %q, want :1", got)
	}
	expectClosed(t, sub)
	deadline := time.Now().Add(10 * time.Second)
	for do(t, admin, "PUBSUB", "NUMSUB", ch) != fmt.Sprintf("*2\r\n$%d\r\n%s\r\n:0\r\n", len(ch), ch) {
		if time.Now().After(deadline) {
			t.Fatal("the killed subscriber's channel is still subscribed on its server")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := do(t, admin, "SUBSCRIBE", "inside"); !strings.HasPrefix(got, "*3\r\n$9\r\nsubscribe\r\n") {
		t.Fatalf("SUBSCRIBE = %q", got)
	}
	if got := do(t, admin, "RESET"); got != "+RESET\r\n" {
		t.Fatalf("RESET = %q", got)
	}
	if got := do(t, admin, "PING"); got != "+PONG\r\n" {
		t.Fatalf("PING after RESET = %q, want the ordinary reply", got)
	}
}

// readResp3 reads one RESP3 reply's raw bytes.
func readResp3(br *bufio.Reader) (string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	out := line
	n, _ := strconv.Atoi(strings.TrimRight(line[1:], "\r\n"))
	switch line[0] {
	case '$', '=', '!':
		if n < 0 {
			return out, nil
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(br, b); err != nil {
			return "", err
		}
		return out + string(b), nil
	case '*', '>', '~', '%', '|':
		if line[0] == '%' || line[0] == '|' {
			n *= 2
		}
		for range n {
			s, err := readResp3(br)
			if err != nil {
				return "", err
			}
			out += s
		}
	}
	return out, nil
}

// exchange3 runs steps on a RESP3 connection, as exchange does.
func exchange3(t *testing.T, nc net.Conn, br *bufio.Reader, steps []psStep) []string {
	t.Helper()
	var out []string
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	for _, st := range steps {
		if _, err := nc.Write(proxytest.AppendCommand(nil, st.args...)); err != nil {
			t.Fatal(err)
		}
		for range st.replies {
			r, err := readResp3(br)
			if err != nil {
				t.Fatalf("%q: %v", st.args, err)
			}
			out = append(out, r)
		}
	}
	return out
}

// A RESP3 client gets confirmations and messages as pushes, and its other
// commands keep working while it is subscribed, as with redis-server.
func TestPubSubResp3(t *testing.T) {
	tp := startProxy(t, 3, "")
	chans := channelsOnEveryServer(t, tp, "r3.")
	single := proxytest.StartRedis(t)
	oracle, err := net.Dial("tcp", single.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer oracle.Close()
	obr := bufio.NewReader(oracle)
	exchange3(t, oracle, obr, []psStep{ps(1, "HELLO", "3")})

	testHookClientProto.Store(3)
	nc, err := net.Dial("tcp", tp.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	exchange3(t, nc, br, []psStep{ps(1, "PING")}) // the client exists, with RESP3
	testHookClientProto.Store(0)

	steps := []psStep{
		ps(2, "SUBSCRIBE", chans[0], chans[1]),
		ps(1, "PSUBSCRIBE", "r3.*"),
		ps(1, "SET", "k", "v"),
		ps(1, "GET", "k"),
		ps(1, "PING"),
		ps(1, "UNSUBSCRIBE", chans[1]),
		ps(1, "PUNSUBSCRIBE", "nothing"),
	}
	want := exchange3(t, oracle, obr, steps)
	got := exchange3(t, nc, br, steps)
	if !slices.Equal(got, want) {
		t.Fatalf("RESP3 subscribed:\nproxy:  %q\nserver: %q", got, want)
	}
	if got := do(t, tp.client(t), "PUBLISH", chans[0], "m"); got != ":2\r\n" {
		t.Fatalf("PUBLISH = %q", got)
	}
	var msgs []string
	for range 2 {
		m, err := readResp3(br)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	slices.Sort(msgs)
	wantMsgs := []string{">" + message(chans[0], "m")[1:], ">" + pmessage("r3.*", chans[0], "m")[1:]}
	slices.Sort(wantMsgs)
	if !slices.Equal(msgs, wantMsgs) {
		t.Fatalf("RESP3 messages = %q, want %q", msgs, wantMsgs)
	}
}

// go-redis v9's PubSub with default options: Subscribe, PSubscribe and
// Channel.
func TestPubSubGoRedis(t *testing.T) {
	tp := startProxy(t, 3, "")
	chans := channelsOnEveryServer(t, tp, "gr.")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: tp.addr})
	defer rdb.Close()
	sub := rdb.Subscribe(ctx, chans...)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	psub := rdb.PSubscribe(ctx, "gr.*")
	defer psub.Close()
	if _, err := psub.Receive(ctx); err != nil {
		t.Fatalf("PSubscribe: %v", err)
	}
	for _, ch := range chans {
		if n, err := rdb.Publish(ctx, ch, "to "+ch).Result(); err != nil || n != 2 {
			t.Fatalf("PUBLISH %s = %d, %v; want 2", ch, n, err)
		}
	}
	for _, s := range []*redis.PubSub{sub, psub} {
		got := map[string]string{}
		c := s.Channel()
		for range chans {
			select {
			case m := <-c:
				got[m.Channel] = m.Payload
			case <-ctx.Done():
				t.Fatalf("messages so far %v: %v", got, ctx.Err())
			}
		}
		for _, ch := range chans {
			if got[ch] != "to "+ch {
				t.Fatalf("messages = %v, want one on each of %q", got, chans)
			}
		}
	}
	if v, err := rdb.PubSubNumSub(ctx, chans...).Result(); err != nil || v[chans[1]] != 1 {
		t.Fatalf("PUBSUB NUMSUB = %v, %v", v, err)
	}
}

// redis-py (Debian's python3-redis) with default options: pubsub and
// get_message.
func TestPubSubRedisPy(t *testing.T) {
	tp := startProxy(t, 3, "")
	chans := channelsOnEveryServer(t, tp, "py.")
	host, port, _ := strings.Cut(tp.addr, ":")
	script := fmt.Sprintf(`
import time, redis
r = redis.Redis(host=%q, port=%s)
p = r.pubsub()
chans = %q.split(",")
p.subscribe(*chans)
for ch in chans:
    m = p.get_message(timeout=10)
    assert m["type"] == "subscribe", m
for ch in chans:
    assert r.publish(ch, "hello " + ch) == 1
got = {}
deadline = time.time() + 10
while len(got) < len(chans) and time.time() < deadline:
    m = p.get_message(timeout=1)
    if m and m["type"] == "message":
        got[m["channel"].decode()] = m["data"].decode()
assert got == {ch: "hello " + ch for ch in chans}, got
p.close()
print("ok")
`, host, port, strings.Join(chans, ","))
	out, err := exec.Command("/usr/bin/python3", "-c", script).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("redis-py pubsub: %v\n%s", err, out)
	}
}

// Ejection moves channels: subscribers of the failed server are closed,
// new ones listen where the channel is during the ejection, and are closed
// again when it returns and the channel moves back.
func TestPubSubEjectionMovesChannels(t *testing.T) {
	tp := startProxy(t, 3, "  auto_eject_hosts: true\n  server_failure_limit: 1\n  server_retry_timeout: 700\n")
	dead := tp.redises[0]
	ch := tp.keyOn(t, dead, "e")
	sub, psub := tp.client(t), tp.client(t)
	exchange(t, sub, []psStep{ps(1, "SUBSCRIBE", ch)})
	exchange(t, psub, []psStep{ps(1, "PSUBSCRIBE", "e*")})
	dead.Stop()
	expectClosed(t, sub, psub)
	c := tp.client(t)
	if got := do(t, c, "SET", ch, "1"); !strings.HasPrefix(got, "-ERR server server0") {
		t.Fatalf("SET on a stopped server = %q, want an error naming it", got)
	}
	sub, psub = tp.client(t), tp.client(t)
	exchange(t, sub, []psStep{ps(1, "SUBSCRIBE", ch)})
	if got := exchange(t, psub, []psStep{ps(1, "PSUBSCRIBE", "e*")}); !strings.HasPrefix(got[0], "*3\r\n$10\r\npsubscribe\r\n") {
		t.Fatalf("PSUBSCRIBE while a server is ejected = %q", got)
	}
	if got := do(t, c, "PUBLISH", ch, "moved"); got != ":2\r\n" {
		t.Fatalf("PUBLISH during the ejection = %q, want :2", got)
	}
	if got, want := readMessage(t, sub), message(ch, "moved"); got != want {
		t.Fatalf("message = %q, want %q", got, want)
	}
	if got, want := readMessage(t, psub), pmessage("e*", ch, "moved"); got != want {
		t.Fatalf("pattern message = %q, want %q", got, want)
	}
	dead.Restart(t)
	expectClosed(t, sub, psub)
}
