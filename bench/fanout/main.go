// Fanout measures publish/subscribe fan-out: --subscribers connections
// listen on --channels channels, a --pattern-share of them by PSUBSCRIBE,
// while --publishers connections send PUBLISH as fast as the subscribers
// take the messages, for --duration. It counts what every subscriber
// receives and fails the run unless, once publishing stops, each one got
// every message published to its channel, in each publisher's order.
//
// With --proxy it talks to one proxy (shardproxy) only. Without it every
// client talks to the redis-servers of --servers directly: a channel's
// subscribers and publishers go to the server that owns the channel on the
// pool's ring (--hash, --distribution, the servers' names), and a pattern
// subscriber subscribes on every server, which is what the proxy does for
// its clients. The channels are picked so that their owners cover every
// server evenly; with --proxy, the run checks on the servers that each
// channel is subscribed on its owner, so both modes put the same load on
// the same servers.
//
// Channel i is <prefix><k>.ch and its pattern subscribers listen on
// <prefix><k>.*, which matches that channel only, so every subscriber
// expects the same share of the messages. A message's payload starts with
// "<publisher>:<sequence>:" and is padded to --payload-size bytes.
//
// Publishers do not outrun the subscribers: a publisher waits while more
// than --window messages are published and not yet delivered to all their
// subscribers, so the servers' and the proxy's per-client queues stay far
// below their output buffer limits and the run measures the rate the
// fan-out sustains, not how much it can buffer.
//
// With --proxy-pid and --server-pids it also reports the CPU time (user +
// system, from /proc/<pid>/stat) those processes used from the first
// PUBLISH until the last message was delivered.
//
// Progress goes to stderr ("publishing" once the subscribers are ready),
// the summary to stdout as one JSON line. The exit code is 0 when the run
// passed, 1 when it failed, 2 for bad flags. Only RESP2 is spoken.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shardproxy/shardproxy/hashring"
)

// maxPayload keeps a message within a subscriber's read buffer.
const maxPayload = 60000

// config holds the flags.
type config struct {
	Proxy        string
	Servers      []hashring.Node
	Hash         string
	Distribution string
	Subscribers  int
	Channels     int
	PatternShare float64
	Publishers   int
	Pipeline     int
	PayloadSize  int
	Prefix       string
	Duration     time.Duration
	Window       int
	Drain        time.Duration
	Timeout      time.Duration
	ProxyPID     int
	ServerPIDs   []int
}

func parseFlags(args []string, output io.Writer) (config, error) {
	var c config
	var servers, serverPIDs string
	fs := flag.NewFlagSet("fanout", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.Usage = func() {
		fmt.Fprint(output, `usage: fanout --servers host:port=name,... [--proxy host:port] [flags]

Measures PUBLISH fan-out to many subscribers, through a proxy or directly
to the servers, and fails unless every subscriber got every message.

flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.Proxy, "proxy", "", "`host:port` of the proxy every client talks to; empty: talk to the servers directly")
	fs.StringVar(&servers, "servers", "", "the pool's servers as `host:port=name,...`, names as in the proxy's config (they place the channels)")
	fs.StringVar(&c.Hash, "hash", "fnv1a_64", "the pool's hash")
	fs.StringVar(&c.Distribution, "distribution", "ketama", "the pool's distribution")
	fs.IntVar(&c.Subscribers, "subscribers", 1000, "subscriber connections (through a proxy; directly, a pattern subscriber has one per server)")
	fs.IntVar(&c.Channels, "channels", 10, "channels, spread evenly over the servers")
	fs.Float64Var(&c.PatternShare, "pattern-share", 0.2, "fraction of the subscribers that subscribe by PSUBSCRIBE")
	fs.IntVar(&c.Publishers, "publishers", 4, "publisher connections (directly, one per server each)")
	fs.IntVar(&c.Pipeline, "pipeline", 1, "PUBLISH requests per round trip of a publisher")
	fs.IntVar(&c.PayloadSize, "payload-size", 64, "bytes in each message")
	fs.StringVar(&c.Prefix, "prefix", "fanout.", "prefix of the channel names")
	fs.DurationVar(&c.Duration, "duration", 5*time.Second, "how long to publish")
	fs.IntVar(&c.Window, "window", 0, "deliveries published and not yet received that make the publishers wait; 0: 128 per subscriber")
	fs.DurationVar(&c.Drain, "drain", 15*time.Second, "how long to wait for the last messages after publishing stops")
	fs.DurationVar(&c.Timeout, "timeout", 5*time.Second, "timeout for dialing, subscribing and each PUBLISH round trip")
	fs.IntVar(&c.ProxyPID, "proxy-pid", 0, "report this process's CPU time as the proxy's")
	fs.StringVar(&serverPIDs, "server-pids", "", "report the sum of these processes' CPU time as the servers' (`pid,pid,...`)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q: fanout takes flags only", fs.Arg(0))
	}
	for _, s := range strings.Split(servers, ",") {
		if s == "" {
			continue
		}
		addr, name, _ := strings.Cut(s, "=")
		c.Servers = append(c.Servers, hashring.Node{Addr: addr, Name: name, Weight: 1})
	}
	for _, s := range strings.Split(serverPIDs, ",") {
		if s == "" {
			continue
		}
		pid, err := strconv.Atoi(s)
		if err != nil || pid <= 0 {
			return c, fmt.Errorf("--server-pids: %q is not a process id", s)
		}
		c.ServerPIDs = append(c.ServerPIDs, pid)
	}
	if c.Window == 0 {
		c.Window = 128 * c.Subscribers
	}
	return c, c.check()
}

func (c *config) check() error {
	switch {
	case len(c.Servers) == 0:
		return errors.New("--servers: must name at least one server")
	case c.Subscribers < 1:
		return fmt.Errorf("--subscribers: %d: must be at least 1", c.Subscribers)
	case c.Channels < len(c.Servers):
		return fmt.Errorf("--channels: %d: must be at least the number of servers, %d", c.Channels, len(c.Servers))
	case !(c.PatternShare >= 0 && c.PatternShare <= 1):
		return fmt.Errorf("--pattern-share: %v: must be between 0 and 1", c.PatternShare)
	case c.Publishers < 1:
		return fmt.Errorf("--publishers: %d: must be at least 1", c.Publishers)
	case c.Pipeline < 1:
		return fmt.Errorf("--pipeline: %d: must be at least 1", c.Pipeline)
	case c.PayloadSize < 24 || c.PayloadSize > maxPayload:
		return fmt.Errorf("--payload-size: %d: must be between 24 (room for publisher and sequence) and %d", c.PayloadSize, maxPayload)
	case c.Duration <= 0:
		return fmt.Errorf("--duration: %v: must be positive", c.Duration)
	case c.Window < 1:
		return fmt.Errorf("--window: %d: must be positive", c.Window)
	case c.Timeout <= 0 || c.Drain <= 0:
		return errors.New("--timeout and --drain must be positive")
	}
	for _, s := range c.Servers {
		if s.Addr == "" || s.Name == "" {
			return fmt.Errorf("--servers: %q: want host:port=name", s.Addr)
		}
	}
	return nil
}

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "fanout: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res := run(ctx, cfg, stderr)
	b, err := json.Marshal(res)
	if err != nil {
		fmt.Fprintf(stderr, "fanout: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s\n", b)
	if !res.Passed {
		fmt.Fprintf(stderr, "fanout: FAIL: %s\n", res.Failure)
		return 1
	}
	return 0
}
