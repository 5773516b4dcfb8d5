#!/usr/bin/env bash
# blocked.sh: GET/SET throughput of shardproxy with and without clients
# blocked in BLPOP beside the load, measured in one run.
#
#   bash bench/blocked.sh          (`make bench` runs it after compare.sh)
#
# It starts 3 redis-servers and shardproxy (a pool of the three, with
# blocking_connections high enough for every blocked client to get a server
# connection of its own) on free loopback ports, then, for each pipeline
# depth, runs bench/loadgen (80% GET / 20% SET over zipf keys) once alone and
# once with --blocked N: N more connections each sit in BLPOP on a key of
# their own that nothing pushes to, for the whole run. While they do, the
# script checks that the servers count N blocked clients, that is, that each
# BLPOP holds a server connection of its own. It prints every command before
# it runs and ends with a markdown table (paste it into bench/RESULTS.md).
# Only loopback addresses are used. Everything it started is stopped on exit.
#
# Environment (defaults in brackets):
#   BENCH_BLOCKED     blocked clients [1000]
#   BENCH_DURATION    duration of each loadgen run [5s]
#   BENCH_CLIENTS     loadgen connections sending GET/SET [50]
#   BENCH_PIPELINE    pipeline depth of the pipelined rows [16]
#   BENCH_KEYS        key space [100000]
#   BENCH_VALUE_SIZE  SET value size in bytes [64]
#   BENCH_ROUNDS      run every measurement this many times, swapping the
#                     order of the two runs every round, and report medians [3]
#   SHARDPROXY_BIN    use this shardproxy binary instead of building ./cmd/shardproxy
#   BENCH_KEEP=1      keep the temporary directory with configs and logs
#
# The defaults take about 2 minutes on 2 cores.
set -euo pipefail

BLOCKED=${BENCH_BLOCKED:-1000}
DURATION=${BENCH_DURATION:-5s}
CLIENTS=${BENCH_CLIENTS:-50}
PIPELINE=${BENCH_PIPELINE:-16}
KEYS=${BENCH_KEYS:-100000}
VALUE_SIZE=${BENCH_VALUE_SIZE:-64}
ROUNDS=${BENCH_ROUNDS:-3}
KEEP=${BENCH_KEEP:-0}

cd "$(dirname "${BASH_SOURCE[0]}")/.."

BENCH_SCRIPT=blocked.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

need_counts "$BLOCKED" "$CLIENTS" "$PIPELINE" "$KEYS" "$VALUE_SIZE" "$ROUNDS"

need_tools go redis-server redis-cli

# Every blocked client is a client socket and a server socket of the proxy,
# and a socket of loadgen.
need_fds "$((2 * BLOCKED + 2 * CLIENTS + 100))"

bench_tmp shardproxy-blocked

print_machine
echo "params:   BENCH_BLOCKED=$BLOCKED BENCH_DURATION=$DURATION BENCH_CLIENTS=$CLIENTS" \
	"BENCH_PIPELINE=$PIPELINE BENCH_KEYS=$KEYS BENCH_VALUE_SIZE=$VALUE_SIZE BENCH_ROUNDS=$ROUNDS"

echo
echo "== build"
run go build -o "$tmp/loadgen" ./bench/loadgen
shardproxy_binary

echo
echo "== servers"
start_redis_servers
free_port
sp_port=$free
free_port
sp_stats=$free
# blocking_connections bounds blocked clients per server: BENCH_BLOCKED
# lets every blocked client have its connection however the keys fall.
write_pool_conf "$sp_port" "$tmp/shardproxy.yml" "  blocking_connections: $BLOCKED"
start shardproxy "$sp_port" "$tmp/shardproxy.log" \
	"$shardproxy_bin" -c "$tmp/shardproxy.yml" -s "$sp_stats" -a 127.0.0.1
sp_pid=${pids[-1]}
echo "pool: $tmp/shardproxy.yml"
cat "$tmp/shardproxy.yml"

# blocked_on_servers prints the sum of the servers' blocked_clients.
blocked_on_servers() {
	local p sum=0 n
	for p in "${redis_ports[@]}"; do
		n=$(redis-cli -h 127.0.0.1 -p "$p" info clients | tr -d '\r' | sed -n 's/^blocked_clients://p')
		sum=$((sum + ${n:-0}))
	done
	echo "$sum"
}

# proxy_ticks prints the CPU time shardproxy has used, in clock ticks.
proxy_ticks() {
	sed 's/.*) //' "/proc/$sp_pid/stat" | awk '{ print $12 + $13 }'
}
hz=$(getconf CLK_TCK 2>/dev/null || echo 100)

# rps[depth/mode], p99[depth/mode], cpu[depth/mode]: each round's results,
# space-separated.
declare -A rps p99 cpu
failures=0

# measure DEPTH MODE runs loadgen at pipeline DEPTH, alone (MODE idle) or
# beside BENCH_BLOCKED blocked clients (MODE blocked).
measure() {
	local depth=$1 mode=$2 out=$tmp/lg-$1-$2.json nblocked=0 before after lg seen=0 i
	[ "$mode" = blocked ] && nblocked=$BLOCKED
	echo
	echo "-- pipeline $depth, $nblocked blocked clients"
	before=$(proxy_ticks)
	show "$tmp/loadgen" --addr "127.0.0.1:$sp_port" --connections "$CLIENTS" --pipeline "$depth" \
		--keys "$KEYS" --dist zipf --read-ratio 0.8 --value-size "$VALUE_SIZE" --duration "$DURATION" \
		--timeout 10s --warmup --blocked "$nblocked" --json
	"$tmp/loadgen" --addr "127.0.0.1:$sp_port" --connections "$CLIENTS" --pipeline "$depth" \
		--keys "$KEYS" --dist zipf --read-ratio 0.8 --value-size "$VALUE_SIZE" --duration "$DURATION" \
		--timeout 10s --warmup --blocked "$nblocked" --json >"$out" 2>"$out.progress" &
	lg=$!
	pids+=("$lg")
	if [ "$nblocked" -gt 0 ]; then
		for i in $(seq 300); do
			seen=$(blocked_on_servers)
			[ "$seen" -ge "$nblocked" ] && break
			kill -0 "$lg" 2>/dev/null || break
			sleep 0.1
		done
		echo "servers' blocked_clients: $seen; shardproxy $(grep VmRSS "/proc/$sp_pid/status" | tr -s ' \t' ' ')"
	fi
	if ! wait "$lg"; then
		cat "$out.progress" "$out" >&2
		echo "!! loadgen failed"
		failures=$((failures + 1))
		record rps "$depth/$mode" error
		return
	fi
	after=$(proxy_ticks)
	cat "$out"
	if [ "$nblocked" -gt 0 ] && [ "$seen" -ne "$nblocked" ]; then
		echo "!! the servers had $seen blocked clients, not $nblocked"
		failures=$((failures + 1))
		record rps "$depth/$mode" error
		return
	fi
	local req
	req=$(sed -n 's/.*"requests":\([0-9]*\).*/\1/p' "$out")
	record rps "$depth/$mode" "$(sed -n 's/.*"rps":\([0-9]*\).*/\1/p' "$out")"
	record p99 "$depth/$mode" "$(sed -n 's/.*"p99_us":\([0-9]*\).*/\1/p' "$out")"
	# The warmup's SETs are requests the proxy served too.
	record cpu "$depth/$mode" "$(awk -v t="$((after - before))" -v hz="$hz" -v n="$((req + KEYS))" \
		'BEGIN { if (n > 0) printf "%.2f", t * 1e6 / hz / n; else print "error" }')"
}

echo
echo "== benchmarks"
for round in $(seq "$ROUNDS"); do
	modes=(idle blocked)
	[ $((round % 2)) = 0 ] && modes=(blocked idle)
	[ "$ROUNDS" -gt 1 ] && echo && echo "== round $round of $ROUNDS (order: ${modes[*]})"
	for depth in 1 "$PIPELINE"; do
		for mode in "${modes[@]}"; do
			measure "$depth" "$mode"
		done
	done
done


echo
echo "== results ($(nproc) CPUs shared by loadgen, shardproxy and the servers; median of $ROUNDS round(s);" \
	"load avg at end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown))"
echo
echo "| workload | req/s alone | req/s beside $BLOCKED blocked | blocked/alone | p99 us alone | p99 us beside $BLOCKED blocked | proxy CPU us/request alone | proxy CPU us/request beside $BLOCKED blocked |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for depth in 1 "$PIPELINE"; do
	echo "| loadgen 80/20 GET/SET zipf, $CLIENTS conns, pipeline $depth" \
		"| $(median "${rps[$depth/idle]:-}") | $(median "${rps[$depth/blocked]:-}")" \
		"| $(median_ratio "${rps[$depth/blocked]:-}" "${rps[$depth/idle]:-}")" \
		"| $(median "${p99[$depth/idle]:-}") | $(median "${p99[$depth/blocked]:-}")" \
		"| $(median "${cpu[$depth/idle]:-}") | $(median "${cpu[$depth/blocked]:-}") |"
done
echo
echo "total time: ${SECONDS}s"
if [ "$failures" -gt 0 ]; then
	die "$failures measurement(s) failed; see the output above"
fi
