#!/usr/bin/env bash
# cluster.sh: throughput of shardproxy in front of a Redis Cluster, beside
# cluster-aware clients talking to the same cluster directly, in one run.
#
#   bash bench/cluster.sh          (`make bench` runs it after compare.sh)
#
# It starts a Redis Cluster of six redis-servers (three masters, a replica
# each, joined with redis-cli --cluster create) and shardproxy with a
# redis_cluster pool seeded with one node, on free loopback ports. Each
# workload then runs twice: through shardproxy with a plain client, and
# straight to the cluster with a cluster-aware client that knows which node
# serves each slot (bench/loadgen --cluster, that is go-redis' ClusterClient,
# and redis-benchmark --cluster). It prints every command before it runs and
# ends with a markdown table (paste it into bench/RESULTS.md). Only loopback
# addresses are used. Everything it started is stopped on exit.
#
# Environment (defaults in brackets):
#   BENCH_REQUESTS    requests per redis-benchmark test [100000]
#   BENCH_DURATION    duration of each loadgen run [5s]
#   BENCH_CLIENTS     redis-benchmark clients and loadgen connections [50]
#   BENCH_PIPELINE    pipeline depth of the pipelined rows [16]
#   BENCH_KEYS        key space of both tools [100000]
#   BENCH_VALUE_SIZE  SET value size in bytes [64]
#   BENCH_ROUNDS      run every measurement this many times, swapping the
#                     order of the two targets every round, and report medians [3]
#   SHARDPROXY_BIN    use this shardproxy binary instead of building ./cmd/shardproxy
#   BENCH_KEEP=1      keep the temporary directory with configs and logs
#
# The defaults take about 2 minutes on 2 cores.
set -euo pipefail

REQUESTS=${BENCH_REQUESTS:-100000}
DURATION=${BENCH_DURATION:-5s}
CLIENTS=${BENCH_CLIENTS:-50}
PIPELINE=${BENCH_PIPELINE:-16}
KEYS=${BENCH_KEYS:-100000}
VALUE_SIZE=${BENCH_VALUE_SIZE:-64}
ROUNDS=${BENCH_ROUNDS:-3}
KEEP=${BENCH_KEEP:-0}

cd "$(dirname "${BASH_SOURCE[0]}")/.."

BENCH_SCRIPT=cluster.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

need_counts "$REQUESTS" "$CLIENTS" "$PIPELINE" "$KEYS" "$VALUE_SIZE" "$ROUNDS"

need_tools go redis-server redis-cli redis-benchmark

# A cluster-aware client holds up to BENCH_CLIENTS connections to each of
# the three masters.
need_fds "$((8 * CLIENTS + 100))"

bench_tmp shardproxy-cluster

print_machine
echo "NOTE: the load generators, shardproxy and all 6 redis-servers share these $(nproc) CPUs."
echo "      The load generator's own CPU use caps every number; compare the ratios from one run."
echo "params:   BENCH_REQUESTS=$REQUESTS BENCH_DURATION=$DURATION BENCH_CLIENTS=$CLIENTS" \
	"BENCH_PIPELINE=$PIPELINE BENCH_KEYS=$KEYS BENCH_VALUE_SIZE=$VALUE_SIZE BENCH_ROUNDS=$ROUNDS"

echo
echo "== build"
run go build -o "$tmp/loadgen" ./bench/loadgen
shardproxy_binary

# free_node_port sets $free to a free port whose cluster bus port, 10000
# above it, is free too.
free_node_port() {
	local i
	for i in $(seq 100); do
		free_port
		if [ "$free" -lt 22000 ] && ! (exec 3<>"/dev/tcp/127.0.0.1/$((free + 10000))") 2>/dev/null; then
			used_ports+="$((free + 10000)) "
			return 0
		fi
	done
	die "found no free loopback port with a free cluster bus port"
}

echo
echo "== cluster"
nodes=()
for i in 1 2 3 4 5 6; do
	free_node_port
	nodes+=("127.0.0.1:$free")
	mkdir -p "$tmp/node$i"
	start "cluster node $i" "$free" "$tmp/node$i.log" \
		redis-server --port "$free" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp/node$i" \
		--cluster-enabled yes --cluster-config-file nodes.conf
done
run redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$tmp/create.log" ||
	{ cat "$tmp/create.log" >&2; die "redis-cli --cluster create failed"; }
seed=${nodes[0]}
seed_port=${seed##*:}

# cluster_ok waits until every node says cluster_state:ok.
cluster_ok() {
	local node i
	for node in "${nodes[@]}"; do
		for i in $(seq 300); do
			if redis-cli -h 127.0.0.1 -p "${node##*:}" cluster info | tr -d '\r' | grep -q '^cluster_state:ok$'; then
				continue 2
			fi
			sleep 0.1
		done
		die "$node does not say cluster_state:ok after 30s"
	done
}
cluster_ok
redis-cli -h 127.0.0.1 -p "$seed_port" cluster nodes | cut -d' ' -f2-4,9-

free_port
sp_port=$free
free_port
sp_stats=$free
cat >"$tmp/shardproxy.yml" <<EOF
bench:
  listen: 127.0.0.1:$sp_port
  redis: true
  redis_cluster: true
  servers:
   - $seed:1
EOF
start shardproxy "$sp_port" "$tmp/shardproxy.log" \
	"$shardproxy_bin" -c "$tmp/shardproxy.yml" -s "$sp_stats" -a 127.0.0.1
sp_pid=${pids[-1]}
echo "pool: $tmp/shardproxy.yml"
cat "$tmp/shardproxy.yml"

# Wait until shardproxy has the slot map: keys of every master are served.
ready=0
for i in $(seq 300); do
	if [ "$(redis-cli -h 127.0.0.1 -p "$sp_port" mset a 1 b 2 c 3 d 4 e 5 f 6 2>/dev/null)" = OK ]; then
		ready=1
		break
	fi
	sleep 0.1
done
[ "$ready" = 1 ] || die "shardproxy does not serve the cluster's slots after 30s"

# proxy_ticks prints the CPU time shardproxy has used, in clock ticks.
proxy_ticks() {
	sed 's/.*) //' "/proc/$sp_pid/stat" | awk '{ print $12 + $13 }'
}
hz=$(getconf CLK_TCK 2>/dev/null || echo 100)

# rps[workload/target] and cpu[workload]: each round's results,
# space-separated; label_of[workload] is its row title.
declare -A rps cpu label_of
workloads=()
failures=0
add_workload() {
	if [ -z "${label_of[$1]:-}" ]; then
		workloads+=("$1")
		label_of[$1]=$2
	fi
}

# redis_benchmark DEPTH TARGET runs redis-benchmark SET and GET at pipeline
# DEPTH through shardproxy (TARGET shardproxy) or with --cluster straight
# to the cluster (TARGET direct).
redis_benchmark() {
	local depth=$1 target=$2 out=$tmp/rb-$1-$2.csv kind v before after
	local where=(-p "$sp_port")
	[ "$target" = direct ] && where=(-p "$seed_port" --cluster)
	add_workload "rb-set-$depth" "redis-benchmark SET, $CLIENTS clients, pipeline $depth"
	add_workload "rb-get-$depth" "redis-benchmark GET, $CLIENTS clients, pipeline $depth"
	echo
	echo "-- $target: redis-benchmark, pipeline $depth"
	before=$(proxy_ticks)
	if ! run_to "$out" redis-benchmark -h 127.0.0.1 "${where[@]}" -c "$CLIENTS" -n "$REQUESTS" \
		-r "$KEYS" -d "$VALUE_SIZE" -P "$depth" -t set,get --csv; then
		echo "!! redis-benchmark against $target failed"
	fi
	after=$(proxy_ticks)
	if [ "$target" = shardproxy ]; then
		record cpu "rb-$depth" "$(awk -v t="$((after - before))" -v hz="$hz" -v n="$((2 * REQUESTS))" \
			'BEGIN { printf "%.2f", t * 1e6 / hz / n }')"
	fi
	for kind in SET GET; do
		v=$(awk -F'"' -v t="$kind" '$2 == t {print $4}' "$out")
		if [ -z "$v" ]; then
			v=error
			failures=$((failures + 1))
		fi
		record rps "rb-${kind,,}-$depth/$target" "$v"
	done
}

# loadgen DEPTH TARGET runs bench/loadgen, 80% GET / 20% SET over zipf keys,
# at pipeline DEPTH, a plain client through shardproxy or, for TARGET
# direct, a cluster-aware one (--cluster) seeded with one node.
loadgen() {
	local depth=$1 target=$2 out=$tmp/lg-$1-$2.json v
	local where=(--addr "127.0.0.1:$sp_port")
	[ "$target" = direct ] && where=(--addr "$seed" --cluster)
	add_workload "lg-$depth" "loadgen 80/20 GET/SET zipf, $CLIENTS conns, pipeline $depth"
	echo
	echo "-- $target: loadgen, pipeline $depth"
	if ! run_to "$out" "$tmp/loadgen" "${where[@]}" --connections "$CLIENTS" --pipeline "$depth" \
		--keys "$KEYS" --dist zipf --read-ratio 0.8 --value-size "$VALUE_SIZE" --duration "$DURATION" \
		--timeout 10s --warmup --json; then
		echo "!! loadgen against $target failed"
		record rps "lg-$depth/$target" error
		failures=$((failures + 1))
		return
	fi
	v=$(sed -n 's/.*"rps":\([0-9]*\).*/\1/p' "$out")
	record rps "lg-$depth/$target" "${v:-error}"
}

echo
echo "== benchmarks (shardproxy = a plain client through shardproxy; direct = a cluster-aware client to the nodes)"
for round in $(seq "$ROUNDS"); do
	order=(shardproxy direct)
	[ $((round % 2)) = 0 ] && order=(direct shardproxy)
	[ "$ROUNDS" -gt 1 ] && echo && echo "== round $round of $ROUNDS (order: ${order[*]})"
	for target in "${order[@]}"; do
		redis_benchmark 1 "$target"
		redis_benchmark "$PIPELINE" "$target"
		loadgen 1 "$target"
		loadgen "$PIPELINE" "$target"
	done
done


echo
echo "== results ($(nproc) CPUs shared by the load generators, shardproxy and the servers;" \
	"median of $ROUNDS round(s); load avg at end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown))"
echo
echo "| workload | shardproxy req/s | direct cluster client req/s | shardproxy/direct |"
echo "|---|---:|---:|---:|"
for id in "${workloads[@]}"; do
	echo "| ${label_of[$id]} | $(median "${rps[$id/shardproxy]:-}") | $(median "${rps[$id/direct]:-}")" \
		"| $(median_ratio "${rps[$id/shardproxy]:-}" "${rps[$id/direct]:-}") |"
done
echo
echo "shardproxy's CPU time per request over each redis-benchmark run (SET and GET), in"
echo "microseconds (/proc/<pid>/stat user+system; a tick is $((1000000 / hz)) us):"
echo
echo "| workload | shardproxy CPU us/request |"
echo "|---|---:|"
for depth in 1 "$PIPELINE"; do
	echo "| redis-benchmark SET+GET, $CLIENTS clients, pipeline $depth | $(median "${cpu[rb-$depth]:-}") |"
done
echo
echo "total time: ${SECONDS}s"
if [ "$failures" -gt 0 ]; then
	die "$failures measurement(s) failed; see the output above"
fi
