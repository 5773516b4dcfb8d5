package stats

import "time"

// ClusterStatus is the slot map of a redis_cluster pool: what discovery
// read of it and how much of it is served.
type ClusterStatus struct {
	// Epoch is the cluster's current epoch (CLUSTER INFO
	// cluster_current_epoch) the map was last read at; 0 before the first.
	Epoch uint64
	// Refreshes counts the times discovery read the map, Changes those
	// that found its slots or nodes changed and handed the proxy the new
	// map, LastChange when that last happened (zero before the first).
	Refreshes, Changes int64
	LastChange         time.Time
	// SlotsServed and SlotsUnserved count the hash slots the pool's map
	// gives a master and those it gives none.
	SlotsServed, SlotsUnserved int
}

// ClusterNodeStatus is a node of a redis_cluster pool, one of its
// servers.
type ClusterNodeStatus struct {
	// ID is the node's ID as the slot map names it; "" for a node the
	// map does not name, dialled because a redirect sent a request there.
	ID   string
	Addr string // host:port, where it is dialled
	// Role is "master" for a node the map names; "" for one it does not.
	Role string
	// Moved, Ask and TryAgain count the node's -MOVED, -ASK and
	// -TRYAGAIN replies to the proxy's requests.
	Moved, Ask, TryAgain int64
}

// RoleMaster is the ClusterNodeStatus.Role of a master the map names.
const RoleMaster = "master"
