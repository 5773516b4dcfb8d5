#!/usr/bin/env bash
# memory.sh: memory per client connection of shardproxy and nutcracker
# (twemproxy), measured in one run over the same three redis-server backends.
#
#   bash bench/memory.sh          (`make bench` runs it after tls.sh)
#
# It starts 3 redis-servers and both proxies on free loopback ports, with
# the pools of compare.sh. Then, one proxy at a time while the others sit
# idle, bench/idleconns opens BENCH_CONNECTIONS client connections to it, has
# each send one PING, and closes them all; the script reads the proxy's
# resident memory (VmRSS and its peak VmHWM in /proc/<pid>/status) at each
# phase:
#
#   start       before any client connected
#   connected   every connection open, nothing sent on it
#   pinged      every connection has sent one PING and read its PONG
#   pinged+10s  10 seconds later, every connection still open and idle:
#               what an idle connection that has been used costs
#   closed      right after the clients closed their connections
#   closed+10s  10 seconds later
#   closed+Ns   N seconds later, with BENCH_SETTLE=N
#   peak        VmHWM at the end: the most the process ever had resident
#
# Before each reading it waits until the proxy holds a file descriptor for
# every client (or has let go of them all), so a connection the kernel has
# queued but the proxy has not yet accepted is not counted as measured. It
# prints every command before it runs and ends with a markdown table of the
# KB per connection at each phase, (VmRSS at the phase - VmRSS at start) /
# BENCH_CONNECTIONS, and the shardproxy/nutcracker ratio ("-" where either
# is below 0.1 KB, mostly noise) (paste it into bench/RESULTS.md). Only loopback addresses are used. Everything it started
# is stopped on exit.
#
# The Go runtime returns freed memory to the kernel only after a garbage
# collection (it forces one every 2 minutes when nothing else triggers it)
# and its background scavenger has run, so shardproxy's closed rows stay
# high for a while; BENCH_SETTLE=130 shows where it ends up.
#
# Environment (defaults in brackets):
#   BENCH_CONNECTIONS  client connections held open to each proxy [10000]
#   BENCH_DIALERS     connections idleconns dials at a time [64]
#   BENCH_PINGERS     connections whose PINGs are in flight together:
#                     idleconns sends PING on that many, then reads their
#                     replies, and so on; the default has every client's
#                     request in the proxy at once, which is what a proxy
#                     that keeps buffers for its busiest moment (nutcracker's
#                     free lists) holds on to [BENCH_CONNECTIONS]
#   BENCH_SETTLE      also read the memory this many seconds after the
#                     clients closed, more than 10; 0 = not [0]
#   BENCH_OUT_DIR     also write the readings to memory.tsv there (a
#                     directory, relative to the repository root): target,
#                     phase, rss_kb (VmHWM for peak), kb_per_conn, after
#                     comment lines naming the run; `go run ./bench/chart`
#                     draws it
#   SHARDPROXY_BIN    use this shardproxy binary instead of building ./cmd/shardproxy
#   SHARDPROXY_BASE_BIN  also measure this shardproxy binary (say, a build of
#                     the commit before a change) as the target "baseline",
#                     so before and after are measured in one run
#   BENCH_KEEP=1      keep the temporary directory with configs and logs
#
# The defaults take about 1 minute on 2 cores (plus BENCH_SETTLE per proxy).
set -euo pipefail

CONNECTIONS=${BENCH_CONNECTIONS:-10000}
DIALERS=${BENCH_DIALERS:-64}
PINGERS=${BENCH_PINGERS:-$CONNECTIONS}
SETTLE=${BENCH_SETTLE:-0}
OUT_DIR=${BENCH_OUT_DIR:-}
KEEP=${BENCH_KEEP:-0}

cd "$(dirname "${BASH_SOURCE[0]}")/.."

BENCH_SCRIPT=memory.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

need_counts "$CONNECTIONS" "$DIALERS" "$PINGERS"
if ! [[ $SETTLE =~ ^[0-9]+$ ]] || { [ "$SETTLE" -ne 0 ] && [ "$SETTLE" -le 10 ]; }; then
	die "BENCH_SETTLE must be 0 or a number of seconds above 10, got \"$SETTLE\""
fi
if [ -n "${SHARDPROXY_BIN:-}" ] && [ ! -x "$SHARDPROXY_BIN" ]; then
	die "SHARDPROXY_BIN=$SHARDPROXY_BIN is not an executable"
fi
base_bin=${SHARDPROXY_BASE_BIN:-}
if [ -n "$base_bin" ] && [ ! -x "$base_bin" ]; then
	die "SHARDPROXY_BASE_BIN=$base_bin is not an executable"
fi

need_out_dir
need_tools go redis-server redis-cli nutcracker

# Each proxy holds a socket per client: nutcracker accepts only as many
# clients as its open file limit leaves after its server connections and 32
# spare descriptors, and closes the rest at once. idleconns raises its own.
need_fds "$((CONNECTIONS + 1000))"

bench_tmp shardproxy-memory

print_machine nutcracker
echo "params:   BENCH_CONNECTIONS=$CONNECTIONS BENCH_DIALERS=$DIALERS BENCH_PINGERS=$PINGERS BENCH_SETTLE=$SETTLE"

echo
echo "== build"
run go build -o "$tmp/idleconns" ./bench/idleconns
shardproxy_binary

echo
echo "== servers"
start_redis_servers

declare -A port pid_of
targets=(shardproxy)
start_pool_proxy shardproxy "$shardproxy_bin"

if [ -n "$base_bin" ]; then
	targets+=(baseline)
	start_pool_proxy baseline "$base_bin"
fi

targets+=(nutcracker)
start_pool_proxy nutcracker nutcracker
echo "pool: $tmp/nutcracker.yml"
cat "$tmp/nutcracker.yml"

phases=(start connected pinged pinged+10s closed closed+10s)
[ "$SETTLE" = 0 ] || phases+=("closed+${SETTLE}s")
phases+=(peak)
declare -A label_of=(
	[start]="at start"
	[connected]="$CONNECTIONS connections open, idle"
	[pinged]="after one PING on each, $PINGERS at a time"
	[pinged+10s]="10 s after the PINGs, still connected"
	[closed]="right after the clients closed"
	[closed+10s]="10 s after the clients closed"
	[closed+${SETTLE}s]="$SETTLE s after the clients closed"
	[peak]="peak (VmHWM)"
)

# rss[TARGET/PHASE] is the reading in KB (VmHWM for peak).
declare -A rss

# status_kb PID FIELD prints FIELD (VmRSS, VmHWM) of /proc/PID/status in KB.
status_kb() {
	awk -v f="$2:" '$1 == f { print $2; found = 1 } END { if (!found) exit 1 }' "/proc/$1/status" ||
		die "cannot read $2 of process $1"
}

# fds PID prints how many file descriptors PID has open.
fds() {
	local all=("/proc/$1/fd"/*)
	echo "${#all[@]}"
}

# wait_fds TARGET WHAT TEST N waits up to 60s until the target's open file
# descriptors compare with N by TEST (-ge, -le); WHAT says what it waits for.
wait_fds() {
	local target=$1 what=$2 test=$3 n=$4 pid=${pid_of[$1]} i have
	for i in $(seq 600); do
		have=$(fds "$pid")
		# shellcheck disable=SC2086
		[ "$have" $test "$n" ] && return 0
		kill -0 "$pid" 2>/dev/null || die "$target exited; see $tmp/$target.log"
		sleep 0.1
	done
	die "$target has $have file descriptors open after 60s, waiting for $what"
}

# reading TARGET PHASE records and prints the target's VmRSS at PHASE.
reading() {
	local target=$1 phase=$2 pid=${pid_of[$1]}
	rss[$target/$phase]=$(status_kb "$pid" VmRSS)
	echo "$target $phase: VmRSS ${rss[$target/$phase]} KB, VmHWM $(status_kb "$pid" VmHWM) KB," \
		"$(fds "$pid") file descriptors"
}

# expect LINE dies unless idleconns prints LINE next.
expect() {
	local line=""
	if ! read -r -t 300 line <&"$idle_out" || [ "$line" != "$1" ]; then
		die "idleconns printed \"$line\", want \"$1\""
	fi
	echo "idleconns: $line"
}

# measure TARGET holds the connections open to TARGET with idleconns and
# reads its memory at every phase.
measure() {
	local target=$1 pid=${pid_of[$1]} fds_start fds_open idle_pid
	echo
	echo "== $target"
	fds_start=$(fds "$pid")
	reading "$target" start

	local idle=("$tmp/idleconns" --addr "127.0.0.1:${port[$target]}" --connections "$CONNECTIONS" \
		--dialers "$DIALERS" --pingers "$PINGERS")
	show "${idle[@]}"
	coproc IDLE { exec "${idle[@]}"; }
	idle_pid=$IDLE_PID
	pids+=("$idle_pid")
	# Bash drops IDLE when the coprocess exits; these stay.
	exec {idle_out}<&"${IDLE[0]}" {idle_in}>&"${IDLE[1]}"

	expect "connected $CONNECTIONS"
	echo "idleconns itself: VmRSS $(status_kb "$idle_pid" VmRSS) KB"
	wait_fds "$target" "$CONNECTIONS clients" -ge "$((fds_start + CONNECTIONS))"
	sleep 1
	reading "$target" connected

	echo >&"$idle_in"
	expect "pinged $CONNECTIONS"
	sleep 1
	reading "$target" pinged
	sleep 9
	reading "$target" pinged+10s
	fds_open=$(fds "$pid")

	echo >&"$idle_in"
	expect closed
	wait "$idle_pid" || die "idleconns failed against $target"
	exec {idle_out}<&- {idle_in}>&-
	wait_fds "$target" "the clients to be gone" -le "$((fds_open - CONNECTIONS))"
	reading "$target" closed
	sleep 10
	reading "$target" closed+10s
	if [ "$SETTLE" != 0 ]; then
		sleep "$((SETTLE - 10))"
		reading "$target" "closed+${SETTLE}s"
	fi
	rss[$target/peak]=$(status_kb "$pid" VmHWM)
}

for target in "${targets[@]}"; do
	measure "$target"
done

# kb_per_conn TARGET PHASE prints (reading - start) / connections, to two
# decimals, or "-" at start.
kb_per_conn() {
	[ "$2" != start ] || {
		echo "-"
		return
	}
	awk -v r="${rss[$1/$2]}" -v s="${rss[$1/start]}" -v n="$CONNECTIONS" 'BEGIN { printf "%.2f", (r - s) / n }'
}

# ratio A B prints A/B to two decimals, or "-" unless both are at least
# 0.1 KB per connection (below that the difference is mostly noise).
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		if (a ~ /^-?[0-9.]+$/ && b ~ /^-?[0-9.]+$/ && a >= 0.1 && b >= 0.1) printf "%.2f", a / b; else print "-" }'
}

if [ -n "$OUT_DIR" ]; then
	tsv_params="BENCH_CONNECTIONS=$CONNECTIONS BENCH_PINGERS=$PINGERS BENCH_SETTLE=$SETTLE"
	tsv_header "$OUT_DIR/memory.tsv" target phase rss_kb kb_per_conn
	{
		for target in "${targets[@]}"; do
			for phase in "${phases[@]}"; do
				printf '%s\t%s\t%s\t%s\n' "$target" "$phase" "${rss[$target/$phase]}" "$(kb_per_conn "$target" "$phase")"
			done
		done
	} >>"$OUT_DIR/memory.tsv"
fi

echo
echo "== results"
echo "Resident memory (VmRSS, /proc/<pid>/status) of each proxy with $CONNECTIONS client"
echo "connections, each proxy measured alone; KB per connection is (VmRSS - VmRSS at start) /"
echo "$CONNECTIONS. Its $(nproc) CPUs: load avg at end $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)."
echo
header="| phase |"
rule="|---|"
for target in "${targets[@]}"; do
	header+=" $target RSS KB | $target KB/conn |"
	rule+="---:|---:|"
done
for target in "${targets[@]}"; do
	[ "$target" = nutcracker ] && continue
	header+=" $target/nutcracker |"
	rule+="---:|"
done
echo "$header"
echo "$rule"
for phase in "${phases[@]}"; do
	row="| ${label_of[$phase]} |"
	for target in "${targets[@]}"; do
		row+=" ${rss[$target/$phase]} | $(kb_per_conn "$target" "$phase") |"
	done
	for target in "${targets[@]}"; do
		[ "$target" = nutcracker ] && continue
		row+=" $(ratio "$(kb_per_conn "$target" "$phase")" "$(kb_per_conn nutcracker "$phase")") |"
	done
	echo "$row"
done
echo
[ -z "$OUT_DIR" ] || echo "readings written to $OUT_DIR/memory.tsv"
echo "total time: ${SECONDS}s"
