package stats

import "time"

// GroupStatus is the state of a server that is a group watched by Redis
// Sentinel: where its master is and how it got there.
type GroupStatus struct {
	Pool      string `json:"pool"`
	Server    string `json:"server"`
	Master    string `json:"master"`    // the confirmed master; "" while none is
	Confirmed bool   `json:"confirmed"` // ROLE on Master said master
	// Reason is why no master is confirmed, "" when one is.
	Reason     string    `json:"reason,omitempty"`
	Replicas   []string  `json:"replicas"`
	Failovers  int64     `json:"failovers"`            // master switches seen
	LastSwitch time.Time `json:"last_switch,omitzero"` // when the master last switched
	Source     string    `json:"source,omitempty"`     // what discovery said it is
	Epoch      int64     `json:"epoch"`                // discovery's epoch of the master
	Agree      int       `json:"sentinels_agree"`      // Sentinels agreeing on the master
	Reachable  int       `json:"sentinels_reachable"`  // Sentinels answering
	// ReadReplicas are the replicas that take reads now (read_from), and
	// ReplicaReads counts the reads sent to replicas.
	ReadReplicas []string `json:"read_replicas"`
	ReplicaReads int64    `json:"replica_reads"`
}
