package stats

import "time"

// The values of one object at one moment, indexed by the Index of the
// fields of its scope.
type (
	ProcessValues [numProcess]int64
	PoolValues    [numPool]int64
	ServerValues  [numServer]int64
)

// Snapshot is everything the stats port reports, read at one moment.
type Snapshot struct {
	Version string // shardproxy's
	Time    time.Time
	Process ProcessValues
	Pools   []PoolSnapshot // in the configuration's order, which is nutcracker's

	// NotReady says why the proxy should get no clients now ("" when it
	// should); Warning is a problem that does not make it unready.
	NotReady, Warning string

	ConfigSHA256    string // of the running configuration file; "" if not known
	Reloads         int64  // configuration reloads that took effect
	ReloadsRejected int64
	Services        []ServiceStatus // discovery's watches; none without discovery

	// ClusterAddresses lists, for each redis_cluster pool, the nodes
	// dialled at another address than the cluster announces.
	ClusterAddresses []ClusterAddresses
}

// PoolSnapshot is one pool in a Snapshot.
type PoolSnapshot struct {
	Name    string
	Values  PoolValues
	Latency LatencySnapshot  // its servers' summed
	Servers []ServerSnapshot // in ring order, which is nutcracker's
	// Cluster is the slot map of a redis_cluster pool; else nil.
	Cluster *ClusterStatus
}

// ServerSnapshot is one server in a Snapshot.
type ServerSnapshot struct {
	Name    string // the ring name: the explicit name, else the address as written
	Values  ServerValues
	Latency LatencySnapshot
	Address AddressStatus
	Group   *GroupStatus // for a group watched by Sentinel; else nil
	// Cluster is the node of a redis_cluster pool the server is; else
	// nil.
	Cluster *ClusterNodeStatus
}

// Reset empties s for reuse; the storage of its pools and servers stays
// for AddPool and AddServer.
func (s *Snapshot) Reset() {
	pools := s.Pools[:0]
	*s = Snapshot{Pools: pools}
}

// AddPool appends an empty pool named name and returns it.
func (s *Snapshot) AddPool(name string) *PoolSnapshot {
	if len(s.Pools) < cap(s.Pools) {
		s.Pools = s.Pools[:len(s.Pools)+1]
	} else {
		s.Pools = append(s.Pools, PoolSnapshot{})
	}
	p := &s.Pools[len(s.Pools)-1]
	*p = PoolSnapshot{Name: name, Servers: p.Servers[:0]}
	return p
}

// AddServer appends an empty server named name and returns it.
func (p *PoolSnapshot) AddServer(name string) *ServerSnapshot {
	if len(p.Servers) < cap(p.Servers) {
		p.Servers = p.Servers[:len(p.Servers)+1]
	} else {
		p.Servers = append(p.Servers, ServerSnapshot{})
	}
	srv := &p.Servers[len(p.Servers)-1]
	*srv = ServerSnapshot{Name: name}
	return srv
}

// ServiceStatus is the state of the watch on one Kubernetes Service's
// EndpointSlices, as discovery reports it.
type ServiceStatus struct {
	Namespace    string    `json:"namespace"`
	Name         string    `json:"name"`
	Synced       bool      `json:"synced"`                  // the first list arrived
	Healthy      bool      `json:"healthy"`                 // the last call to the API server succeeded
	LastError    string    `json:"last_error,omitempty"`    // the last API error, "" if none
	LastErrorAt  time.Time `json:"last_error_at,omitzero"`  // when it happened
	LastChangeAt time.Time `json:"last_change_at,omitzero"` // when the Service's endpoints last changed
	Endpoints    int       `json:"endpoints"`
}

// AddressStatus is where a server is dialled now and where that came from.
type AddressStatus struct {
	Pool      string    `json:"pool"`
	Server    string    `json:"server"`
	Addr      string    `json:"addr"`   // "" while unknown
	Source    string    `json:"source"` // "config" or "endpointslice/<name>"
	Usable    bool      `json:"usable"`
	Reason    string    `json:"reason,omitempty"` // why not usable
	ChangedAt time.Time `json:"changed_at"`
}
