package config

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// The key of a pool whose servers are a Redis Cluster (ours; see
// Pool.RedisCluster):
//
//	redis_cluster: B       true: the servers are seed nodes of one Redis
//	                       Cluster, from which shardproxy learns its nodes
//	                       and which of them serves each of the 16384
//	                       slots; a key goes to the node that serves its
//	                       CRC16 slot. A seed is "host:port[:weight] [name]";
//	                       the weight and the name are checked as in any
//	                       pool and then ignored. The line is read from its
//	                       end, as nutcracker reads it, so an IPv6 seed keeps
//	                       its weight (::1:7000:1). Instead of servers, the
//	                       seeds may be the pods of kubernetes_service, on
//	                       kubernetes_port. false (the default): a pool of
//	                       nutcracker's kind.
//
// With redis_cluster: true the keys that decide where keys go are refused,
// since the cluster decides: hash, hash_tag, distribution, auto_eject_hosts:
// true, redis_db other than 0, sentinels and the sentinel_ keys with
// failover_hold, group_members and kubernetes_weight; so is a seed on a unix
// socket. server_failure_limit and server_retry_timeout are taken and, as in
// any pool without auto_eject_hosts, eject nothing. read_from and
// replica_max_lag are taken and mean what they do for groups, for the
// replicas of each slot's master. Every other key keeps its meaning.

// IsCluster reports whether the pool's servers are the seed nodes of a
// Redis Cluster (redis_cluster: true).
func (p *Pool) IsCluster() bool { return p.RedisCluster }

// setCluster applies redis_cluster; done is false for any other key.
func (b *poolBuilder) setCluster(key, value string) (done bool, err error) {
	if key != "redis_cluster" {
		return false, nil
	}
	if b.seen[key] {
		return true, b.errorf(key, "duplicate key")
	}
	b.seen[key] = true
	v, perr := parseBool(value)
	if perr != nil {
		return true, b.errorf(key, "%q %v", value, perr)
	}
	b.pc.RedisCluster = v
	return true, nil
}

// expectCluster notes, before any key of the pool is applied, whether the
// pool says redis_cluster: true, so that its server lines are read as seeds,
// which may leave out the weight. The key itself is checked when it is
// applied.
func (b *poolBuilder) expectCluster(settings []*yaml.Node) {
	for i := 0; i+1 < len(settings); i += 2 {
		if settings[i].Value == "redis_cluster" && settings[i+1].Kind == yaml.ScalarNode && settings[i+1].Value == "true" {
			b.clusterSeeds = true
		}
	}
}

// notWithCluster says why each key that decides placement has no place in
// a Redis Cluster pool.
var notWithCluster = []struct{ key, why string }{
	{"hash", "Redis Cluster places keys by CRC16 slot"},
	{"hash_tag", "Redis Cluster places keys by CRC16 slot, hashing the part of a key between '{' and '}' when it has one"},
	{"distribution", "Redis Cluster places keys by CRC16 slot"},
	{"kubernetes_weight", "Redis Cluster places keys by CRC16 slot, so a seed has no weight"},
}

// finishCluster refuses, in a Redis Cluster pool, the keys that decide
// where keys go, and seeds that are not host:port.
func (b *poolBuilder) finishCluster(pc *Pool) error {
	if !pc.RedisCluster {
		return nil
	}
	for _, k := range notWithCluster {
		if b.seen[k.key] {
			return b.errorf(k.key, "not with redis_cluster: %s", k.why)
		}
	}
	if pc.AutoEjectHosts {
		return b.errorf("auto_eject_hosts", "not with redis_cluster: Redis Cluster fails a node over by itself, so auto_eject_hosts must be false")
	}
	if pc.RedisDB != 0 {
		// Redis' own refusal, as SELECT with any other database answers.
		return b.errorf("redis_db", "not with redis_cluster: SELECT is not allowed in cluster mode (Redis Cluster has database 0 only)")
	}
	if len(pc.Sentinels) > 0 {
		return b.errorf("sentinels", "not with redis_cluster: Redis Cluster fails a node over by itself")
	}
	if pc.SentinelMasters != nil {
		return b.errorf("sentinel_masters", "not with redis_cluster: Redis Cluster fails a node over by itself")
	}
	for _, k := range []string{"sentinel_service", "sentinel_port", "sentinel_username", "sentinel_auth", "sentinel_auth_file", "sentinel_auth_env", "failover_hold"} {
		if b.seen[k] {
			return b.errorf(k, "not with redis_cluster: Redis Cluster fails a node over by itself")
		}
	}
	if b.groupLines != nil {
		return b.errorf("group_members", "not with redis_cluster: Redis Cluster says which node is a master")
	}
	for _, s := range b.servers {
		if s.Network != "tcp" {
			return fmt.Errorf("pool %q: servers[%d]: %q: a Redis Cluster seed needs a host:port: cluster nodes are reached over TCP", pc.Name, s.index, s.Addr)
		}
	}
	return nil
}
