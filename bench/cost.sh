#!/usr/bin/env bash
# cost.sh: where each proxy's CPU goes, per request. Over the same three
# redis-servers it runs redis-benchmark (SET and GET) against shardproxy,
# nutcracker, redis-server 1 directly and bench/floorproxy (the least a
# proxy in Go does: one epoll loop owning every socket), one after the
# other, and counts for each target's process over its runs only: user and
# system CPU time (/proc/PID/stat), voluntary and involuntary context
# switches (/proc/PID/task/*/status), and, with perf, every syscall it made
# by name (the syscalls:sys_enter_* tracepoints). Every count is divided by
# the requests of the runs.
#
#   bash bench/cost.sh             (as root, or with perf_event_paranoid <= -1,
#                                   for the syscall counts)
#
# Environment (defaults in brackets):
#   BENCH_REQUESTS    requests per redis-benchmark test [200000]
#   BENCH_CLIENTS     redis-benchmark clients [50]
#   BENCH_PIPELINE    pipeline depth [1]
#   BENCH_ROUNDS      rounds, alternating the order of the proxies [2]
#   SHARDPROXY_BIN    the shardproxy binary (else ./cmd/shardproxy is built)
#   SHARDPROXY_BASE_BIN  also measure this binary as "baseline"
#   BENCH_PROFILE=1   also record each proxy's CPU profile with perf record
#                     and print its top symbols (build without -s -w)
#   BENCH_OUT_DIR     also write each target's user, system and total CPU
#                     per request to cpu-cost.tsv there (a directory,
#                     relative to the repository root), after comment lines
#                     naming the run; `go run ./bench/chart` draws it
#   BENCH_KEEP=1      keep the temporary directory
set -euo pipefail

REQUESTS=${BENCH_REQUESTS:-200000}
CLIENTS=${BENCH_CLIENTS:-50}
PIPELINE=${BENCH_PIPELINE:-1}
ROUNDS=${BENCH_ROUNDS:-2}
PROFILE=${BENCH_PROFILE:-0}
OUT_DIR=${BENCH_OUT_DIR:-}
KEEP=${BENCH_KEEP:-0}

cd "$(dirname "${BASH_SOURCE[0]}")/.."

BENCH_SCRIPT=cost.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

need_counts "$REQUESTS" "$CLIENTS" "$PIPELINE" "$ROUNDS"
case "$PROFILE" in
0 | 1) ;;
*) die "BENCH_PROFILE must be 0 or 1, got \"$PROFILE\"" ;;
esac
if [ -n "${SHARDPROXY_BIN:-}" ] && [ ! -x "$SHARDPROXY_BIN" ]; then
	die "SHARDPROXY_BIN=$SHARDPROXY_BIN is not an executable"
fi
if [ -n "${SHARDPROXY_BASE_BIN:-}" ] && [ ! -x "$SHARDPROXY_BASE_BIN" ]; then
	die "SHARDPROXY_BASE_BIN=$SHARDPROXY_BASE_BIN is not an executable"
fi
need_out_dir
need_tools go redis-server redis-cli redis-benchmark nutcracker
have_perf=0
if command -v perf >/dev/null && perf stat -e syscalls:sys_enter_read -- true >/dev/null 2>&1; then
	have_perf=1
fi

bench_tmp shardproxy-cost
print_machine nutcracker
echo "params:   BENCH_REQUESTS=$REQUESTS BENCH_CLIENTS=$CLIENTS BENCH_PIPELINE=$PIPELINE BENCH_ROUNDS=$ROUNDS"
[ "$have_perf" = 1 ] || echo "NOTE: perf cannot read syscall tracepoints here; syscall counts are left out"

echo
echo "== build"
shardproxy_binary
run go build -o "$tmp/floorproxy" ./bench/floorproxy

echo
echo "== servers"
pids=()
declare -A port pid_of
start_redis_servers
# direct is redis-server 1 served by redis-benchmark itself: its cost per
# request is what reading one request and writing one reply costs a process
# that also executes the command, the floor of a proxy's client side.
port[direct]=${redis_ports[0]}
pid_of[direct]=${pids[0]}
targets=(shardproxy nutcracker direct)
start_pool_proxy shardproxy "$shardproxy_bin"
start_pool_proxy nutcracker nutcracker
if [ -n "${SHARDPROXY_BASE_BIN:-}" ]; then
	start_pool_proxy baseline "$SHARDPROXY_BASE_BIN"
	targets=(shardproxy baseline nutcracker direct)
fi
# floor is bench/floorproxy, the least a proxy in Go does per request: one
# epoll loop owning every socket, one read per readable socket and one
# write per socket per turn. What shardproxy spends above it is what its
# I/O model and its features cost.
free_port
port[floor]=$free
start floor "$free" "$tmp/floor.log" "$tmp/floorproxy" -listen "127.0.0.1:$free" \
	-servers "127.0.0.1:${redis_ports[0]}:redis1,127.0.0.1:${redis_ports[1]}:redis2,127.0.0.1:${redis_ports[2]}:redis3"
pid_of[floor]=${pids[-1]}
targets+=(floor)

# The syscalls counted by name; the rest are summed as "other".
syscalls=(read write readv writev recvfrom sendto recvmsg sendmsg epoll_wait epoll_pwait epoll_ctl futex nanosleep sched_yield getpid tgkill rt_sigreturn)
hz=$(getconf CLK_TCK 2>/dev/null || echo 100)

# counters PID prints "utime stime voluntary nonvoluntary" of a process and
# its threads.
counters() {
	local pid=$1 ut st vol nonvol
	read -r ut st < <(sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12, $13 }')
	vol=0 nonvol=0
	for t in /proc/"$pid"/task/*/status; do
		read -r v n < <(awk '/^voluntary_ctxt_switches/ { v = $2 } /^nonvoluntary_ctxt_switches/ { n = $2 } END { print v + 0, n + 0 }' "$t" 2>/dev/null || echo "0 0")
		vol=$((vol + v)) nonvol=$((nonvol + n))
	done
	echo "$ut $st $vol $nonvol"
}

# sums[TARGET/KEY] adds up each round's counts; KEY is a counter name.
declare -A sums
add() { sums[$1]=$(awk -v a="${sums[$1]:-0}" -v b="$2" 'BEGIN { print a + b }'); }

measure() {
	local target=$1 pid=${pid_of[$1]} n=$((2 * REQUESTS)) before after perf_pid= events=() s
	echo
	echo "-- $target: redis-benchmark, pipeline $PIPELINE"
	if [ "$have_perf" = 1 ]; then
		events=(-e raw_syscalls:sys_enter)
		for s in "${syscalls[@]}"; do events+=(-e "syscalls:sys_enter_$s"); done
		perf stat -x, -o "$tmp/perf-$target.csv" "${events[@]}" -p "$pid" >/dev/null 2>&1 &
		perf_pid=$!
		sleep 0.5
	fi
	before=$(counters "$pid")
	show redis-benchmark -h 127.0.0.1 -p "${port[$target]}" -c "$CLIENTS" -n "$REQUESTS" \
		-r 100000 -d 64 -P "$PIPELINE" -t set,get --csv
	redis-benchmark -h 127.0.0.1 -p "${port[$target]}" -c "$CLIENTS" -n "$REQUESTS" \
		-r 100000 -d 64 -P "$PIPELINE" -t set,get --csv 2>&1 | grep -v '^WARNING' || true
	after=$(counters "$pid")
	if [ -n "$perf_pid" ]; then
		kill -INT "$perf_pid"
		wait "$perf_pid" || true
	fi
	read -r b_ut b_st b_vol b_non <<<"$before"
	read -r a_ut a_st a_vol a_non <<<"$after"
	add "$target/requests" "$n"
	add "$target/user_us" "$(awk -v t="$((a_ut - b_ut))" -v hz="$hz" 'BEGIN { print t * 1e6 / hz }')"
	add "$target/sys_us" "$(awk -v t="$((a_st - b_st))" -v hz="$hz" 'BEGIN { print t * 1e6 / hz }')"
	add "$target/voluntary" "$((a_vol - b_vol))"
	add "$target/involuntary" "$((a_non - b_non))"
	if [ -n "$perf_pid" ]; then
		local total=0 named=0 v name
		while IFS=, read -r v _ name _; do
			[[ $v =~ ^[0-9]+$ ]] || continue
			case "$name" in
			raw_syscalls:sys_enter) total=$v ;;
			syscalls:sys_enter_*)
				add "$target/${name#syscalls:sys_enter_}" "$v"
				named=$((named + v))
				;;
			esac
		done <"$tmp/perf-$target.csv"
		add "$target/syscalls" "$total"
		add "$target/other" "$((total - named))"
	fi
}

for round in $(seq "$ROUNDS"); do
	order=("${targets[@]}")
	if [ $((round % 2)) = 0 ]; then
		order=()
		for ((i = ${#targets[@]} - 1; i >= 0; i--)); do order+=("${targets[$i]}"); done
	fi
	for target in "${order[@]}"; do
		measure "$target"
	done
done

# per TARGET KEY prints KEY per request, to two decimals (three below 1).
per() {
	awk -v v="${sums[$1/$2]:-0}" -v n="${sums[$1/requests]}" 'BEGIN {
		r = v / n; if (r < 1) printf "%.3f", r; else printf "%.2f", r }'
}

echo
echo "== per request (SET+GET, $CLIENTS clients, pipeline $PIPELINE, $ROUNDS round(s))"
header="| per request |"
rule="|---|"
for target in "${targets[@]}"; do
	header+=" $target |"
	rule+="---:|"
done
echo "$header"
echo "$rule"
row() {
	local label=$1 key=$2 line target
	line="| $label |"
	for target in "${targets[@]}"; do line+=" $(per "$target" "$key") |"; done
	echo "$line"
}
cpu_row() {
	local line="| CPU µs (user+system) |" target
	for target in "${targets[@]}"; do
		line+=" $(awk -v u="${sums[$target/user_us]}" -v s="${sums[$target/sys_us]}" -v n="${sums[$target/requests]}" \
			'BEGIN { printf "%.2f", (u + s) / n }') |"
	done
	echo "$line"
}
cpu_row
row "user µs" user_us
row "system µs" sys_us
row "voluntary context switches" voluntary
row "involuntary context switches" involuntary
if [ "$have_perf" = 1 ]; then
	row "syscalls" syscalls
	for s in "${syscalls[@]}" other; do
		used=0
		for target in "${targets[@]}"; do
			[ "${sums[$target/$s]:-0}" = 0 ] || used=1
		done
		[ "$used" = 0 ] || row "$s" "$s"
	done
fi

if [ -n "$OUT_DIR" ]; then
	tsv_params="BENCH_REQUESTS=$REQUESTS BENCH_CLIENTS=$CLIENTS BENCH_PIPELINE=$PIPELINE BENCH_ROUNDS=$ROUNDS"
	tsv_header "$OUT_DIR/cpu-cost.tsv" target workload cpu_us vs_nutcracker
	for target in "${targets[@]}"; do
		for part in user sys total; do
			awk -v t="$target" -v part="$part" -v clients="$CLIENTS" -v depth="$PIPELINE" \
				-v u="${sums[$target/user_us]}" -v s="${sums[$target/sys_us]}" -v n="${sums[$target/requests]}" \
				-v nu="${sums[nutcracker/user_us]}" -v ns="${sums[nutcracker/sys_us]}" -v nn="${sums[nutcracker/requests]}" 'BEGIN {
				if (part == "user") { v = u / n; r = nu / nn; name = "user" }
				else if (part == "sys") { v = s / n; r = ns / nn; name = "system" }
				else { v = (u + s) / n; r = (nu + ns) / nn; name = "user+system" }
				printf "%s\t%s time, redis-benchmark SET+GET, %d clients, pipeline %d\t%.2f\t%s\n", t, name, clients, depth, v,
					(r > 0 ? sprintf("%.2f", v / r) : "-")
			}'
		done
	done >>"$OUT_DIR/cpu-cost.tsv"
	echo "table written to $OUT_DIR/cpu-cost.tsv"
fi

if [ "$PROFILE" = 1 ]; then
	command -v perf >/dev/null || die "BENCH_PROFILE=1 needs perf"
	for target in "${targets[@]}"; do
		echo
		echo "== profile: $target (perf record, redis-benchmark pipeline $PIPELINE)"
		perf record -F 2999 -g -o "$tmp/perf-$target.data" -p "${pid_of[$target]}" >/dev/null 2>&1 &
		perf_pid=$!
		sleep 0.5
		redis-benchmark -h 127.0.0.1 -p "${port[$target]}" -c "$CLIENTS" -n "$REQUESTS" \
			-r 100000 -d 64 -P "$PIPELINE" -t set,get -q >/dev/null
		kill -INT "$perf_pid"
		wait "$perf_pid" || true
		perf report -i "$tmp/perf-$target.data" --no-children --sort sym --percent-limit 1 --stdio 2>/dev/null |
			grep -E '^ +[0-9.]+%' | head -40
		echo "-- where it goes, with everything each calls (share of all samples; they overlap)"
		perf report -i "$tmp/perf-$target.data" --children --sort sym --stdio 2>/dev/null |
			grep -E '^ +[0-9.]+% +[0-9.]+% +\[k\] (ksys_write|ksys_read|do_writev|do_epoll_wait|do_epoll_ctl|__schedule|net_rx_action|sock_def_readable|tcp_sendmsg|tcp_recvmsg)$' || true
		echo "-- kernel and user"
		perf report -i "$tmp/perf-$target.data" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9.]+%' || true
	done
fi
