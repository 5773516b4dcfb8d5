package proxytest

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// StartTimeout bounds how long StartRedis, Restart and StartNutcracker wait
// for a server to answer.
const StartTimeout = 10 * time.Second

// Redis is a redis-server started by StartRedis. Its TCP listener is always
// on, at Addr.
type Redis struct {
	Instance        // its --dir is Dir; the log is redis.log there
	Unix     string // unix socket path; "" without RedisUnixSocket
	// TLSAddr and TLSPort are where its TLS listener is, with RedisTLS;
	// else "" and 0.
	TLSAddr string
	TLSPort int

	extra          []string
	tls            *TLSFiles
	tlsAuthClients bool
}

// A RedisOption configures StartRedis.
type RedisOption func(*redisOptions)

type redisOptions struct {
	password       string
	unix           *string
	args           []string
	tls            *TLSFiles
	tlsAuthClients bool
}

// RedisPassword sets requirepass. Client then authenticates.
func RedisPassword(password string) RedisOption {
	return func(o *redisOptions) { o.password = password }
}

// RedisUnixSocket adds a unix socket listener at path, or, if path is "", at
// a path short enough for sun_path (t.TempDir() often is not).
func RedisUnixSocket(path string) RedisOption {
	return func(o *redisOptions) { o.unix = &path }
}

// RedisArgs appends arguments to redis-server's command line, after those
// StartRedis sets, so they override them: RedisArgs("--maxmemory", "1mb").
func RedisArgs(args ...string) RedisOption {
	return func(o *redisOptions) { o.args = append(o.args, args...) }
}

// StartRedis starts a redis-server on a free loopback port with no
// persistence, waits until it answers PING, and kills it in t's cleanup.
func StartRedis(t testing.TB, opts ...RedisOption) *Redis {
	t.Helper()
	var o redisOptions
	for _, opt := range opts {
		opt(&o)
	}
	r := &Redis{
		Instance: Instance{
			Dir:      t.TempDir(),
			Password: o.password,
			bin:      lookBinary(t, "redis-server", "apt-get install redis-server"),
			logName:  "redis.log",
		},
		extra: o.args,
		tls:   o.tls, tlsAuthClients: o.tlsAuthClients,
	}
	if o.unix != nil {
		r.Unix = *o.unix
		if r.Unix == "" {
			r.Unix = shortSocketPath(t, "redis.sock")
		}
		if len(r.Unix) >= 104 {
			t.Fatalf("proxytest: unix socket path %q is too long for sun_path", r.Unix)
		}
	}
	t.Cleanup(r.Kill)
	for attempt := 1; ; attempt++ {
		r.Port = FreePort(t)
		r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(r.Port))
		if r.tls != nil {
			r.TLSPort = FreePort(t)
			r.TLSAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(r.TLSPort))
		}
		logStart := len(r.Log())
		err := r.start()
		if err == nil {
			return r
		}
		// Another process may take the port between FreePort and bind.
		if attempt < 3 && strings.Contains(r.Log()[logStart:], "Address already in use") {
			continue
		}
		t.Fatalf("proxytest: redis-server on %s: %v\nredis.log:\n%s", r.Addr, err, r.Log())
	}
}

// shortSocketPath returns a path for a unix socket in a new directory under
// os.TempDir(), removed in t's cleanup.
func shortSocketPath(t testing.TB, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pt")
	if err != nil {
		t.Fatalf("proxytest: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, name)
}

func (r *Redis) start() error {
	args := []string{
		"--port", strconv.Itoa(r.Port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", r.Dir,
		"--protected-mode", "no",
		"--daemonize", "no",
		"--logfile", "",
	}
	if r.Password != "" {
		args = append(args, "--requirepass", r.Password)
	}
	if r.Unix != "" {
		args = append(args, "--unixsocket", r.Unix, "--unixsocketperm", "700")
	}
	args = append(args, r.tlsArgs()...)
	args = append(args, r.extra...)
	return r.run(args...)
}

// pingable reports whether a redis-server answers PING at addr: +PONG, or
// -NOAUTH when it has a password.
func pingable(addr string) bool {
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c := NewConn(nc)
	defer c.Close()
	c.Timeout = time.Second
	rep, err := c.Do("PING")
	if err != nil {
		return false
	}
	return rep.Type == '+' || bytes.HasPrefix(rep.Str, []byte("NOAUTH"))
}

// Stop shuts the server down with SIGTERM, as an operator would, and waits
// for it to exit (SIGKILL after 5 s). It does nothing if it is not running.
func (r *Redis) Stop() {
	if p := r.process(); p != nil {
		p.Stop(5 * time.Second)
	}
}

// Restart stops the server if it runs and starts it again on the same port
// and dir, with no data (nothing is saved). It fails t, with the log, if the
// server does not come back.
func (r *Redis) Restart(t testing.TB) {
	t.Helper()
	r.Stop()
	if err := r.start(); err != nil {
		t.Fatalf("proxytest: restart redis-server on %s: %v\nredis.log:\n%s", r.Addr, err, r.Log())
	}
}
