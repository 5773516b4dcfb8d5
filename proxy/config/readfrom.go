package config

import "strconv"

// Keys of a pool with sentinels, group_members or redis_cluster that send
// reads to replicas (ours):
//
//	read_from: R           where a group's (in a Redis Cluster pool, a
//	                       slot's master's) read-only commands go: master
//	                       (the default), prefer_replica (a healthy
//	                       replica, else the master) or replica (a healthy
//	                       replica, else an error).
//	replica_max_lag: B     a replica whose replication offset is more than
//	                       B bytes behind its master's takes no reads; 0
//	                       or absent: no bound. Only with a read_from other
//	                       than master.

// ReadFrom says where a group's read-only commands go.
type ReadFrom string

// The values of read_from.
const (
	ReadFromMaster        ReadFrom = "master"
	ReadFromPreferReplica ReadFrom = "prefer_replica"
	ReadFromReplica       ReadFrom = "replica"
)

// setReadFrom applies read_from or replica_max_lag; done is false for any
// other key.
func (b *poolBuilder) setReadFrom(key, value string) (done bool, err error) {
	switch key {
	case "read_from", "replica_max_lag":
	default:
		return false, nil
	}
	if b.seen[key] {
		return true, b.errorf(key, "duplicate key")
	}
	b.seen[key] = true
	switch key {
	case "read_from":
		switch r := ReadFrom(value); r {
		case ReadFromMaster, ReadFromPreferReplica, ReadFromReplica:
			b.pc.ReadFrom = r
		default:
			return true, b.errorf(key, "%q: want master, prefer_replica or replica", value)
		}
	case "replica_max_lag":
		n, perr := strconv.ParseInt(value, 10, 64)
		if perr != nil || n < 0 || value[0] == '+' {
			return true, b.errorf(key, "%q %v", value, errNotNumber)
		}
		b.pc.ReplicaMaxLag = n
	}
	return true, nil
}

// finishReadFrom checks read_from and replica_max_lag against the rest of
// the pool. A Redis Cluster's masters have replicas too (cluster.go).
func (b *poolBuilder) finishReadFrom(pc *Pool) error {
	if !pc.HasGroups() && !pc.IsCluster() {
		for _, k := range []string{"read_from", "replica_max_lag"} {
			if b.seen[k] {
				return b.errorf(k, "only allowed with sentinels or group_members")
			}
		}
		return nil
	}
	if b.seen["replica_max_lag"] && !pc.ReadsReplicas() {
		return b.errorf("replica_max_lag", "only allowed with read_from prefer_replica or replica")
	}
	return nil
}

// ReadsReplicas reports whether the pool sends read-only commands to its
// groups' replicas (read_from prefer_replica or replica).
func (p *Pool) ReadsReplicas() bool {
	return p.ReadFrom == ReadFromPreferReplica || p.ReadFrom == ReadFromReplica
}
