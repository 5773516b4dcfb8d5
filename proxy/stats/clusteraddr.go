package stats

// ClusterAddresses is, for one redis_cluster pool, every node the proxy
// dials at another address than the one the cluster announces for it.
type ClusterAddresses struct {
	Pool  string               `json:"pool"`
	Nodes []ClusterNodeAddress `json:"nodes"`
}

// ClusterNodeAddress is one node dialled at another address than the one
// the cluster announces: on Kubernetes, the current IP of the pod its
// announced hostname names, or of the pod that had its announced IP.
type ClusterNodeAddress struct {
	ID        string `json:"id"`
	Announced string `json:"announced"` // host:port as the cluster announces it
	Dialled   string `json:"dialled"`   // host:port where the proxy dials it
	Pod       string `json:"pod,omitempty"`
	Master    bool   `json:"master"`
	// Stale is true when Announced is an address the pod had before, which
	// the cluster still gossips; false when it is the pod's hostname.
	Stale bool `json:"stale"`
}
