// Package discovery says where server addresses and configuration come
// from. It owns no proxy state: it watches a source and hands each new input
// to a callback, and the proxy runs that input through its one reload
// pipeline (parse strictly, validate, build rings and pools, swap, drain).
//
//	endpointslices.go  EndpointSlices: the pods of one headless Service, by pod name
//	configfile.go      ConfigFile: nutcracker.yml, re-read when its directory changes
//	client.go          NewClient (kubeconfig or in-cluster), RouteKlog
//	sentinel.go        SentinelWatcher: each shard's master, as a majority of Sentinels says
//	rolegroups.go      RoleGroupWatcher: each group's master, from ROLE on every member
//	cluster.go         ClusterWatcher: a Redis Cluster's slot map, merged by epochs
//
// # EndpointSlices, not DNS
//
// nutcracker finds its servers through DNS, which serves a Redis StatefulSet
// badly. A pod's short name ("redis-0") does not resolve from another pod;
// only "redis-0.redis" and longer names under the headless Service do. A
// pod's DNS name exists only while the pod is ready, so a restarting shard
// cannot even be looked up. And nutcracker resolves a name when it connects
// and again only after a connection fails, so a pod that comes back on a new
// IP keeps being dialed at the old one until errors eject it. EndpointSlices
// come from the API server's watch instead: a new address, a pod turning
// not ready or starting to terminate reaches the proxy within about a
// second, with the pod's name, node and zone attached.
//
// # Matching by pod name
//
// A snapshot is keyed by pod name: the endpoint's targetRef.name when it
// points at a Pod, else its hostname. The config names each server after
// its pod (nutcracker hashes the server's name, not its address, when a
// name is given), so the ring is built from names. When a pod is
// rescheduled its name stays and only its address changes: the proxy points
// the server at the new address and the shard keeps its place on the ring,
// with none of its keys moving. One Service's endpoints may be spread over
// several EndpointSlice objects; they are merged, and a pod listed twice
// (while the controller moves it between slices) is taken from the usable
// entry, then the ready one, then the slice that changed last.
//
// # Readiness
//
// The EndpointSlice controller lists every pod that has an IP and has not
// finished, ready or not, and keeps listing it while it terminates. It sets
// serving from the pod's Ready condition, terminating from its deletion
// timestamp, and ready to serving && !terminating. So a not-ready pod stays
// in the snapshot with Ready false rather than vanishing, and the proxy can
// tell "not ready" (keep the ring, fail or hold that shard's requests) from
// "gone" (the pod was deleted): a shard that fails its readiness probe for a
// moment does not remap a share of the keyspace. Endpoint.Usable is the
// test for sending new requests: ready, serving and not terminating.
//
// The headless Service should set publishNotReadyAddresses. Without it a
// pod's DNS records disappear whenever it is not ready, which breaks
// whatever still dials pods by name (nutcracker during a migration, a Redis
// replica's replicaof, operators' tools), and older clusters' EndpointSlice
// controllers dropped a terminating pod from its slice outright, so "about
// to go" looked like "gone". With it set, the controller forces ready=true
// on every endpoint and the pod's real readiness is left in serving, which
// is why Usable reads serving too.
//
// # Health and start-up
//
// client-go's informer lists, then watches, and retries by itself with
// backoff when the API server is unreachable. Meanwhile the last snapshot
// keeps serving; Status reports Healthy false with the last error, and the
// change of state is logged once at Warn, not on every retry. Health comes
// back with the next successful List or Watch call, through which any new
// events flow; the calls are observed directly because client-go retries a
// refused Watch without calling its watch error handler. OnChange
// is first called when the initial list has been delivered in full (partial
// snapshots during the initial list would look like missing pods);
// WaitForSync bounds the wait at start-up, and /readyz should stay false
// until Status().Synced.
//
// # Why the directory is watched
//
// ConfigFile watches the config file's directory, never the file itself.
// The kubelet updates a ConfigMap volume by writing a new timestamped
// directory, pointing a ..data_tmp symlink at it and renaming that over
// ..data; the file the proxy opens is a symlink through ..data and its own
// inode never changes. Editors and config tools save by writing a temporary
// file and renaming it over the old one, and a watch on the old inode goes
// quiet after the first save. Any event in the directory starts a short
// debounce; then the file is read through its symlinks and the SHA-256 of
// its bytes compared with the last bytes seen, so a burst of events costs
// one read and OnChange runs only when the content really changed. Errors
// (the file missing for a moment, a read error, an inotify overflow) are
// logged and the watch goes on. Reload forces a read for SIGHUP. A ConfigMap
// mounted with subPath is never updated by the kubelet: mount the directory.
//
// # Sentinel: a majority of all Sentinels
//
// A shard run by Redis Sentinel moves when Sentinel fails its master over
// to a replica. SentinelWatcher follows each named master and reports where
// it is (SentinelMaster); OnChange gets every master's view whenever one
// changes. Proxies that ask the first Sentinel that answers (predixy,
// camellia) can be sent back to a dead or demoted master by one Sentinel
// that is cut off, restarted from an old config, or woke up from a long
// pause. The watcher believes an address only when more than half of all
// configured Sentinels name it, counting those that do not answer against
// it, so a minority that lost touch with the others never wins just by
// being the only ones heard. Among the Sentinels that agree it takes the
// highest config epoch, and once a view has an epoch an answer at a lower
// one is ignored: a Sentinel that slept through a failover names the old
// master at the old epoch until it hears the new configuration. Ignored
// answers, and answers naming another address than the majority, are
// counted in Stale. Without a majority the last agreed view stays, with
// Agree and Reachable saying how much support it has now. A master that
// Sentinels flag s_down or o_down keeps its address (Down counts them):
// writes to it fail anyway, and the next address comes from the failover.
//
// Sentinel gives a master its new config epoch when the promoted replica
// reports its new role, but keeps the old address until the failover ends,
// so the Sentinel leading a failover (flag failover_in_progress) names the
// old master at the new epoch for a moment; its epoch is not taken for that
// address.
//
// Each Sentinel gets two connections, named shardproxy-sentinel-watcher in
// CLIENT LIST. One asks SENTINEL MASTER and SENTINEL REPLICAS for every
// master each Poll, pipelined, with Timeout for the dial and the replies;
// a Sentinel that fails counts out of Reachable until it answers again and
// is retried with a backoff from 100 ms doubling to 5 s (or Poll). The
// other subscribes to +switch-master, +sdown, -sdown, +odown, -odown,
// +failover-end and +config-update-from, and an event about a followed
// master (or one of its replicas) polls every Sentinel about it at once, as
// does Poke, which the proxy calls when a master answers -READONLY or stops
// answering. Replicas lists the replicas the agreeing Sentinels report,
// less any one of them flags s_down, o_down or disconnected.
//
// With Password set, both connections AUTH first (with Username too, for a
// Sentinel ACL user). That is the Sentinel's own requirepass or ACL; the
// sentinel-user and sentinel-pass settings are what Sentinels use with each
// other, and auth-user and auth-pass what they use with masters and
// replicas. A refused AUTH, or a
// -NOAUTH from a Sentinel that needs a password, counts the Sentinel out
// and is logged once at Warn, as are a Sentinel becoming unreachable and a
// Sentinel's error for a master it does not monitor ("No such master with
// that name"); they are logged again only after they went away. A master
// removed and monitored again (SENTINEL REMOVE and MONITOR) starts over at
// epoch 0: once a view has a higher epoch, the watcher ignores that as
// stale until the watcher is restarted.
//
// On Kubernetes, MapAddr matches every address a Sentinel reports to the
// endpoints of the groups' Service (a pod hostname becomes the pod's IP;
// an IP must be an endpoint's): a master answer with an address no
// endpoint has is ignored as stale and warned of once per Sentinel until it
// changes, a replica with one is left out. Endpoint.Port gives a Sentinel
// Service's port by name, so the Sentinels themselves come from
// EndpointSlices too; SentinelSet.Set with a changed list replaces the
// watcher, and with the same list keeps it.
//
// # Groups without Sentinel: ROLE on every member
//
// A group that no Sentinel runs (a StatefulSet whose pod 0 was made
// master, or a master StatefulSet and a replica one, failed over by hand
// or by an operator running REPLICAOF) has no one to ask where its master
// is, and a pod's labels may say anything. RoleGroupWatcher asks ROLE of
// every member at once each Poll (and at once on Poke or SetGroups) and
// confirms a master only when the round agrees: it alone says master,
// every replica that answered names it (through MapAddr, which on
// Kubernetes turns a pod hostname into the pod's address), and a replica
// has its link connected to it, unless the group has one member or the
// master was confirmed before on a connection that has stayed open since.
// So a master whose replicas are briefly away keeps its writes, but an old
// master that restarted empty and claims master, two masters, a replica
// of a server outside the group or of another replica leave the group
// with no master (Reason says why) until a human or an operator made it
// whole: writes fail rather than go where they could be lost. A member
// that does not answer, or answers ROLE with an error (-NOAUTH, -NOPERM,
// or no RESP at all), is listed with Err and keeps no decision from being
// made by itself. Each member gets one connection, named
// shardproxy-role-watcher in CLIENT LIST, authenticated with the pool's
// data password; it is closed on any error and dialed again with the
// Sentinel watcher's backoff, and the break is what tells a restarted
// master. OnChange gets every group's view when anything but the
// replication offsets changed.
//
// # Redis Cluster: the slot map, merged by epochs
//
// A pool of Redis Cluster nodes is routed by hash slot, and the slots move
// when the cluster is resharded or fails a master over. ClusterWatcher
// keeps the map (ClusterMap: the master serving each of the 16384 slots,
// and every node with its ID, address, role and health). Each Poll, and at
// once on Poke (which the proxy calls when a node answers MOVED or ASK or
// stops answering) or SetSeeds, it asks up to Asks nodes at once, taking
// turns through the nodes it knows and the seeds: CLUSTER INFO, CLUSTER
// SHARDS (CLUSTER SLOTS from a Redis 6 node, which does not know SHARDS)
// and CLUSTER NODES, on one connection per node named
// shardproxy-cluster-watcher, authenticated with the pool's data password.
//
// Believing whichever node answered (Envoy takes one node's CLUSTER SLOTS
// as the whole map) lets a single node that slept through a failover, or
// sits in a minority partition, send the old master's slots back to it.
// The watcher merges the answers the way the cluster settles a conflict:
// answers at the highest current epoch decide; per slot the master with
// the highest config epoch wins, since the cluster gives a slot's new
// owner a higher one than the old owner's; answers from nodes at a lower
// current epoch only fill slots the others leave unowned; a master flagged
// fail owns nothing. When a refresh hears only nodes behind the map it
// already holds, the map stands and they only fill its gaps, unless they
// are a cluster made anew: none of the nodes they name is the map's, and
// they name at least half as many. ClusterWatcher's
// doc gives the rule in full. A slot map change is logged at Info with how
// many slots moved between which nodes; nodes that disagree are logged at
// Warn. MapAddr turns the address a node is announced at (or its hostname)
// into one to dial, as for Sentinel; a node it does not know serves no
// slots. OnChange gets the whole map when the slots or the nodes changed.
//
// Every watcher's Options take a TLS func: with it each connection runs
// the TLS handshake, with the config the func gives for the address (and
// for a group member its group), before AUTH; the proxy hands in its
// pool's server_tls_* settings. A ClusterWatcher with TLS dials nodes at
// the tls-port CLUSTER SHARDS gives (a node with tls-cluster gives both
// ports, whatever the connection).
package discovery
