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
	Agree      int       `json:"sentinels_agree"`      // Sentinels (or, without Sentinel, members) agreeing on the master
	Reachable  int       `json:"sentinels_reachable"`  // Sentinels (or members) answering
	// ReadReplicas are the replicas that take reads now (read_from), and
	// ReplicaReads counts the reads sent to replicas.
	ReadReplicas []string `json:"read_replicas"`
	ReplicaReads int64    `json:"replica_reads"`
	// ReplicaLinks are the group's replicas as the proxy's own ROLE poll
	// of each last saw them, by address.
	ReplicaLinks []ReplicaLink `json:"replica_links"`
}

// ReplicaLink is one replica of a group as the proxy's last ROLE poll of
// it (every 500 ms) saw it.
type ReplicaLink struct {
	Addr string `json:"addr"`
	// Link is "up" while ROLE says a replica whose master link is
	// connected, else "down" (also while it does not answer, and before
	// its first poll).
	Link string `json:"link"`
	// State is ROLE's state of the replica's master link: "connected",
	// "connect", "connecting", "sync", "handshake"; "" when ROLE gave
	// none.
	State string `json:"state"`
	// LagBytes is how far the replica's replication offset is behind its
	// master's, -1 when either is unknown.
	LagBytes int64 `json:"lag_bytes"`
	// Reads is whether it takes reads now (read_from); Reason is why not,
	// "" when it does: one of the Reason constants.
	Reads  bool   `json:"reads"`
	Reason string `json:"reason,omitempty"`
	// Error is what the poll got instead of a replica's ROLE reply, when
	// Reason is ReasonUnreachable or ReasonNotReplica.
	Error string `json:"error,omitempty"`
}

// Why a replica takes no reads (ReplicaLink.Reason).
const (
	ReasonNotPolled      = "not polled yet"
	ReasonUnreachable    = "unreachable"              // no ROLE reply: down, refused, timed out
	ReasonNotReplica     = "not a replica"            // ROLE says master
	ReasonLinkDown       = "link down"                // its master link is not connected
	ReasonLagUnknown     = "lag unknown"              // replica_max_lag is set and the master's offset is unknown
	ReasonLagOverMax     = "lag over replica_max_lag" // further behind than replica_max_lag
	ReasonReadFromMaster = "read_from master"         // the pool reads from masters only
)
