package proxy

import (
	"cmp"
	"net"
	"strconv"

	"github.com/shardproxy/shardproxy/hashring"
	"github.com/shardproxy/shardproxy/proxy/backend"
	"github.com/shardproxy/shardproxy/proxy/config"
)

// initAddress sets where a new upstream of sc, a server of a pool with
// kubernetes_service service ("" for none), is dialled: at the configured
// address, or, for a pod, nowhere until discovery says where the pod is.
func initAddress(a *backend.Address, sc config.Server, service string) {
	if sc.Pod == "" || service == "" {
		a.Set(sc.DialAddr, "config", "")
		return
	}
	a.Set("", "endpointslice", "pod "+sc.Pod+" is not in the EndpointSlices of service "+service+" yet")
}

// PodAddress is what discovery knows about one pod of a Service.
type PodAddress struct {
	IP     string // "" when the pod has no address
	Usable bool   // ready and not terminating
	Reason string // why not usable, for error replies
	Slice  string // the EndpointSlice it came from
}

// podAddress is where the pod server sc is dialled, given what discovery
// knows of its pod (found: whether the pod is in the Service's
// EndpointSlices): the port stays the configured one. dial and source are
// "" when they stay as they are; reason is why the server cannot take
// requests, "" when it can.
func podAddress(sc config.Server, pa PodAddress, found bool) (dial, source, reason string) {
	switch {
	case !found:
		return "", "", "pod " + sc.Pod + " is not in the Service's EndpointSlices"
	case pa.IP == "":
		return "", "", "pod " + sc.Pod + " has no address"
	}
	dial, source = net.JoinHostPort(pa.IP, strconv.Itoa(sc.Port)), "endpointslice/"+pa.Slice
	if !pa.Usable {
		reason = "pod " + sc.Pod + " is " + pa.Reason
	}
	return dial, source, reason
}

// SetPodAddresses tells the pools that find their servers through the
// Kubernetes Service namespace/service where its pods are now, keyed by pod
// name. A server whose pod moved is dialled at the new address from now on,
// and its connections to the old one are closed; a server whose pod is
// missing, not ready or terminating gets no requests (its keys get an
// error, or with auto_eject_hosts the ring is rebuilt without it). A pool
// without a servers list takes the Service's pods as its servers. The
// snapshot is kept, so pools built by a later Reload start from it.
func (s *Server) SetPodAddresses(namespace, service string, pods map[string]PodAddress) {
	svc := Service{Namespace: namespace, Name: service}
	s.podsMu.Lock()
	if s.pods == nil {
		s.pods = map[Service]map[string]PodAddress{}
	}
	s.pods[svc] = pods
	s.podsMu.Unlock()

	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	for _, p := range s.poolList() {
		if p.cfg.KubernetesService != service || s.namespace(p.cfg) != namespace || p.seeds != nil {
			continue // a redis_cluster pool's servers come from its map
		}
		if p.cfg.KubernetesMembers && !sameMembers(p, pods) {
			next, err := newPool(s, membersConfig(p.cfg, pods), p)
			if err != nil {
				s.logger.Error("pool members from Kubernetes", "pool", p.cfg.Name, "err", err)
				continue
			}
			s.applyPods(next, pods, false)
			next.activate()
			s.replacePool(p, next)
			s.logger.Info("pool members changed", "pool", p.cfg.Name, "servers", len(next.servers))
			continue
		}
		s.applyPods(p, pods, true)
	}
}

// applyPods points p's pod servers at pods; logs says whether to log
// changes (not for a pool being built).
func (s *Server) applyPods(p *pool, pods map[string]PodAddress, logs bool) {
	rebuild := false
	for _, srv := range p.servers {
		if srv.cfg.Pod == "" {
			continue
		}
		pa, found := pods[srv.cfg.Pod]
		moved, usableChanged := srv.address.Set(podAddress(srv.cfg, pa, found))
		if !logs {
			rebuild = rebuild || usableChanged
			continue
		}
		addr, source, _ := srv.address.Status()
		if moved {
			s.logger.Info("server address changed", "pool", p.cfg.Name, "server", srv.cfg.Name, "pod", srv.cfg.Pod, "addr", addr, "source", source)
			srv.up.Reset("server moved")
		}
		if usableChanged {
			if why := srv.address.Unavailable(); why != "" {
				s.logger.Warn("server unavailable", "pool", p.cfg.Name, "server", srv.cfg.Name, "reason", why)
			} else {
				s.logger.Info("server available", "pool", p.cfg.Name, "server", srv.cfg.Name, "addr", addr)
			}
			rebuild = true
		}
	}
	if rebuild && p.cfg.AutoEjectHosts {
		p.rebuildRing()
	}
}

// podsFor returns the last pod snapshot of a pool's Service, or nil.
func (s *Server) podsFor(cfg *config.Pool) map[string]PodAddress {
	s.podsMu.Lock()
	defer s.podsMu.Unlock()
	return s.pods[Service{Namespace: s.namespace(cfg), Name: cfg.KubernetesService}]
}

// membersConfig is cfg with the Service's pods as its servers.
func membersConfig(cfg *config.Pool, pods map[string]PodAddress) *config.Pool {
	next := *cfg
	port := cmp.Or(cfg.KubernetesPort, 6379)
	weight := cmp.Or(cfg.KubernetesWeight, 1)
	nodes := make([]hashring.Node, 0, len(pods))
	for pod := range pods {
		nodes = append(nodes, hashring.Node{Name: pod, Addr: net.JoinHostPort(pod, strconv.Itoa(port)), Weight: weight})
	}
	hashring.SortNodes(nodes)
	next.Servers = make([]config.Server, len(nodes))
	for i, n := range nodes {
		next.Servers[i] = config.Server{Name: n.Name, Addr: n.Addr, Network: "tcp", Weight: weight, ExplicitName: true, Port: port, Pod: n.Name}
	}
	return &next
}

// sameMembers reports whether p's servers are exactly the pods.
func sameMembers(p *pool, pods map[string]PodAddress) bool {
	if len(p.servers) != len(pods) {
		return false
	}
	for _, srv := range p.servers {
		if _, ok := pods[srv.cfg.Pod]; !ok {
			return false
		}
	}
	return true
}

// Service names a Kubernetes Service that pools find their servers through.
type Service struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// Services lists the Services the current pools need addresses from.
func (s *Server) Services() []Service {
	var out []Service
	seen := map[Service]bool{}
	for _, p := range s.poolList() {
		if p.cfg.KubernetesService == "" {
			continue
		}
		svc := Service{Namespace: s.namespace(p.cfg), Name: p.cfg.KubernetesService}
		if !seen[svc] {
			seen[svc] = true
			out = append(out, svc)
		}
	}
	return out
}

// namespace is the namespace of a pool's kubernetes_service.
func (s *Server) namespace(cfg *config.Pool) string {
	if cfg.KubernetesNamespace != "" {
		return cfg.KubernetesNamespace
	}
	return s.defaultNamespace
}
