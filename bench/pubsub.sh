#!/usr/bin/env bash
# pubsub.sh: PUBLISH fan-out to many subscribers through shardproxy and
# directly to the redis-servers, measured in one run, and GET/SET
# throughput through shardproxy with and without the fan-out beside it.
#
#   bash bench/pubsub.sh          (`make bench` runs it after blocked.sh)
#
# It starts 3 redis-servers and shardproxy (a pool of the three) on free
# loopback ports, then runs bench/fanout: BENCH_SUBSCRIBERS subscriber
# connections over BENCH_CHANNELS channels whose owners cover the three
# servers, a BENCH_PATTERN_SHARE of them by PSUBSCRIBE, and BENCH_PUBLISHERS
# publishers sending PUBLISH as fast as the subscribers take the messages,
# unpipelined and at BENCH_PIPELINE, for BENCH_DURATION. Each such run goes
# once through shardproxy and once straight to the servers (each client on
# its channel's owner, a pattern subscriber on every server); the two
# alternate. A run fails unless every subscriber got every message
# published to its channel. nutcracker is not measured: it does not proxy
# publish/subscribe. Then bench/loadgen (80/20 GET/SET, zipf,
# BENCH_CLIENTS connections) runs through shardproxy once alone and once
# beside an unpipelined fan-out run through it, and for reference the same
# against redis-server 1 beside the fan-out direct to the servers. It prints every command before it
# runs and ends with two markdown tables (paste them into bench/RESULTS.md).
# Only loopback addresses are used. Everything it started is stopped on exit.
#
# Environment (defaults in brackets):
#   BENCH_SUBSCRIBERS    subscriber connections [1000]
#   BENCH_CHANNELS       channels [10]
#   BENCH_PATTERN_SHARE  fraction of subscribers that use PSUBSCRIBE [0.2]
#   BENCH_PUBLISHERS     publisher connections [4]
#   BENCH_PIPELINE       PUBLISH pipeline depth of the pipelined rows [16]
#   BENCH_PAYLOAD_SIZE   message size in bytes [64]
#   BENCH_DURATION       duration of each run [5s]
#   BENCH_CLIENTS        loadgen connections sending GET/SET [100]
#   SHARDPROXY_BIN       use this shardproxy binary instead of building ./cmd/shardproxy
#   BENCH_KEEP=1         keep the temporary directory with configs and logs
#
# The defaults take about a minute on 2 cores.
set -euo pipefail

SUBSCRIBERS=${BENCH_SUBSCRIBERS:-1000}
CHANNELS=${BENCH_CHANNELS:-10}
PATTERN_SHARE=${BENCH_PATTERN_SHARE:-0.2}
PUBLISHERS=${BENCH_PUBLISHERS:-4}
PIPELINE=${BENCH_PIPELINE:-16}
PAYLOAD_SIZE=${BENCH_PAYLOAD_SIZE:-64}
DURATION=${BENCH_DURATION:-5s}
CLIENTS=${BENCH_CLIENTS:-100}
KEEP=${BENCH_KEEP:-0}

cd "$(dirname "${BASH_SOURCE[0]}")/.."

BENCH_SCRIPT=pubsub.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

need_counts "$SUBSCRIBERS" "$CHANNELS" "$PUBLISHERS" "$PIPELINE" "$PAYLOAD_SIZE" "$CLIENTS"
[[ $DURATION =~ ^[0-9]+s$ ]] || die "BENCH_DURATION must be whole seconds such as 5s, got \"$DURATION\""
secs=${DURATION%s}

need_tools go redis-server redis-cli

# Directly, a pattern subscriber is a connection to every server; through
# shardproxy every subscriber is a client socket of the proxy and one of
# the fan-out's.
need_fds "$((6 * SUBSCRIBERS + 2 * CLIENTS + 100))"

bench_tmp shardproxy-pubsub


print_machine
echo "params:   BENCH_SUBSCRIBERS=$SUBSCRIBERS BENCH_CHANNELS=$CHANNELS BENCH_PATTERN_SHARE=$PATTERN_SHARE" \
	"BENCH_PUBLISHERS=$PUBLISHERS BENCH_PIPELINE=$PIPELINE BENCH_PAYLOAD_SIZE=$PAYLOAD_SIZE" \
	"BENCH_DURATION=$DURATION BENCH_CLIENTS=$CLIENTS"

echo
echo "== build"
run go build -o "$tmp/fanout" ./bench/fanout
run go build -o "$tmp/loadgen" ./bench/loadgen
shardproxy_binary

echo
echo "== servers"
redis_ports=()
redis_pids=()
for i in 1 2 3; do
	free_port
	redis_ports+=("$free")
	mkdir -p "$tmp/redis$i"
	start "redis-server $i" "$free" "$tmp/redis$i.log" \
		redis-server --port "$free" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp/redis$i" \
		--maxclients $((2 * SUBSCRIBERS + 2 * CLIENTS + 100))
	redis_pids+=("${pids[-1]}")
done
free_port
sp_port=$free
free_port
sp_stats=$free
cat >"$tmp/shardproxy.yml" <<YML
bench:
  listen: 127.0.0.1:$sp_port
  hash: fnv1a_64
  distribution: ketama
  redis: true
  servers:
   - 127.0.0.1:${redis_ports[0]}:1 redis1
   - 127.0.0.1:${redis_ports[1]}:1 redis2
   - 127.0.0.1:${redis_ports[2]}:1 redis3
YML
start shardproxy "$sp_port" "$tmp/shardproxy.log" \
	"$shardproxy_bin" -c "$tmp/shardproxy.yml" -s "$sp_stats" -a 127.0.0.1
sp_pid=${pids[-1]}
echo "pool: $tmp/shardproxy.yml"
cat "$tmp/shardproxy.yml"
servers="127.0.0.1:${redis_ports[0]}=redis1,127.0.0.1:${redis_ports[1]}=redis2,127.0.0.1:${redis_ports[2]}=redis3"
server_pids=$(IFS=,; echo "${redis_pids[*]}")

# json_field FILE NAME prints a number from a JSON summary line.
json_field() {
	sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p" "$1"
}

declare -A pub_rps delivered proxy_cpu server_cpu
failures=0

# fanout_cmd TARGET DEPTH DURATION sets $cmd to the fan-out command line.
fanout_cmd() {
	local target=$1 depth=$2 duration=$3
	cmd=("$tmp/fanout" --servers "$servers" --subscribers "$SUBSCRIBERS" --channels "$CHANNELS"
		--pattern-share "$PATTERN_SHARE" --publishers "$PUBLISHERS" --pipeline "$depth"
		--payload-size "$PAYLOAD_SIZE" --duration "$duration" --server-pids "$server_pids")
	if [ "$target" = shardproxy ]; then
		cmd+=(--proxy "127.0.0.1:$sp_port" --proxy-pid "$sp_pid")
	fi
}

# fanout TARGET DEPTH runs one fan-out measurement and records it.
fanout() {
	local target=$1 depth=$2 out=$tmp/fanout-$1-$2.json n
	echo
	echo "-- fan-out, $target, publishers' pipeline $depth"
	fanout_cmd "$target" "$depth" "$DURATION"
	show "${cmd[@]}"
	if ! "${cmd[@]}" >"$out"; then
		cat "$out"
		echo "!! fanout failed"
		failures=$((failures + 1))
		pub_rps[$target/$depth]=error
		return
	fi
	cat "$out"
	n=$(json_field "$out" delivered)
	pub_rps[$target/$depth]=$(json_field "$out" publish_rps)
	delivered[$target/$depth]=$(json_field "$out" delivered_per_second)
	server_cpu[$target/$depth]=$(awk -v t="$(json_field "$out" servers_cpu_us)" -v n="$n" \
		'BEGIN { if (n > 0) printf "%.3f", t / n; else print "error" }')
	if [ "$target" = shardproxy ]; then
		proxy_cpu[$target/$depth]=$(awk -v t="$(json_field "$out" proxy_cpu_us)" -v n="$n" \
			'BEGIN { if (n > 0) printf "%.3f", t / n; else print "error" }')
	else
		proxy_cpu[$target/$depth]=-
	fi
}

# getset TARGET MODE runs loadgen alone (MODE alone) or beside an
# unpipelined fan-out (MODE beside), through shardproxy (TARGET shardproxy)
# or against redis-server 1 with the fan-out direct to the servers (TARGET
# direct), for a reference of what the machine's shared cores allow.
declare -A gs_rps gs_p99 beside_delivered
getset() {
	local target=$1 mode=$2 out=$tmp/loadgen-$1-$2.json fo=$tmp/fanout-beside-$1.json fo_pid="" i ok=1 addr
	addr=127.0.0.1:$sp_port
	[ "$target" = direct ] && addr=127.0.0.1:${redis_ports[0]}
	echo
	echo "-- GET/SET, $target, $mode"
	if [ "$mode" = beside ]; then
		# The fan-out publishes 2s longer than loadgen runs, which starts
		# once the fan-out has subscribed, so loadgen runs beside it
		# throughout.
		fanout_cmd "$target" 1 "$((secs + 2))s"
		show "${cmd[@]}"
		"${cmd[@]}" >"$fo" 2>"$fo.progress" &
		fo_pid=$!
		pids+=("$fo_pid")
		for i in $(seq 600); do
			grep -q '^publishing' "$fo.progress" && break
			kill -0 "$fo_pid" 2>/dev/null || break
			sleep 0.05
		done
		grep '^subscribed' "$fo.progress" || true
	fi
	lg=("$tmp/loadgen" --addr "$addr" --connections "$CLIENTS" --pipeline 1
		--dist zipf --read-ratio 0.8 --value-size 64 --duration "$DURATION" --timeout 10s --json)
	show "${lg[@]}"
	if ! "${lg[@]}" >"$out" 2>"$out.progress"; then
		cat "$out.progress" "$out" >&2
		echo "!! loadgen failed"
		ok=0
	fi
	cat "$out"
	if [ -n "$fo_pid" ]; then
		if ! wait "$fo_pid"; then
			cat "$fo.progress" "$fo" >&2
			echo "!! fanout beside loadgen failed"
			ok=0
		fi
		cat "$fo"
		beside_delivered[$target]=$(json_field "$fo" delivered_per_second)
	fi
	if [ "$ok" = 0 ]; then
		failures=$((failures + 1))
		gs_rps[$target/$mode]=error
		return
	fi
	gs_rps[$target/$mode]=$(json_field "$out" rps)
	gs_p99[$target/$mode]=$(awk -v v="$(json_field "$out" p99_us)" 'BEGIN { printf "%.0f", v }')
}

echo
echo "== benchmarks"
fanout shardproxy 1
fanout direct 1
fanout direct "$PIPELINE"
fanout shardproxy "$PIPELINE"
getset shardproxy alone
getset shardproxy beside
getset direct beside
getset direct alone

ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a / b; else print "error" }'
}

echo
echo "== results ($(nproc) CPUs shared by the clients, shardproxy and the servers; one run;" \
	"load avg at end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown))"
echo
npattern=$(awk -v n="$SUBSCRIBERS" -v s="$PATTERN_SHARE" 'BEGIN { printf "%d", n * s + 0.5 }')
echo "$SUBSCRIBERS subscribers ($npattern by PSUBSCRIBE) on $CHANNELS channels over 3 servers, $PUBLISHERS publishers, ${PAYLOAD_SIZE}-byte messages, ${DURATION} each; nutcracker does not proxy publish/subscribe."
echo
echo "| publishers' pipeline | shardproxy PUBLISH/s | direct PUBLISH/s | shardproxy delivered/s | direct delivered/s | shardproxy/direct delivered | proxy CPU us/delivered | servers CPU us/delivered via shardproxy | servers CPU us/delivered direct |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for depth in 1 "$PIPELINE"; do
	echo "| $depth | ${pub_rps[shardproxy/$depth]:-} | ${pub_rps[direct/$depth]:-}" \
		"| ${delivered[shardproxy/$depth]:-} | ${delivered[direct/$depth]:-}" \
		"| $(ratio "${delivered[shardproxy/$depth]:-}" "${delivered[direct/$depth]:-}")" \
		"| ${proxy_cpu[shardproxy/$depth]:-} | ${server_cpu[shardproxy/$depth]:-} | ${server_cpu[direct/$depth]:-} |"
done
echo
echo "| loadgen 80/20 GET/SET zipf, $CLIENTS conns, pipeline 1 | req/s alone | req/s beside the fan-out | beside/alone | p99 us alone | p99 us beside | fan-out delivered/s meanwhile |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for target in shardproxy direct; do
	what="through shardproxy, beside the fan-out through it"
	[ "$target" = direct ] && what="to redis-server 1, beside the fan-out direct to the servers"
	echo "| $what" \
		"| ${gs_rps[$target/alone]:-} | ${gs_rps[$target/beside]:-} | $(ratio "${gs_rps[$target/beside]:-}" "${gs_rps[$target/alone]:-}")" \
		"| ${gs_p99[$target/alone]:-} | ${gs_p99[$target/beside]:-} | ${beside_delivered[$target]:-} |"
done
echo
echo "total time: ${SECONDS}s"
if [ "$failures" -gt 0 ]; then
	die "$failures measurement(s) failed; see the output above"
fi
