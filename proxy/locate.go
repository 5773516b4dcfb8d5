package proxy

import (
	"fmt"
	"slices"
	"time"

	"github.com/shardproxy/shardproxy/hashring"
	"github.com/shardproxy/shardproxy/proxy/stats"
)

// Locate says where key lives now in every pool, or only in the pool named
// pool when it is not "": the server a request for the key goes to and the
// address that server is dialled at. It places the key with the layout
// requests use at this moment (the ring without ejected servers, the
// cluster's slot table), so it cannot disagree with routing. The error is
// for a pool that does not exist.
func (s *Server) Locate(key []byte, pool string) ([]stats.Location, error) {
	var out []stats.Location
	for _, p := range s.poolList() {
		if pool != "" && p.cfg.Name != pool {
			continue
		}
		out = append(out, p.locate(key))
	}
	if pool != "" && len(out) == 0 {
		return nil, fmt.Errorf("no pool %q", pool)
	}
	return out, nil
}

// locate is where key lives in p now.
func (p *pool) locate(key []byte) stats.Location {
	l := p.layout.Load()
	loc := stats.Location{Key: string(key), Pool: p.cfg.Name, Listen: p.cfg.Listen}
	if tag, ok := l.Tag(key); ok {
		loc.HashTag = string(tag)
	}
	if p.seeds != nil {
		slot := int(hashring.KeySlot(key))
		loc.Slot = &slot
	}
	idx := l.Lookup(key)
	if idx < 0 {
		loc.Error = l.noOwnerOf(key)
		return loc
	}
	srv := l.servers[idx]
	loc.Server, loc.Configured = srv.cfg.Name, srv.cfg.Addr
	loc.Addr, loc.Source, _ = srv.address.Status()
	loc.Reason = srv.address.Unavailable()
	loc.Ejected = srv.health.EjectedUntil() > time.Now().UnixNano()
	loc.Usable = loc.Reason == "" && !loc.Ejected
	if loc.Ejected && loc.Reason == "" {
		loc.Reason = "ejected"
	}
	switch {
	case srv.group != nil:
		st := srv.group.snapshot(loc.Reason)
		loc.Master = st.Master
		loc.Replicas = st.Replicas
		if p.readsReplicas {
			loc.ReadReplicas = st.ReadReplicas
		}
	case p.seeds != nil:
		m := p.clusterMap
		if i := slices.Index(m.Masters, srv.cfg.DialAddr); i >= 0 {
			if i < len(m.IDs) {
				loc.NodeID = m.IDs[i]
			}
			if i < len(m.Replicas) {
				loc.Replicas = slices.Clone(m.Replicas[i])
			}
		}
		for _, r := range srv.replicas {
			if r.reads.Load() {
				loc.ReadReplicas = append(loc.ReadReplicas, r.addr)
			}
		}
	}
	return loc
}
