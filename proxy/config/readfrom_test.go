package config

import "testing"

// read_from and replica_max_lag: what they parse to, and what they refuse.
func TestConfigReadFrom(t *testing.T) {
	const head = "alpha:\n  listen: 127.0.0.1:22121\n  redis: true\n"
	const servers = "  servers:\n    - 127.0.0.1:6379:1 shard1\n"
	const sentinels = "  sentinels:\n    - 127.0.0.1:26379\n"
	for _, tc := range []struct {
		name, text string
		from       ReadFrom
		lag        int64
		replicas   bool
	}{
		{"absent", head + sentinels + servers, "", 0, false},
		{"master", head + sentinels + "  read_from: master\n" + servers, ReadFromMaster, 0, false},
		{"prefer", head + sentinels + "  read_from: prefer_replica\n" + servers, ReadFromPreferReplica, 0, true},
		{"replica with lag", head + sentinels + "  read_from: replica\n  replica_max_lag: 1048576\n" + servers, ReadFromReplica, 1 << 20, true},
		{"zero lag", head + sentinels + "  read_from: prefer_replica\n  replica_max_lag: 0\n" + servers, ReadFromPreferReplica, 0, true},
		{"sentinel_service", head + "  sentinel_service: sentinel\n  read_from: prefer_replica\n" + servers, ReadFromPreferReplica, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.text))
			if err != nil {
				t.Fatal(err)
			}
			p := cfg.Pools[0]
			if p.ReadFrom != tc.from || p.ReplicaMaxLag != tc.lag || p.ReadsReplicas() != tc.replicas {
				t.Errorf("Parse: read_from %q, replica_max_lag %d, ReadsReplicas %v; want %q, %d, %v",
					p.ReadFrom, p.ReplicaMaxLag, p.ReadsReplicas(), tc.from, tc.lag, tc.replicas)
			}
		})
	}
	for _, tc := range []struct{ name, text, want string }{
		{"without sentinels", head + "  read_from: prefer_replica\n" + servers,
			`pool "alpha": read_from: only allowed with sentinels or group_members`},
		{"lag without sentinels", head + "  replica_max_lag: 10\n" + servers,
			`pool "alpha": replica_max_lag: only allowed with sentinels or group_members`},
		{"lag with master", head + sentinels + "  read_from: master\n  replica_max_lag: 10\n" + servers,
			`pool "alpha": replica_max_lag: only allowed with read_from prefer_replica or replica`},
		{"lag alone", head + sentinels + "  replica_max_lag: 10\n" + servers,
			`pool "alpha": replica_max_lag: only allowed with read_from prefer_replica or replica`},
		{"bad value", head + sentinels + "  read_from: slave\n" + servers,
			`pool "alpha": read_from: "slave": want master, prefer_replica or replica`},
		{"negative lag", head + sentinels + "  read_from: replica\n  replica_max_lag: -1\n" + servers,
			`pool "alpha": replica_max_lag: "-1" is not a number`},
		{"twice", head + sentinels + "  read_from: replica\n  read_from: master\n" + servers,
			`pool "alpha": read_from: duplicate key`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.text))
			if err == nil || err.Error() != tc.want {
				t.Errorf("Parse: err = %v, want %q", err, tc.want)
			}
		})
	}
}
