package proxy

import (
	"math"
	"net"
)

// reservedFiles are the file descriptors the client limit leaves for what
// is neither a client nor a pool's listener or server connection:
// nutcracker's RESERVED_FDS (32), and the stats port's listener, which
// shardproxy always opens.
const reservedFiles = 32 + 1

// clientLimit is how many clients the pools may have at once when the
// process may open openFiles file descriptors, by nutcracker's rule
// (core_calc_connections): what is left after each pool's listener and
// server_connections per server, and reservedFiles. Connections opened for
// some clients only (a blocked command's, a transaction's, a subscription,
// a RESP3 client's, a replica's) are not counted. 0 when nothing is left.
func clientLimit(openFiles int64, pools []*pool) int64 {
	n := openFiles - reservedFiles
	for _, p := range pools {
		n -= int64(len(p.servers)*max(p.cfg.ServerConnections, 1)) + 1
	}
	return max(n, 0)
}

// setClientLimit computes the client limit for pools, the pools about to
// become current, unless Options.MaxClients fixed it.
func (s *Server) setClientLimit(pools []*pool) {
	if s.fixedMaxClients > 0 {
		if prev := s.maxClients.Swap(s.fixedMaxClients); prev != s.fixedMaxClients {
			s.logger.Info("client limit", "max_clients", s.fixedMaxClients, "fixed", true)
		}
		return
	}
	files := openFilesLimit()
	if files <= 0 {
		s.maxClients.Store(math.MaxInt64)
		return
	}
	n := clientLimit(files, pools)
	switch prev := s.maxClients.Swap(n); {
	case n == 0:
		s.logger.Error("the open file limit leaves no room for clients: every client is refused", "max_clients", n, "open_files_limit", files)
	case prev != n:
		s.logger.Info("client limit", "max_clients", n, "open_files_limit", files)
	}
}

// overClientLimit is whether a client accepted on a listener of p would
// go over the proxy's client limit or p's client_connections.
func (s *Server) overClientLimit(p *pool) bool {
	if limit := p.cfg.ClientConnections; limit > 0 && p.stats.ClientConnections.Load() >= int64(limit) {
		return true
	}
	return s.stats.CurrConnections.Load() >= s.maxClients.Load()
}

// maxClientsReply is what a client over a limit reads before its
// connection closes.
var maxClientsReply = []byte("-" + msgMaxClients + "\r\n")

// refuseClient closes a client over a limit, telling it why first unless
// its listener speaks TLS (it could not read the error before a
// handshake), as nutcracker closes clients past its max_ncconn.
func (s *Server) refuseClient(p *pool, conn net.Conn) {
	s.stats.RejectedConnections.Add(1)
	if p.tls == nil {
		conn.Write(maxClientsReply)
	}
	conn.Close()
}
