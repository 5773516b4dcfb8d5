// Package config reads nutcracker.yml into a Config: pools, each with its
// listen address, its options under nutcracker's names, and its servers.
//
// It accepts what nutcracker 0.5.0 accepts and rejects what it rejects, so
// that a user's file works unchanged; a differential test runs nutcracker
// -t on a corpus (testdata/config) and on generated files. The few
// deliberate differences, and the keys that are shardproxy's own
// (redis_auth_file, redis_auth_env, the kubernetes_* keys,
// client_output_buffer_limit, sentinels with the sentinel_* keys and
// failover_hold, in sentinel.go, redis_cluster, in cluster.go, the tls_*
// and server_tls_* keys, in tls.go, and acl_file with the server_auth_*
// keys, in acl.go), are listed at the top of config.go.
//
// Parsing is strict and complete before anything is used: an unknown key,
// a duplicate, a value out of range or an address nutcracker would not
// take is an error naming the pool, the key and the value
// (pool "alpha": servers[2]: "10.0.0.1:6379:x": weight is not a number),
// and every check runs before the proxy uses any of the file. Addresses
// follow nutcracker's syntax ("host:port:weight [name]",
// "/path/to.sock:weight [name]", IPv6 hosts without brackets) and are
// checked, not resolved. Hash and distribution names are checked against
// hashring, TLS files are loaded with internal/tlsfiles, as the proxy
// loads them, an acl_file is parsed by proxy/acl, and files are read with
// internal/boundedfile: the only packages of the project this one imports.
//
// Start-up and every reload read the file with ReadFile: a regular file
// (or a symlink to one) of at most 4 MiB, so that a FIFO, a device or a
// runaway file costs an error, not a hang or the memory to hold it. A
// password from redis_auth_file is read the same way (at most 64 KiB), and
// one from redis_auth_env when the config is parsed; both are resolved
// into Pool.RedisAuth, so the rest of the proxy sees one password. TLS
// certificates, keys and CA files must load when the config is parsed,
// but only their paths are kept: the proxy reads them again as they change.
// An acl_file is read the same way as the config (at most 4 MiB) and
// parsed into Pool.Users, at start and at every reload, so that a file
// that does not parse rejects the config and the running users stay.
package config
