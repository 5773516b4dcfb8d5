package proxy

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/shardproxy/shardproxy/hashring"
	"github.com/shardproxy/shardproxy/proxy/placement"
	"github.com/shardproxy/shardproxy/proxy/resp"
)

// A cluster-aware client (go-redis' ClusterClient, rueidis, ioredis'
// Cluster, Jedis, redis-cli -c) asks CLUSTER SLOTS, SHARDS or NODES where
// the slots are before it sends anything. The proxy answers as a healthy
// Redis Cluster of one node, itself, that owns all 16384 slots: the
// client then sends every command to the proxy, which routes it as any
// other, and never sees MOVED or ASK. The replies are shaped as Redis 7.0
// shapes them, in the client's protocol.
//
// The node is the pool's listener. Its IP is the listen host when that is
// an IP address; when it is 0.0.0.0, :: or a host name, it is the address
// the client connected to, the local end of its connection, which the
// client can dial again (a host name is reported as the node's hostname as
// well, as Redis does with cluster-announce-hostname). Its port is the
// listen port. Its ID (clusterNodeID) depends only on the pool's name and
// listen directive, so every replica of the proxy started from one config
// gives the same answer. It has no cluster bus: the bus port in CLUSTER
// NODES is 0.

// clusterSlots is the number of Redis Cluster hash slots.
const clusterSlots = hashring.SlotCount

// The epochs of the one-node cluster: its first and only configuration.
const (
	clusterCurrentEpoch = 1
	clusterConfigEpoch  = 1
)

// clusterNode is the node the proxy reports to one client.
type clusterNode struct {
	id       string // 40 hex digits
	ip       string // without brackets, as Redis writes it
	port     int
	hostname string // "" when the listen host is an address
}

// clusterNodeID is the pool's node ID: the SHA-1 of its name and listen
// directive, in hex, 40 characters as Redis' node names are.
func clusterNodeID(pool, listen string) string {
	sum := sha1.Sum([]byte(pool + "\x00" + listen))
	return hex.EncodeToString(sum[:])
}

// clusterNode is the node for this client. ok is false for a pool that
// listens on a unix socket, which a cluster client cannot dial.
func (c *client) clusterNode() (n clusterNode, ok bool) {
	cfg := c.pool.cfg
	if cfg.ListenNetwork == "unix" {
		return n, false
	}
	n.id = clusterNodeID(cfg.Name, cfg.Listen)
	host, portText, err := net.SplitHostPort(cfg.ListenAddr)
	if err != nil {
		return n, false
	}
	if n.port, err = strconv.Atoi(portText); err != nil {
		return n, false
	}
	listenIP, err := netip.ParseAddr(host)
	if err == nil && !listenIP.IsUnspecified() {
		n.ip = listenIP.Unmap().String()
		return n, true
	}
	if err != nil && host != "" {
		n.hostname = host
	}
	if tcp, isTCP := c.conn.LocalAddr().(*net.TCPAddr); isTCP {
		n.ip = tcp.AddrPort().Addr().Unmap().WithZone("").String()
	}
	return n, true
}

// cluster answers the CLUSTER subcommands the command table makes local.
func (c *client) cluster(name string, cmd *resp.Command) {
	args := cmd.Args
	switch name {
	case "cluster|info":
		c.reply(c.appendText(nil, clusterInfo))
	case "cluster|myid":
		c.reply(resp.AppendBulkString(nil, clusterNodeID(c.pool.cfg.Name, c.pool.cfg.Listen)))
	case "cluster|keyslot":
		c.reply(resp.AppendInt(nil, int64(hashring.KeySlot(args[2]))))
	case "cluster|links":
		c.reply(resp.AppendArray(nil, 0)) // a node alone has no links to others
	case "cluster|countkeysinslot", "cluster|getkeysinslot":
		slots, ok := c.layout.Placement.(*placement.Slots)
		if !ok {
			c.replyError(refusal(name, whyNoSlots))
			return
		}
		// In a Redis Cluster pool the master that serves the slot
		// answers; a slot that is not a number in range goes to any
		// master, which answers Redis' own error for it.
		idx := min(0, len(c.layout.servers)-1) // -1 before the first map
		if slot, err := strconv.Atoi(string(args[2])); err == nil && slot >= 0 && slot < clusterSlots {
			idx = slots.Owner(uint16(slot))
		}
		c.route(idx, cmd)
	case "cluster|slots", "cluster|shards", "cluster|nodes":
		n, ok := c.clusterNode()
		if !ok {
			c.replyError(refusal(name, whyUnixCluster))
			return
		}
		switch name {
		case "cluster|slots":
			c.reply(c.appendClusterSlots(nil, n))
		case "cluster|shards":
			c.reply(c.appendClusterShards(nil, n))
		default:
			c.reply(c.appendText(nil, n.nodesLine()))
		}
	}
}

// clusterInfo is CLUSTER INFO of a healthy cluster of one node, in Redis
// 7.0's fields; a node without peers has sent and received no bus
// messages.
var clusterInfo = fmt.Sprintf("cluster_state:ok\r\n"+
	"cluster_slots_assigned:%d\r\ncluster_slots_ok:%d\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\n"+
	"cluster_known_nodes:1\r\ncluster_size:1\r\n"+
	"cluster_current_epoch:%d\r\ncluster_my_epoch:%d\r\n"+
	"cluster_stats_messages_sent:0\r\ncluster_stats_messages_received:0\r\n"+
	"total_cluster_links_buffer_limit_exceeded:0\r\n",
	clusterSlots, clusterSlots, clusterCurrentEpoch, clusterConfigEpoch)

// appendClusterSlots appends CLUSTER SLOTS: one range of every slot,
// served by n and no replica. n is [ip, port, id, metadata], the metadata
// a map holding the hostname when there is one.
func (c *client) appendClusterSlots(dst []byte, n clusterNode) []byte {
	dst = resp.AppendArray(dst, 1)
	dst = resp.AppendArray(dst, 3)
	dst = resp.AppendInt(dst, 0)
	dst = resp.AppendInt(dst, clusterSlots-1)
	dst = resp.AppendArray(dst, 4)
	dst = resp.AppendBulkString(dst, n.ip)
	dst = resp.AppendInt(dst, int64(n.port))
	dst = resp.AppendBulkString(dst, n.id)
	if n.hostname == "" {
		return c.appendMap(dst, 0)
	}
	dst = c.appendMap(dst, 1)
	dst = resp.AppendBulkString(dst, "hostname")
	return resp.AppendBulkString(dst, n.hostname)
}

// appendClusterShards appends CLUSTER SHARDS: one shard of every slot,
// whose one node is n, a master, online.
func (c *client) appendClusterShards(dst []byte, n clusterNode) []byte {
	dst = resp.AppendArray(dst, 1)
	dst = c.appendMap(dst, 2)
	dst = resp.AppendBulkString(dst, "slots")
	dst = resp.AppendArray(dst, 2)
	dst = resp.AppendInt(dst, 0)
	dst = resp.AppendInt(dst, clusterSlots-1)
	dst = resp.AppendBulkString(dst, "nodes")
	dst = resp.AppendArray(dst, 1)
	fields := 7
	if n.hostname != "" {
		fields++
	}
	dst = c.appendMap(dst, fields)
	dst = resp.AppendBulkString(dst, "id")
	dst = resp.AppendBulkString(dst, n.id)
	dst = resp.AppendBulkString(dst, "port")
	dst = resp.AppendInt(dst, int64(n.port))
	dst = resp.AppendBulkString(dst, "ip")
	dst = resp.AppendBulkString(dst, n.ip)
	dst = resp.AppendBulkString(dst, "endpoint")
	dst = resp.AppendBulkString(dst, n.ip)
	if n.hostname != "" {
		dst = resp.AppendBulkString(dst, "hostname")
		dst = resp.AppendBulkString(dst, n.hostname)
	}
	dst = resp.AppendBulkString(dst, "role")
	dst = resp.AppendBulkString(dst, "master")
	dst = resp.AppendBulkString(dst, "replication-offset")
	dst = resp.AppendInt(dst, 0)
	dst = resp.AppendBulkString(dst, "health")
	return resp.AppendBulkString(dst, "online")
}

// nodesLine is n's line of CLUSTER NODES: id, ip:port@cport[,hostname],
// flags, master ("-"), ping sent, pong received, config epoch, link state
// and slots.
func (n clusterNode) nodesLine() string {
	addr := n.ip + ":" + strconv.Itoa(n.port) + "@0"
	if n.hostname != "" {
		addr += "," + n.hostname
	}
	return fmt.Sprintf("%s %s myself,master - 0 0 %d connected 0-%d\n", n.id, addr, clusterConfigEpoch, clusterSlots-1)
}
