package backend

import (
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/proxytest"
	"github.com/shardproxy/shardproxy/proxy/resp"
)

// chanSink hands what a subscription connection delivers to the test.
type chanSink struct {
	messages chan string
	closed   chan error
}

func (s *chanSink) Message(_ *Subscriber, kind MessageKind, name, raw []byte) {
	s.messages <- string(name) + " " + string(raw)
}

func (s *chanSink) Closed(_ *Subscriber, err error) { s.closed <- err }

// A subscription connection confirms each command, delivers messages of
// channels and patterns with the name they were subscribed by, answers a
// refused command with the server's error, and reports its end.
func TestSubscriber(t *testing.T) {
	r := proxytest.StartRedis(t)
	var reg Registry
	u, _ := acquire(t, &reg, "p", r.Addr, 1)
	sink := &chanSink{messages: make(chan string, 10), closed: make(chan error, 1)}
	s, err := u.DialSubscriber(sink)
	if err != nil {
		t.Fatal(err)
	}
	acks := make(chan error, 3)
	done := func(err error) { acks <- err }
	for _, cmd := range [][]string{{"SUBSCRIBE", "a", "b"}, {"PSUBSCRIBE", "x*"}, {"SUBSCRIBE"}} {
		var args [][]byte
		for _, a := range cmd {
			args = append(args, []byte(a))
		}
		if err := s.Send(resp.AppendCommand(nil, args...), max(len(cmd)-1, 1), done); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range []string{"", "", "ERR wrong number of arguments for 'subscribe' command"} {
		select {
		case err := <-acks:
			if got := errText(err); got != want {
				t.Fatalf("command %d: done(%q), want %q", i, got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("command %d not confirmed", i)
		}
	}
	pub := r.Client(t)
	pub.Do("PUBLISH", "b", "hi")
	pub.Do("PUBLISH", "xy", "there")
	for _, want := range []string{
		"b *3\r\n$7\r\nmessage\r\n$1\r\nb\r\n$2\r\nhi\r\n",
		"x* *4\r\n$8\r\npmessage\r\n$2\r\nx*\r\n$2\r\nxy\r\n$5\r\nthere\r\n",
	} {
		select {
		case got := <-sink.messages:
			if got != want {
				t.Fatalf("message %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no message, want %q", want)
		}
	}
	r.Kill()
	select {
	case err := <-sink.closed:
		if err == nil {
			t.Fatal("Closed(nil) after the server was killed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Closed not called after the server was killed")
	}
	if err := s.Send(resp.AppendCommand(nil, []byte("SUBSCRIBE"), []byte("c")), 1, nil); err == nil {
		t.Fatal("Send on a closed subscription connection succeeded")
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
