package stats

// Location is where one key lives in one pool now: the server the pool's
// requests for the key go to, and where that server is dialled. It is what
// `shardproxy locate` prints and the stats port's /locate serves.
type Location struct {
	Key    string `json:"key"`
	Pool   string `json:"pool"`
	Listen string `json:"listen"` // the pool's listen address as written
	// HashTag is the part of the key that placed it when the key has a
	// hash tag (the pool's hash_tag; in a redis_cluster pool Redis'
	// braces); "" when the whole key was hashed.
	HashTag string `json:"hash_tag,omitempty"`
	// Slot is the key's hash slot in a redis_cluster pool; nil elsewhere.
	Slot *int `json:"slot,omitempty"`

	// Server is the server's ring name: its configured name, or else its
	// address as written (a cluster node's address). "" when no server
	// owns the key (Error says why).
	Server string `json:"server,omitempty"`
	// Configured is the server's address as written in the configuration
	// (for a cluster node, the address the slot map names).
	Configured string `json:"configured,omitempty"`
	// Addr is where the server is dialled now: the configured address, a
	// pod's IP from its EndpointSlices, a group's confirmed master or the
	// cluster node serving the slot; "" while unknown. Source says where
	// it came from ("config", "endpointslice/<name>", "sentinel", ...).
	Addr   string `json:"addr,omitempty"`
	Source string `json:"source,omitempty"`
	// Usable is whether the server takes requests now; Reason says why
	// not. Ejected is whether it is ejected (auto_eject_hosts) now.
	Usable  bool   `json:"usable"`
	Ejected bool   `json:"ejected,omitempty"`
	Reason  string `json:"reason,omitempty"`

	// NodeID is the cluster node's ID, in a redis_cluster pool.
	NodeID string `json:"node_id,omitempty"`
	// Master is, for a group (sentinels or group_members), its confirmed
	// master ("" while none is), and Replicas the replicas discovery
	// names for it; for a redis_cluster node its replicas.
	Master   string   `json:"master,omitempty"`
	Replicas []string `json:"replicas,omitempty"`
	// ReadReplicas are the replicas that take the key's reads now, when
	// read_from sends reads to replicas.
	ReadReplicas []string `json:"read_replicas,omitempty"`

	// Error is the error a request for the key gets when no server owns
	// it (every server ejected, or in a redis_cluster pool a slot no
	// master serves).
	Error string `json:"error,omitempty"`
}
