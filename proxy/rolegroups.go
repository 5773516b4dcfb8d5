package proxy

import "github.com/shardproxy/shardproxy/proxy/config"

// A pool with group_members is a ring of groups without Sentinel: each
// server is a master with replicas whose roles only the nodes themselves
// know. Discovery asks ROLE of every member and names a master only when
// the members agree on it (discovery.RoleGroupWatcher); from there on such
// a group is followed exactly as a Sentinel-watched one is (group.go).

// RolePool is a pool whose servers are groups without Sentinel: what a
// ROLE watcher needs to follow them.
type RolePool struct {
	Pool string
	// Username and Password are what the pool's server connections
	// authenticate with (config.Pool.ServerAuth): redis_auth, or the
	// server_auth_* keys; Username "" for the default user.
	Username, Password string
	// Groups are the members of each group, by server name.
	Groups map[string]RoleGroupMembers
	// GroupService is the pods' Service (kubernetes_service) that pod
	// members are found in; zero for none.
	GroupService Service
	// TLS is how the members are spoken to: the pool's server_tls_*
	// settings.
	TLS ServerTLS
}

// RoleGroupMembers are one group's members as configured.
type RoleGroupMembers struct {
	// Port is the server line's port, which pod members are dialled on.
	Port    int
	Members []config.GroupMember
}

// RolePools lists the current pools whose groups have no Sentinel.
func (s *Server) RolePools() []RolePool {
	var out []RolePool
	for _, p := range s.poolList() {
		if !p.cfg.HasRoleGroups() {
			continue
		}
		rp := RolePool{Pool: p.cfg.Name, Groups: map[string]RoleGroupMembers{}, TLS: serverTLSOf(p.cfg)}
		rp.Username, rp.Password = p.cfg.ServerAuth()
		if p.cfg.KubernetesService != "" {
			rp.GroupService = Service{Namespace: s.namespace(p.cfg), Name: p.cfg.KubernetesService}
		}
		for _, srv := range p.servers {
			rp.Groups[srv.cfg.Name] = RoleGroupMembers{Port: srv.cfg.Port, Members: p.cfg.GroupMembers[srv.cfg.Name]}
		}
		out = append(out, rp)
	}
	return out
}
