#!/usr/bin/env bash
# latency.sh: latency of shardproxy, nutcracker (twemproxy) and a direct
# redis-server at fixed request rates, measured in one run over the same
# three redis-server backends.
#
#   bash bench/latency.sh          (`make bench` runs it after compare.sh)
#
# It starts 3 redis-servers, both proxies and a second nutcracker (for the
# noise floor) on free loopback ports (a ketama, fnv1a_64 pool of the three), measures nutcracker's throughput
# without pipelining with closed-loop bench/loadgen (BENCH_CLIENTS
# connections, each sending as soon as its last reply is in; the median of
# BENCH_ROUNDS runs), then runs `loadgen --rate` at 25%, 50% and 75% of that
# rate against each target: open loop, the requests sent on a fixed schedule
# whatever the replies do, each latency measured from when its request was
# due, so a stall counts for every request it held up. The workload is
# compare.sh's: 80% GET / 20% SET over zipf keys, the key space written
# first. Direct is redis-server 1 alone, as in compare.sh. It prints every
# command before it runs and ends with markdown tables of the median over
# rounds of each percentile and of each target's ratios to nutcracker
# (paste them into bench/RESULTS.md). Only loopback
# addresses are used. Everything it started is stopped on exit.
#
# Environment (defaults in brackets):
#   BENCH_DURATION    duration of each loadgen run [5s]
#   BENCH_CLIENTS     loadgen connections [50]
#   BENCH_KEYS        key space [100000]
#   BENCH_VALUE_SIZE  SET value size in bytes [64]
#   BENCH_ROUNDS      run every measurement this many times, reversing the
#                     order of the targets every round, and report medians [3]
#   BENCH_OUT_DIR     also write the medians to latency.tsv there (a
#                     directory, relative to the repository root): target,
#                     rate, pct, p50_us, p99_us, p99_9_us, after comment lines
#                     naming the run; `go run ./bench/chart` draws it
#   SHARDPROXY_BIN    use this shardproxy binary instead of building ./cmd/shardproxy
#   SHARDPROXY_BASE_BIN  also run this shardproxy binary (say, a build of the
#                     commit before a change) as the target "baseline", so
#                     before and after are measured in one run
#   BENCH_KEEP=1      keep the temporary directory with configs and logs
#
# The defaults take about 3 minutes on 2 cores (a quarter more with
# SHARDPROXY_BASE_BIN); for a quick check:
#   BENCH_DURATION=2s BENCH_ROUNDS=1 bash bench/latency.sh
set -euo pipefail

DURATION=${BENCH_DURATION:-5s}
CLIENTS=${BENCH_CLIENTS:-50}
KEYS=${BENCH_KEYS:-100000}
VALUE_SIZE=${BENCH_VALUE_SIZE:-64}
ROUNDS=${BENCH_ROUNDS:-3}
OUT_DIR=${BENCH_OUT_DIR:-}
KEEP=${BENCH_KEEP:-0}
PCTS=(25 50 75)

cd "$(dirname "${BASH_SOURCE[0]}")/.."

BENCH_SCRIPT=latency.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

need_counts "$CLIENTS" "$KEYS" "$VALUE_SIZE" "$ROUNDS"
[[ $DURATION =~ ^[0-9]+(ms|s|m)$ ]] || die "BENCH_DURATION must be a duration such as 5s or 500ms, got \"$DURATION\""
need_out_dir
need_tools go redis-server redis-cli nutcracker

bench_tmp shardproxy-latency

print_machine nutcracker
echo "NOTE: loadgen, both proxies and all 3 redis-servers share these $(nproc) CPUs."
echo "      Latencies include loadgen's own scheduling; compare the targets within one run."
echo "params:   BENCH_DURATION=$DURATION BENCH_CLIENTS=$CLIENTS BENCH_KEYS=$KEYS" \
	"BENCH_VALUE_SIZE=$VALUE_SIZE BENCH_ROUNDS=$ROUNDS"

echo
echo "== build"
run go build -o "$tmp/loadgen" ./bench/loadgen
shardproxy_binary
base_bin=${SHARDPROXY_BASE_BIN:-}
if [ -n "$base_bin" ]; then
	[ -x "$base_bin" ] || die "SHARDPROXY_BASE_BIN=$base_bin is not an executable"
fi

echo
echo "== servers"
start_redis_servers

declare -A pid_of port=([direct]=${redis_ports[0]})
start_pool_proxy nutcracker nutcracker

# nutcracker-again, a second nutcracker over the same servers, gives the
# run's noise floor: its ratios to nutcracker are what no difference looks
# like.
start_pool_proxy nutcracker-again nutcracker
start_pool_proxy shardproxy "$shardproxy_bin"
targets=(shardproxy nutcracker nutcracker-again direct)

if [ -n "$base_bin" ]; then
	start_pool_proxy baseline "$base_bin"
	targets=(shardproxy baseline nutcracker nutcracker-again direct)
fi
echo "pool: $tmp/nutcracker.yml"
cat "$tmp/nutcracker.yml"

# The loadgen flags of every run: compare.sh's unpipelined workload. The
# timeout is long because on a shared machine a stall of seconds is the
# machine, not the proxy; stalls still show in the p99.9.
workload=(--connections "$CLIENTS" --pipeline 1 --keys "$KEYS" --dist zipf --read-ratio 0.8
	--value-size "$VALUE_SIZE" --duration "$DURATION" --timeout 10s --json)

# json_field FILE NAME prints the number NAME of loadgen's JSON summary in
# FILE, or nothing.
json_field() {
	sed -n "s/.*\"$2\":\([0-9.e+-]*\).*/\1/p" "$1"
}

echo
echo "== warmup: every key written once through nutcracker (so through the three servers) and directly"
# The proxies place keys alike, so writing them through one fills the
# servers for both; direct sends every key to redis-server 1.
for target in nutcracker direct; do
	run "$tmp/loadgen" --addr "127.0.0.1:${port[$target]}" --connections "$CLIENTS" --keys "$KEYS" \
		--value-size "$VALUE_SIZE" --warmup --requests 1 --json ||
		die "writing the key space through $target failed"
done

echo
echo "== nutcracker's throughput, closed loop, pipeline 1"
max_runs=""
for round in $(seq "$ROUNDS"); do
	out=$tmp/max-$round.json
	if run_to "$out" "$tmp/loadgen" --addr "127.0.0.1:${port[nutcracker]}" "${workload[@]}"; then
		max_runs+=" $(json_field "$out" rps)"
	else
		echo "!! loadgen against nutcracker failed"
	fi
done
max_rps=$(median "${max_runs# }")
[[ $max_rps =~ ^[0-9.]+$ ]] || die "no throughput measured through nutcracker; see the output above"
max_rps=$(awk -v v="$max_rps" 'BEGIN { printf "%.0f", v }')
echo "nutcracker: $max_rps req/s (median of:${max_runs})"

declare -A rate_of
for pct in "${PCTS[@]}"; do
	rate_of[$pct]=$((max_rps * pct / 100))
done

# p50[pct/target], p99[...], p999[...]: each round's latency in µs,
# space-separated, "error" for a failed run; below lists the runs whose
# achieved rate fell short of their target.
declare -A p50 p99 p999
below=()
failures=0

# measure TARGET PCT runs loadgen --rate at PCT% of nutcracker's throughput
# against TARGET.
measure() {
	local target=$1 pct=$2 rate=${rate_of[$2]} out=$tmp/rate-$2-$1-$round.json achieved
	echo
	echo "-- $target: loadgen --rate $rate ($pct% of nutcracker's throughput)"
	if ! run_to "$out" "$tmp/loadgen" --addr "127.0.0.1:${port[$target]}" "${workload[@]}" --rate "$rate"; then
		echo "!! loadgen against $target failed"
		record p50 "$pct/$target" error
		record p99 "$pct/$target" error
		record p999 "$pct/$target" error
		failures=$((failures + 1))
		return
	fi
	record p50 "$pct/$target" "$(json_field "$out" p50_us)"
	record p99 "$pct/$target" "$(json_field "$out" p99_us)"
	record p999 "$pct/$target" "$(json_field "$out" p999_us)"
	if grep -q '"below_target":true' "$out"; then
		achieved=$(json_field "$out" achieved_rate)
		below+=("$target at $pct% (round $round): $achieved of $rate req/s")
	fi
}

echo
echo "== latency at fixed rates (targets: ${targets[*]}; direct = redis-server 1 alone)"
forward=("${targets[@]}")
for round in $(seq "$ROUNDS"); do
	# Reverse the order every round, so that no target always runs right
	# after the same other one.
	order=()
	if [ $((round % 2)) = 1 ]; then
		order=("${forward[@]}")
	else
		for ((i = ${#forward[@]} - 1; i >= 0; i--)); do order+=("${forward[$i]}"); done
	fi
	if [ "$ROUNDS" -gt 1 ]; then
		echo
		echo "== round $round of $ROUNDS (order: ${order[*]})"
	fi
	for pct in "${PCTS[@]}"; do
		for target in "${order[@]}"; do
			measure "$target" "$pct"
		done
	done
done

# us_cell prints a median latency in µs as a whole number, or "-"/"error".
us_cell() {
	case "$1" in
	- | error) echo "$1" ;;
	*) awk -v v="$1" 'BEGIN { printf "%.0f", v }' ;;
	esac
}

# ratio_cell A B prints median_ratio to two decimals (the median of an even
# number of rounds is a mean), or "-"/"error" as it is.
ratio_cell() {
	local r
	r=$(median_ratio "$1" "$2")
	case "$r" in
	- | error) echo "$r" ;;
	*) awk -v r="$r" 'BEGIN { printf "%.2f", r }' ;;
	esac
}

echo
echo "== results ($(nproc) CPUs shared by loadgen, the proxies and the servers; median of $ROUNDS round(s);" \
	"load avg at end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown))"
echo "Open-loop loadgen, $CLIENTS connections, pipeline 1, 80/20 GET/SET zipf; latency in us from each"
echo "request's scheduled time to its reply. The rates are shares of nutcracker's closed-loop throughput"
echo "($max_rps req/s). A ratio is the median of each round's ratio to nutcracker's percentile;"
echo "nutcracker-again's ratios are the run's noise floor."
echo
header="| rate req/s | % of nutcracker max |"
rule="|---:|---:|"
for target in "${forward[@]}"; do
	header+=" $target p50 | $target p99 | $target p99.9 |"
	rule+="---:|---:|---:|"
done
echo "$header"
echo "$rule"
for pct in "${PCTS[@]}"; do
	row="| ${rate_of[$pct]} | $pct% |"
	for target in "${forward[@]}"; do
		row+=" $(us_cell "$(median "${p50[$pct/$target]:-}")") | $(us_cell "$(median "${p99[$pct/$target]:-}")")"
		row+=" | $(us_cell "$(median "${p999[$pct/$target]:-}")") |"
	done
	echo "$row"
done
echo
# The ratios to nutcracker, in a table of their own.
ratio_targets=(shardproxy)
[ -z "$base_bin" ] || ratio_targets+=(baseline)
ratio_targets+=(nutcracker-again)
header="| rate req/s | % of nutcracker max |"
rule="|---:|---:|"
for target in "${ratio_targets[@]}"; do
	header+=" $target/nutcracker p50 | p99 | p99.9 |"
	rule+="---:|---:|---:|"
done
echo "$header"
echo "$rule"
for pct in "${PCTS[@]}"; do
	row="| ${rate_of[$pct]} | $pct% |"
	for target in "${ratio_targets[@]}"; do
		row+=" $(ratio_cell "${p50[$pct/$target]:-}" "${p50[$pct/nutcracker]:-}")"
		row+=" | $(ratio_cell "${p99[$pct/$target]:-}" "${p99[$pct/nutcracker]:-}")"
		row+=" | $(ratio_cell "${p999[$pct/$target]:-}" "${p999[$pct/nutcracker]:-}") |"
	done
	echo "$row"
done
echo
if [ "${#below[@]}" -gt 0 ]; then
	echo "Runs whose achieved rate fell more than 5% short of the target (the target could not keep up):"
	printf -- '- %s\n' "${below[@]}"
else
	echo "Every run achieved its target rate (within 5%)."
fi

if [ -n "$OUT_DIR" ]; then
	tsv_params="BENCH_DURATION=$DURATION BENCH_CLIENTS=$CLIENTS BENCH_ROUNDS=$ROUNDS; nutcracker's max $max_rps req/s"
	tsv_header "$OUT_DIR/latency.tsv" target rate pct p50_us p99_us p99_9_us
	{
		for target in "${forward[@]}"; do
			for pct in "${PCTS[@]}"; do
				printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "${rate_of[$pct]}" "$pct" \
					"$(us_cell "$(median "${p50[$pct/$target]:-}")")" \
					"$(us_cell "$(median "${p99[$pct/$target]:-}")")" \
					"$(us_cell "$(median "${p999[$pct/$target]:-}")")"
			done
		done
	} >>"$OUT_DIR/latency.tsv"
	echo "medians written to $OUT_DIR/latency.tsv"
fi
echo "total time: ${SECONDS}s"
if [ "$failures" -gt 0 ]; then
	die "$failures measurement(s) failed; see the output above"
fi
