#!/usr/bin/env bash
# tls.sh: throughput and CPU per request of shardproxy with TLS clients,
# beside shardproxy and nutcracker (which has no TLS) with plain clients,
# measured in one run over the same three redis-server backends.
#
#   bash bench/tls.sh          (`make bench` runs it after cluster.sh)
#
# It makes a test CA and a certificate for 127.0.0.1 with openssl, starts 3
# redis-servers, nutcracker and two shardproxy processes (one with
# tls_cert_file and tls_key_file, one without, the same pool otherwise) on
# free loopback ports, and runs redis-benchmark SET and GET at pipeline 1
# and BENCH_PIPELINE against each, `--tls --cacert` against the TLS one.
# Each proxy's CPU time per request is read from /proc/<pid>/stat. It
# prints every command before it runs and ends with a markdown table
# (paste it into bench/RESULTS.md). Only loopback addresses are used.
# Everything it started is stopped on exit.
#
# Environment (defaults in brackets):
#   BENCH_REQUESTS    requests per redis-benchmark test [100000]
#   BENCH_CLIENTS     redis-benchmark clients [50]
#   BENCH_PIPELINE    pipeline depth of the pipelined rows [16]
#   BENCH_KEYS        key space [100000]
#   BENCH_VALUE_SIZE  SET value size in bytes [64]
#   BENCH_ROUNDS      run every measurement this many times, reversing the
#                     order of the targets every round, and report medians [3]
#   SHARDPROXY_BIN    use this shardproxy binary instead of building ./cmd/shardproxy
#   BENCH_KEEP=1      keep the temporary directory with configs and logs
#
# The defaults take about 2 minutes on 2 cores.
set -euo pipefail

REQUESTS=${BENCH_REQUESTS:-100000}
CLIENTS=${BENCH_CLIENTS:-50}
PIPELINE=${BENCH_PIPELINE:-16}
KEYS=${BENCH_KEYS:-100000}
VALUE_SIZE=${BENCH_VALUE_SIZE:-64}
ROUNDS=${BENCH_ROUNDS:-3}
KEEP=${BENCH_KEEP:-0}

cd "$(dirname "${BASH_SOURCE[0]}")/.."

BENCH_SCRIPT=tls.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

need_counts "$REQUESTS" "$CLIENTS" "$PIPELINE" "$KEYS" "$VALUE_SIZE" "$ROUNDS"
need_tools go redis-server redis-cli redis-benchmark nutcracker openssl

bench_tmp shardproxy-tls

print_machine nutcracker
echo "params:   BENCH_REQUESTS=$REQUESTS BENCH_CLIENTS=$CLIENTS BENCH_PIPELINE=$PIPELINE" \
	"BENCH_KEYS=$KEYS BENCH_VALUE_SIZE=$VALUE_SIZE BENCH_ROUNDS=$ROUNDS"

echo
echo "== build"
shardproxy_binary

echo
echo "== certificates"
run openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
	-subj /CN=bench-ca -keyout "$tmp/ca.key" -out "$tmp/ca.crt" 2>/dev/null
run openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
	-subj /CN=shardproxy -keyout "$tmp/tls.key" -out "$tmp/tls.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$tmp/san.ext"
run openssl x509 -req -in "$tmp/tls.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" -CAcreateserial \
	-days 1 -extfile "$tmp/san.ext" -out "$tmp/tls.crt" 2>/dev/null

echo
echo "== servers"
start_redis_servers

declare -A port pid_of
start_pool_proxy nutcracker nutcracker

start_pool_proxy shardproxy "$shardproxy_bin"

# The TLS one cannot be pinged in plain text: wait for redis-cli --tls.
free_port
port[shardproxy-tls]=$free
free_port
write_pool_conf "${port[shardproxy-tls]}" "$tmp/shardproxy-tls.yml" \
	"  tls_cert_file: $tmp/tls.crt
  tls_key_file: $tmp/tls.key"
show "$shardproxy_bin" -c "$tmp/shardproxy-tls.yml" -s "$free" -a 127.0.0.1
"$shardproxy_bin" -c "$tmp/shardproxy-tls.yml" -s "$free" -a 127.0.0.1 >>"$tmp/shardproxy-tls.log" 2>&1 &
pids+=("$!")
pid_of[shardproxy-tls]=$!
for i in $(seq 100); do
	[ "$(redis-cli --tls --cacert "$tmp/ca.crt" -h 127.0.0.1 -p "${port[shardproxy-tls]}" ping 2>/dev/null)" = PONG ] && break
	kill -0 "${pid_of[shardproxy-tls]}" 2>/dev/null || { tail -n 20 "$tmp/shardproxy-tls.log" >&2; die "shardproxy-tls exited"; }
	[ "$i" = 100 ] && die "shardproxy-tls does not answer PING over TLS after 10s"
	sleep 0.1
done
echo "pool: $tmp/shardproxy-tls.yml"
cat "$tmp/shardproxy-tls.yml"

# proc_ticks TARGET prints the CPU time TARGET's process has used, in clock
# ticks.
proc_ticks() {
	sed 's/.*) //' "/proc/${pid_of[$1]}/stat" | awk '{ print $12 + $13 }'
}
hz=$(getconf CLK_TCK 2>/dev/null || echo 100)

# rps[kind-depth/target], cpu[depth/target]: each round's results.
declare -A rps cpu
failures=0

# measure TARGET DEPTH runs redis-benchmark SET and GET against TARGET.
measure() {
	local target=$1 depth=$2 out=$tmp/rb-$2-$1.csv before after kind v tls=()
	[ "$target" = shardproxy-tls ] && tls=(--tls --cacert "$tmp/ca.crt")
	echo
	echo "-- $target: redis-benchmark, pipeline $depth"
	before=$(proc_ticks "$target")
	if ! run_to "$out" redis-benchmark "${tls[@]}" -h 127.0.0.1 -p "${port[$target]}" -c "$CLIENTS" \
		-n "$REQUESTS" -r "$KEYS" -d "$VALUE_SIZE" -P "$depth" -t set,get --csv; then
		echo "!! redis-benchmark against $target failed"
	fi
	after=$(proc_ticks "$target")
	record cpu "$depth/$target" "$(awk -v t="$((after - before))" -v hz="$hz" -v n="$((2 * REQUESTS))" \
		'BEGIN { printf "%.2f", t * 1e6 / hz / n }')"
	for kind in SET GET; do
		v=$(awk -F'"' -v t="$kind" '$2 == t {print $4}' "$out")
		if [ -z "$v" ]; then
			v=error
			failures=$((failures + 1))
		fi
		record rps "${kind,,}-$depth/$target" "$v"
	done
}

echo
echo "== benchmarks"
targets=(shardproxy-tls shardproxy nutcracker)
for round in $(seq "$ROUNDS"); do
	order=("${targets[@]}")
	[ $((round % 2)) = 0 ] && order=(nutcracker shardproxy shardproxy-tls)
	[ "$ROUNDS" -gt 1 ] && echo && echo "== round $round of $ROUNDS (order: ${order[*]})"
	for depth in 1 "$PIPELINE"; do
		for target in "${order[@]}"; do
			measure "$target" "$depth"
		done
	done
done

echo
echo "== results ($(nproc) CPUs shared by redis-benchmark, the proxies and the servers; median of $ROUNDS round(s);" \
	"load avg at end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown))"
echo
echo "| workload | shardproxy TLS req/s | shardproxy req/s | nutcracker req/s | TLS/plain | TLS/nutcracker |"
echo "|---|---:|---:|---:|---:|---:|"
for depth in 1 "$PIPELINE"; do
	for kind in set get; do
		w=$kind-$depth
		echo "| redis-benchmark ${kind^^}, $CLIENTS clients, pipeline $depth" \
			"| $(median "${rps[$w/shardproxy-tls]:-}") | $(median "${rps[$w/shardproxy]:-}") | $(median "${rps[$w/nutcracker]:-}")" \
			"| $(median_ratio "${rps[$w/shardproxy-tls]:-}" "${rps[$w/shardproxy]:-}")" \
			"| $(median_ratio "${rps[$w/shardproxy-tls]:-}" "${rps[$w/nutcracker]:-}") |"
	done
done
echo
echo "| CPU us/request, SET+GET | shardproxy TLS | shardproxy | nutcracker |"
echo "|---|---:|---:|---:|"
for depth in 1 "$PIPELINE"; do
	echo "| pipeline $depth | $(median "${cpu[$depth/shardproxy-tls]:-}") | $(median "${cpu[$depth/shardproxy]:-}")" \
		"| $(median "${cpu[$depth/nutcracker]:-}") |"
done
echo
echo "total time: ${SECONDS}s"
if [ "$failures" -gt 0 ]; then
	die "$failures measurement(s) failed; see the output above"
fi
