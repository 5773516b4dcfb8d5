package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Options are the parts of a Server that do not come from nutcracker.yml.
type Options struct {
	// Logger receives start, connection state and error logs. nil discards.
	Logger *slog.Logger
}

// Server serves every pool of a Config, each on its own listen address.
type Server struct {
	logger  *slog.Logger
	cfg     *Config
	pools   []*pool
	stats   globalStats
	started time.Time
	ids     atomic.Int64 // client ids for CLIENT ID

	mu        sync.Mutex // guards listeners, clients and closing
	listeners []net.Listener
	clients   map[*client]struct{}
	closing   bool
	wg        sync.WaitGroup // accept loops and clients
}

// NewServer builds the pools of cfg. Nothing listens or dials until Start.
func NewServer(cfg *Config, opts Options) (*Server, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{logger: logger, cfg: cfg, clients: make(map[*client]struct{}), started: time.Now()}
	for i := range cfg.Pools {
		pc := &cfg.Pools[i]
		if !pc.Redis {
			return nil, fmt.Errorf("pool %q: only redis pools (redis: true) are supported", pc.Name)
		}
		p, err := newPool(s, pc)
		if err != nil {
			return nil, err
		}
		s.pools = append(s.pools, p)
	}
	return s, nil
}

// Start listens on every pool's address and starts accepting clients. On
// error nothing is left listening.
func (s *Server) Start() error {
	var lns []net.Listener
	for _, p := range s.pools {
		ln, err := listen(p.cfg)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("pool %q: listen %s: %w", p.cfg.Name, p.cfg.Listen, err)
		}
		lns = append(lns, ln)
	}
	s.mu.Lock()
	s.listeners = lns
	s.mu.Unlock()
	for i, p := range s.pools {
		s.logger.Info("pool listening", "pool", p.cfg.Name, "listen", lns[i].Addr().String(), "servers", len(p.servers), "hash", p.cfg.Hash, "distribution", p.cfg.Distribution)
		if p.cfg.Preconnect {
			p.connectAll()
		}
		s.wg.Add(1)
		go s.acceptLoop(p, lns[i])
	}
	return nil
}

// listen opens a pool's listener: TCP, or a unix socket whose stale file is
// removed first and whose permissions are set as configured.
func listen(cfg *PoolConfig) (net.Listener, error) {
	if cfg.ListenNetwork == "unix" {
		if fi, err := os.Lstat(cfg.ListenAddr); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(cfg.ListenAddr)
		}
		ln, err := net.Listen("unix", cfg.ListenAddr)
		if err != nil {
			return nil, err
		}
		if cfg.ListenPerm != 0 {
			if err := os.Chmod(cfg.ListenAddr, cfg.ListenPerm); err != nil {
				ln.Close()
				return nil, err
			}
		}
		return ln, nil
	}
	backlog := cfg.Backlog
	if backlog <= 0 {
		backlog = 512
	}
	return listenTCP(cfg.ListenAddr, backlog)
}

// Addrs returns the address each pool listens on, by pool name.
func (s *Server) Addrs() map[string]net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]net.Addr, len(s.listeners))
	for i, ln := range s.listeners {
		out[s.pools[i].cfg.Name] = ln.Addr()
	}
	return out
}

func (s *Server) acceptLoop(p *pool, ln net.Listener) {
	defer s.wg.Done()
	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, keep serving.
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay < time.Second {
				delay *= 2
			}
			s.logger.Error("accept failed", "pool", p.cfg.Name, "err", err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		s.stats.totalConnections.Add(1)
		if limit := p.cfg.ClientConnections; limit > 0 && p.stats.clientConnections.Load() >= int64(limit) {
			conn.Write([]byte("-ERR max number of clients reached\r\n"))
			conn.Close()
			continue
		}
		// Client connections get TCP keepalive only with tcpkeepalive, as in
		// nutcracker.
		if tcp, ok := conn.(*net.TCPConn); ok {
			tcp.SetKeepAlive(p.cfg.TCPKeepalive)
		}
		c := newClient(s, p, conn)
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			conn.Close()
			continue
		}
		s.clients[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		p.stats.clientConnections.Add(1)
		s.stats.currConnections.Add(1)
		go c.serve()
	}
}

func (s *Server) removeClient(c *client) {
	s.mu.Lock()
	delete(s.clients, c)
	s.mu.Unlock()
	c.pool.stats.clientConnections.Add(-1)
	s.stats.currConnections.Add(-1)
	s.wg.Done()
}

// Shutdown stops accepting, lets every client finish the batch it is in,
// closes client connections as they go idle, and returns when all are gone
// or ctx ends (then it closes the rest).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for _, ln := range s.listeners {
		ln.Close()
	}
	for c := range s.clients {
		c.stopWhenIdle()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.mu.Lock()
		for c := range s.clients {
			c.conn.Close()
		}
		s.mu.Unlock()
		// Closing the pools fails requests still waiting on a server, so
		// their clients return.
		for _, p := range s.pools {
			p.close()
		}
		<-done
	}
	for _, p := range s.pools {
		p.close()
	}
	return err
}
