package backend

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
)

// A RESP3 connection says HELLO 3 with the password in it, then SELECT;
// a wrong password is HELLO's refusal, not a missing RESP3.
func TestDialerRESP3Handshake(t *testing.T) {
	redis := proxytest.StartRedis(t, proxytest.RedisPassword("secret"))
	d := dialer{network: "tcp", auth: "secret", db: 3}
	conn, err := d.dialProto(redis.Addr, 5*time.Second, RESP3)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	conn.Write(proxytest.AppendCommand(nil, "CLIENT", "INFO"))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if info := string(buf[:n]); !strings.HasPrefix(info, "=") || !strings.Contains(info, " db=3 ") || !strings.Contains(info, " resp=3") {
		t.Fatalf("CLIENT INFO = %q, want a verbatim string with db=3 and resp=3", info)
	}

	d.auth = "wrong"
	if _, err := d.dialProto(redis.Addr, 5*time.Second, RESP3); err == nil || errors.Is(err, ErrNoRESP3) || !strings.HasPrefix(err.Error(), "HELLO refused: WRONGPASS") {
		t.Fatalf("dial with a wrong password: %v, want HELLO refused: WRONGPASS ...", err)
	}
}

// A server without HELLO refuses the RESP3 handshake: the upstream is
// marked as not speaking RESP3, requests on its RESP3 connection fail with
// the reason, and none of that counts as a failure of the server, whose
// RESP2 connection goes on serving.
func TestUpstreamWithoutHello(t *testing.T) {
	redis := proxytest.StartRedis(t, proxytest.RedisArgs("--rename-command", "HELLO", ""))
	var r Registry
	defer r.Close()
	u, conns := acquire(t, &r, "p", redis.Addr, 1)
	if _, known := u.SpeaksRESP3(); known {
		t.Fatal("RESP3 known before any handshake")
	}
	if yes, known := u.ProbeRESP3(); yes || !known {
		t.Fatalf("ProbeRESP3 = %v, %v; want false, known", yes, known)
	}
	ping, sizes := pipeline([]string{"PING"})
	b := newBatchSink(1)
	b.run(t, RESP3Conns(conns)[0], ping, sizes)
	if got := string(b.slots[0].reply); !strings.Contains(got, "does not speak RESP3") {
		t.Fatalf("PING on the RESP3 connection = %q, want the reason", got)
	}
	if n := u.Health().Failures(); n != 0 {
		t.Fatalf("%d failures counted, want none", n)
	}
	b.run(t, conns[0], ping, sizes)
	if got := string(b.slots[0].reply); got != "+PONG\r\n" {
		t.Fatalf("PING on the RESP2 connection = %q", got)
	}
}
