#!/usr/bin/env bash
# compare.sh: throughput of shardproxy, nutcracker (twemproxy) and a direct
# redis-server, measured in one run over the same three redis-server backends.
#
#   bash bench/compare.sh          (what `make bench` runs)
#
# It starts 3 redis-servers and both proxies on free loopback ports, and a
# second nutcracker (nutcracker-again) whose ratio to the first is the
# run's noise floor, runs redis-benchmark and bench/loadgen against each
# target, printing every command before it runs, and ends with markdown
# tables (paste them into bench/RESULTS.md). Only loopback addresses are used. Everything it started
# is stopped on exit.
#
# Environment (defaults in brackets):
#   BENCH_REQUESTS    requests per redis-benchmark test [100000]
#   BENCH_DURATION    duration of each loadgen run [5s]
#   BENCH_CLIENTS     redis-benchmark clients and loadgen connections [50]
#   BENCH_PIPELINE    pipeline depth of the pipelined rows [16]
#   BENCH_KEYS        key space of both tools [100000]
#   BENCH_VALUE_SIZE  SET value size in bytes [64]
#   BENCH_ROUNDS      run every measurement this many times, reversing the
#                     order of the targets every round, and report medians [3]
#   SHARDPROXY_BIN    use this shardproxy binary instead of building ./cmd/shardproxy
#   SHARDPROXY_BASE_BIN  also run this shardproxy binary (say, a build of the
#                     commit before a change) as the target "baseline", so
#                     before and after are measured in one run
#   BENCH_SKIP_SHARDPROXY=1  leave shardproxy out (its columns show "-")
#   BENCH_GROUPS=1    also measure over Sentinel-watched groups, in the same
#                     rounds: three masters, each with one replica, three
#                     Sentinels watching all three, shardproxy with
#                     `sentinels:` over the groups, nutcracker over the three
#                     masters (it cannot follow Sentinel) and direct to
#                     master 1, and a second shardproxy over the groups with
#                     `read_from: prefer_replica`; adds tables comparing the
#                     ratios and the spread of its calls over the servers [0]
#   BENCH_OUT_DIR     also write the tables to that directory (relative to
#                     the repository root), after comment lines naming the
#                     run: throughput.tsv (workload, target, req_s,
#                     vs_nutcracker) and cpu.tsv (target, workload, cpu_us,
#                     vs_nutcracker), or with BENCH_GROUPS=1
#                     throughput-groups.tsv and cpu-groups.tsv, every target
#                     of the run in them; `go run ./bench/chart` draws them
#   BENCH_KEEP=1      keep the temporary directory with configs and logs
#
# The defaults take about 2-4 minutes on 2 cores (twice that with
# BENCH_GROUPS=1); for a quick check:
#   BENCH_REQUESTS=20000 BENCH_DURATION=2s BENCH_ROUNDS=1 bash bench/compare.sh
set -euo pipefail

REQUESTS=${BENCH_REQUESTS:-100000}
DURATION=${BENCH_DURATION:-5s}
CLIENTS=${BENCH_CLIENTS:-50}
PIPELINE=${BENCH_PIPELINE:-16}
KEYS=${BENCH_KEYS:-100000}
VALUE_SIZE=${BENCH_VALUE_SIZE:-64}
ROUNDS=${BENCH_ROUNDS:-3}
SKIP_SHARDPROXY=${BENCH_SKIP_SHARDPROXY:-0}
GROUPS_MODE=${BENCH_GROUPS:-0}
OUT_DIR=${BENCH_OUT_DIR:-}
KEEP=${BENCH_KEEP:-0}

cd "$(dirname "${BASH_SOURCE[0]}")/.."

BENCH_SCRIPT=compare.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

need_counts "$REQUESTS" "$CLIENTS" "$PIPELINE" "$KEYS" "$VALUE_SIZE" "$ROUNDS"

case "$GROUPS_MODE" in
0) ;;
1)
	[ "$SKIP_SHARDPROXY" != 1 ] || die "BENCH_GROUPS=1 measures shardproxy; it cannot be combined with BENCH_SKIP_SHARDPROXY=1"
	[ -z "${SHARDPROXY_BASE_BIN:-}" ] || die "BENCH_GROUPS=1 cannot be combined with SHARDPROXY_BASE_BIN"
	;;
*) die "BENCH_GROUPS must be 0 or 1, got \"$GROUPS_MODE\"" ;;
esac
need_out_dir

need_tools go redis-server redis-cli redis-benchmark nutcracker

bench_tmp shardproxy-bench

# write_conf LISTEN_PORT FILE NAME SERVER_PORTS [SENTINEL_PORTS [READ_FROM]]
# writes a pool of the servers at SERVER_PORTS (space-separated) named NAME1,
# NAME2, ...; with SENTINEL_PORTS, a pool whose servers are the groups those
# Sentinels watch, each NAMEi being its Sentinel master name, and with
# READ_FROM, that pool's read_from. The files of
# the two proxies over the same servers differ only in the listen address
# (and shardproxy's sentinels), so both proxies can run side by side and the
# workloads can alternate between them.
write_conf() {
	local listen=$1 file=$2 name=$3 i p
	local servers=($4) sentinels=(${5:-}) read_from=${6:-}
	{
		echo "bench:"
		echo "  listen: 127.0.0.1:$listen"
		echo "  hash: fnv1a_64"
		echo "  distribution: ketama"
		echo "  redis: true"
		if [ "${#sentinels[@]}" -gt 0 ]; then
			echo "  sentinels:"
			for p in "${sentinels[@]}"; do
				echo "   - 127.0.0.1:$p"
			done
		fi
		[ -z "$read_from" ] || echo "  read_from: $read_from"
		echo "  servers:"
		for i in "${!servers[@]}"; do
			echo "   - 127.0.0.1:${servers[$i]}:1 $name$((i + 1))"
		done
	} >"$file"
}

print_machine nutcracker
echo "NOTE: redis-benchmark and loadgen, both proxies and all 3 redis-servers share these $(nproc) CPUs."
echo "      The load generator's own CPU use caps every number; compare the ratios from one run."
echo "params:   BENCH_REQUESTS=$REQUESTS BENCH_DURATION=$DURATION BENCH_CLIENTS=$CLIENTS" \
	"BENCH_PIPELINE=$PIPELINE BENCH_KEYS=$KEYS BENCH_VALUE_SIZE=$VALUE_SIZE BENCH_ROUNDS=$ROUNDS"

echo
echo "== build"
run go build -o "$tmp/loadgen" ./bench/loadgen
shardproxy_bin=
if [ "$SKIP_SHARDPROXY" = 1 ]; then
	echo "BENCH_SKIP_SHARDPROXY=1: shardproxy left out"
elif [ -n "${SHARDPROXY_BIN:-}" ]; then
	shardproxy_bin=$SHARDPROXY_BIN
	[ -x "$shardproxy_bin" ] || die "SHARDPROXY_BIN=$shardproxy_bin is not an executable"
else
	run go build -o "$tmp/shardproxy" ./cmd/shardproxy ||
		die "building ./cmd/shardproxy failed (set BENCH_SKIP_SHARDPROXY=1 to compare only nutcracker and redis-server)"
	shardproxy_bin=$tmp/shardproxy
fi

base_bin=${SHARDPROXY_BASE_BIN:-}
if [ -n "$base_bin" ]; then
	[ -x "$base_bin" ] || die "SHARDPROXY_BASE_BIN=$base_bin is not an executable"
	[ -n "$shardproxy_bin" ] || die "SHARDPROXY_BASE_BIN needs shardproxy itself in the run"
fi

echo
echo "== servers"
declare -A redis_port
for i in 1 2 3; do
	free_port
	redis_port[$i]=$free
	mkdir -p "$tmp/redis$i"
	start "redis-server $i" "$free" "$tmp/redis$i.log" \
		redis-server --port "$free" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp/redis$i"
done

free_port
nc_port=$free
free_port
nc_stats=$free
single_ports="${redis_port[1]} ${redis_port[2]} ${redis_port[3]}"
write_conf "$nc_port" "$tmp/nutcracker.yml" redis "$single_ports"
start nutcracker "$nc_port" "$tmp/nutcracker.log" \
	nutcracker -c "$tmp/nutcracker.yml" -s "$nc_stats" -a 127.0.0.1 -o "$tmp/nutcracker.log"
declare -A pid_of=([nutcracker]=${pids[-1]})

# nutcracker-again is a second nutcracker over the same servers, measured
# like the others: its ratio to nutcracker is the run's noise floor, what a
# ratio looks like when nothing differs.
free_port
again_port=$free
free_port
again_stats=$free
write_conf "$again_port" "$tmp/nutcracker-again.yml" redis "$single_ports"
start nutcracker-again "$again_port" "$tmp/nutcracker-again.log" \
	nutcracker -c "$tmp/nutcracker-again.yml" -s "$again_stats" -a 127.0.0.1 -o "$tmp/nutcracker-again.log"
pid_of[nutcracker-again]=${pids[-1]}

targets=(nutcracker nutcracker-again direct)
declare -A port=([nutcracker]=$nc_port [nutcracker-again]=$again_port [direct]=${redis_port[1]})
if [ -n "$shardproxy_bin" ]; then
	free_port
	sp_port=$free
	free_port
	sp_stats=$free
	write_conf "$sp_port" "$tmp/shardproxy.yml" redis "$single_ports"
	start shardproxy "$sp_port" "$tmp/shardproxy.log" \
		"$shardproxy_bin" -c "$tmp/shardproxy.yml" -s "$sp_stats" -a 127.0.0.1
	pid_of[shardproxy]=${pids[-1]}
	targets=(shardproxy nutcracker nutcracker-again direct)
	port[shardproxy]=$sp_port
fi
if [ -n "$base_bin" ]; then
	free_port
	port[baseline]=$free
	free_port
	base_stats=$free
	write_conf "${port[baseline]}" "$tmp/baseline.yml" redis "$single_ports"
	start baseline "${port[baseline]}" "$tmp/baseline.log" \
		"$base_bin" -c "$tmp/baseline.yml" -s "$base_stats" -a 127.0.0.1
	pid_of[baseline]=${pids[-1]}
	targets=(shardproxy baseline nutcracker nutcracker-again direct)
fi
echo "pool: $tmp/nutcracker.yml"
cat "$tmp/nutcracker.yml"

# wait_replica PORT waits until the replica on PORT has its link to its
# master up and the first sync done.
wait_replica() {
	local port=$1 i
	for i in $(seq 100); do
		if redis-cli -h 127.0.0.1 -p "$port" info replication | tr -d '\r' |
			grep -q '^master_link_status:up$'; then
			return 0
		fi
		sleep 0.1
	done
	die "the replica on 127.0.0.1:$port has no link to its master after 10s"
}

# write_sentinel_conf PORT FILE writes the configuration of a Sentinel
# monitoring the three masters with quorum 2, with the short down-after and
# failover timeouts the proxy's tests use. Sentinel rewrites the file.
write_sentinel_conf() {
	local port=$1 file=$2 g
	{
		echo "port $port"
		echo "bind 127.0.0.1"
		echo "protected-mode no"
		echo "daemonize no"
		echo "dir $(dirname "$file")"
		for g in 1 2 3; do
			echo "sentinel monitor group$g 127.0.0.1 ${master_port[$g]} 2"
			echo "sentinel down-after-milliseconds group$g 1000"
			echo "sentinel failover-timeout group$g 3000"
			echo "sentinel parallel-syncs group$g 1"
		done
	} >"$file"
}

# wait_groups TARGET STATS_PORT REGEX WHAT waits until the /metrics on
# STATS_PORT of the shardproxy TARGET has a line matching REGEX for each of
# the three groups; WHAT says in the error what did not happen.
wait_groups() {
	local target=$1 stats=$2 regex=$3 what=$4 i n=0
	for i in $(seq 300); do
		n=$(curl -fsS "http://127.0.0.1:$stats/metrics" 2>/dev/null | grep -c "$regex" || true)
		[ "$n" = 3 ] && return 0
		kill -0 "${pid_of[$target]}" 2>/dev/null || break
		sleep 0.1
	done
	tail -n 20 "$tmp/$target.log" >&2 || true
	die "$target $what in $n of 3 groups after 30s"
}

# wait_confirmed TARGET STATS_PORT waits until that shardproxy says that ROLE
# confirmed the master of each of the three groups, so that no measurement
# runs while a group's requests still fail.
wait_confirmed() {
	wait_groups "$1" "$2" '^shardproxy_group_confirmed{.*} 1$' "confirmed the master"
}

# wait_read_replicas TARGET STATS_PORT waits until that shardproxy has a
# replica taking reads in each of the three groups.
wait_read_replicas() {
	wait_groups "$1" "$2" '^shardproxy_group_read_replicas{.*} [1-9][0-9]*$' "has a replica taking reads"
}

# start_shardproxy_groups TARGET [READ_FROM] starts shardproxy over the three
# groups as TARGET, with READ_FROM as its pool's read_from, and waits until it
# has confirmed the three masters.
start_shardproxy_groups() {
	local target=$1 read_from=${2:-} stats
	free_port
	port[$target]=$free
	free_port
	stats=$free
	stats_port[$target]=$stats
	write_conf "${port[$target]}" "$tmp/$target.yml" group "$master_ports" "$sentinel_ports" "$read_from"
	start "$target" "${port[$target]}" "$tmp/$target.log" \
		"$shardproxy_bin" -c "$tmp/$target.yml" -s "$stats" -a 127.0.0.1
	pid_of[$target]=${pids[-1]}
	wait_confirmed "$target" "$stats"
	echo "$target confirmed the three masters:"
	curl -fsS "http://127.0.0.1:$stats/metrics" | grep '^shardproxy_group_\(confirmed\|master_info\)'
	echo "pool: $tmp/$target.yml"
	cat "$tmp/$target.yml"
}

if [ "$GROUPS_MODE" = 1 ]; then
	command -v curl >/dev/null || die "curl is not installed (BENCH_GROUPS=1 reads shardproxy's /metrics)"
	echo
	echo "== groups (a master and a replica each, three Sentinels)"
	declare -A master_port replica_port
	for g in 1 2 3; do
		free_port
		master_port[$g]=$free
		mkdir -p "$tmp/group$g-master" "$tmp/group$g-replica"
		start "master $g" "$free" "$tmp/group$g-master.log" \
			redis-server --port "$free" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp/group$g-master"
		free_port
		replica_port[$g]=$free
		start "replica $g" "$free" "$tmp/group$g-replica.log" \
			redis-server --port "$free" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp/group$g-replica" \
			--replicaof 127.0.0.1 "${master_port[$g]}"
	done
	for g in 1 2 3; do
		wait_replica "${replica_port[$g]}"
	done
	sentinel_ports=
	for s in 1 2 3; do
		free_port
		sentinel_ports+="${sentinel_ports:+ }$free"
		mkdir -p "$tmp/sentinel$s"
		write_sentinel_conf "$free" "$tmp/sentinel$s/sentinel.conf"
		if [ "$s" = 1 ]; then
			echo "sentinel 1: $tmp/sentinel1/sentinel.conf (the others differ only in port and dir)"
			cat "$tmp/sentinel1/sentinel.conf"
		fi
		start "sentinel $s" "$free" "$tmp/sentinel$s.log" \
			redis-server "$tmp/sentinel$s/sentinel.conf" --sentinel
	done
	master_ports="${master_port[1]} ${master_port[2]} ${master_port[3]}"

	free_port
	port[nutcracker-groups]=$free
	free_port
	nc_groups_stats=$free
	write_conf "${port[nutcracker-groups]}" "$tmp/nutcracker-groups.yml" group "$master_ports"
	start nutcracker-groups "${port[nutcracker-groups]}" "$tmp/nutcracker-groups.log" \
		nutcracker -c "$tmp/nutcracker-groups.yml" -s "$nc_groups_stats" -a 127.0.0.1 \
		-o "$tmp/nutcracker-groups.log"
	pid_of[nutcracker-groups]=${pids[-1]}

	declare -A stats_port
	start_shardproxy_groups shardproxy-groups
	start_shardproxy_groups shardproxy-replicas prefer_replica
	wait_read_replicas shardproxy-replicas "${stats_port[shardproxy-replicas]}"
	echo "shardproxy-replicas has replicas taking reads:"
	curl -fsS "http://127.0.0.1:${stats_port[shardproxy-replicas]}/metrics" | grep '^shardproxy_group_read_replicas'

	port[direct-groups]=${master_port[1]}
	targets+=(shardproxy-groups shardproxy-replicas nutcracker-groups direct-groups)
fi

# Results: rps[workload/target] is the requests per second of each round,
# space-separated, "error" for a failed one; label_of[workload] is its row
# title.
declare -A rps label_of
workloads=()
failures=0

add_workload() {
	local id=$1 label=$2
	if [ -z "${label_of[$id]:-}" ]; then
		workloads+=("$id")
		label_of[$id]=$label
	fi
}


# proc_ticks TARGET prints the CPU time (user and system, in clock ticks)
# that the target's process has used, or nothing for a target that is not
# a proxy.
proc_ticks() {
	local pid=${pid_of[$1]:-}
	[ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 0
	sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }'
}

# cpu[KEY] holds each round's CPU microseconds per request of a proxy.
declare -A cpu
hz=$(getconf CLK_TCK 2>/dev/null || echo 100)

# The spread of shardproxy-replicas' requests over the groups' servers:
# spread[NODE] is "GET calls, SET calls, SET calls rejected" summed over its
# runs, each the difference of the server's INFO commandstats before and
# after the run, so the other targets' requests are not counted.
declare -A spread spread_before
spread_nodes=()
if [ "$GROUPS_MODE" = 1 ]; then
	spread_nodes=("master 1" "replica 1" "master 2" "replica 2" "master 3" "replica 3")
fi

# node_port NODE prints the port of "master G" or "replica G".
node_port() {
	case "$1" in
	master*) echo "${master_port[${1#master }]}" ;;
	replica*) echo "${replica_port[${1#replica }]}" ;;
	esac
}

# node_calls PORT prints the GET calls, SET calls and SET calls rejected
# (a write a replica refuses) of the redis-server on PORT.
node_calls() {
	redis-cli -h 127.0.0.1 -p "$1" info commandstats | tr -d '\r' | awk -F'[:,=]' '
		function field(name, i) { for (i = 2; i < NF; i += 2) if ($i == name) return $(i + 1); return 0 }
		$1 == "cmdstat_get" { g = field("calls") }
		$1 == "cmdstat_set" { s = field("calls"); r = field("rejected_calls") }
		END { print g + 0, s + 0, r + 0 }'
}

# spread_begin TARGET and spread_end TARGET enclose a run; for
# shardproxy-replicas they add the run's calls on each server to spread.
spread_begin() {
	local node
	[ "$1" = shardproxy-replicas ] || return 0
	for node in "${spread_nodes[@]}"; do
		spread_before[$node]=$(node_calls "$(node_port "$node")")
	done
}
spread_end() {
	local node
	[ "$1" = shardproxy-replicas ] || return 0
	for node in "${spread_nodes[@]}"; do
		spread[$node]=$(awk -v sum="${spread[$node]:-0 0 0}" -v b="${spread_before[$node]}" \
			-v a="$(node_calls "$(node_port "$node")")" 'BEGIN {
				split(sum, t, " "); split(b, x, " "); split(a, y, " ")
				for (i = 1; i <= 3; i++) printf "%s%d", (i > 1 ? " " : ""), t[i] + y[i] - x[i]
			}')
	done
}

# redis_benchmark DEPTH runs redis-benchmark SET and GET at pipeline DEPTH
# against every target.
redis_benchmark() {
	local depth=$1 target out kind
	add_workload "rb-set-$depth" "redis-benchmark SET, $CLIENTS clients, pipeline $depth"
	add_workload "rb-get-$depth" "redis-benchmark GET, $CLIENTS clients, pipeline $depth"
	for target in "${targets[@]}"; do
		echo
		echo "-- $target: redis-benchmark, pipeline $depth"
		out=$tmp/rb-$depth-$target.csv
		local before after
		before=$(proc_ticks "$target")
		spread_begin "$target"
		if ! run_to "$out" redis-benchmark -h 127.0.0.1 -p "${port[$target]}" -c "$CLIENTS" -n "$REQUESTS" \
			-r "$KEYS" -d "$VALUE_SIZE" -P "$depth" -t set,get --csv; then
			echo "!! redis-benchmark against $target failed"
		fi
		after=$(proc_ticks "$target")
		spread_end "$target"
		if [ -n "$before" ] && [ -n "$after" ]; then
			cpu[rb-$depth/$target]="${cpu[rb-$depth/$target]:-}${cpu[rb-$depth/$target]:+ }$(awk -v t="$((after - before))" \
				-v hz="$hz" -v n="$((2 * REQUESTS))" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }')"
		fi
		for kind in SET GET; do
			local v
			v=$(awk -F'"' -v t="$kind" '$2 == t {print $4}' "$out")
			if [ -z "$v" ]; then
				v=error
				failures=$((failures + 1))
			fi
			record rps "rb-${kind,,}-$depth/$target" "$v"
		done
	done
}

# loadgen DEPTH runs bench/loadgen, 80% GET / 20% SET over zipf keys, at
# pipeline DEPTH against every target. The timeout is long because on a
# shared machine a stall of seconds is the machine, not the proxy; stalls
# still show in the p999 that loadgen prints.
loadgen() {
	local depth=$1 target out v
	add_workload "lg-$depth" "loadgen 80/20 GET/SET zipf, $CLIENTS conns, pipeline $depth"
	for target in "${targets[@]}"; do
		echo
		echo "-- $target: loadgen, pipeline $depth"
		out=$tmp/lg-$depth-$target.json
		spread_begin "$target"
		if ! run_to "$out" "$tmp/loadgen" --addr "127.0.0.1:${port[$target]}" --connections "$CLIENTS" \
			--pipeline "$depth" --keys "$KEYS" --dist zipf --read-ratio 0.8 --value-size "$VALUE_SIZE" \
			--duration "$DURATION" --timeout 10s --warmup --json; then
			spread_end "$target"
			echo "!! loadgen against $target failed"
			record rps "lg-$depth/$target" error
			failures=$((failures + 1))
			continue
		fi
		spread_end "$target"
		v=$(sed -n 's/.*"rps":\([0-9]*\).*/\1/p' "$out")
		record rps "lg-$depth/$target" "${v:-error}"
	done
}

# steal prints the CPU time, in ticks, that the hypervisor has given to
# other machines (0 where there is none to read).
steal() {
	awk '/^cpu / { print $9 + 0; exit }' /proc/stat 2>/dev/null || echo 0
}
# cpu_ticks prints all CPU time so far, in ticks, stolen time included.
cpu_ticks() {
	awk '/^cpu / { t = 0; for (i = 2; i <= 9; i++) t += $i; print t; exit }' /proc/stat 2>/dev/null || echo 0
}
steal_start=$(steal)
ticks_start=$(cpu_ticks)

echo
echo "== benchmarks (targets: ${targets[*]}; direct = redis-server 1 alone${master_ports:+, direct-groups = master 1 alone})"
forward=("${targets[@]}")
for round in $(seq "$ROUNDS"); do
	# Reverse the order every round, so that neither proxy always runs
	# right after the other.
	targets=()
	if [ $((round % 2)) = 1 ]; then
		targets=("${forward[@]}")
	else
		for ((i = ${#forward[@]} - 1; i >= 0; i--)); do targets+=("${forward[$i]}"); done
	fi
	if [ "$ROUNDS" -gt 1 ]; then
		echo
		echo "== round $round of $ROUNDS (order: ${targets[*]})"
	fi
	redis_benchmark 1
	redis_benchmark "$PIPELINE"
	loadgen 1
	loadgen "$PIPELINE"
done

# ratio_rounds prints each round's shardproxy/nutcracker, space-separated,
# or nothing if the rounds do not pair up.
ratio_rounds() {
	local sp=($1) nc=($2) i r=""
	if [ "${#sp[@]}" = 0 ] || [ "${#sp[@]}" != "${#nc[@]}" ]; then
		return
	fi
	for i in "${!sp[@]}"; do
		r+=" $(awk -v a="${sp[$i]}" -v b="${nc[$i]}" 'BEGIN {
			if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) print a / b; else print "error" }')"
	done
	echo "${r# }"
}

# ratio_median prints the median over rounds of shardproxy/nutcracker, each
# round's pair measured minutes apart at most: steadier on a noisy machine
# than the ratio of the two medians.
ratio_median() {
	median "$(ratio_rounds "$1" "$2")"
}

# ratio_cell prints ratio_median to two decimals, or "-"/"error" as it is.
ratio_cell() {
	local r
	r=$(ratio_median "$1" "$2")
	case "$r" in
	- | error) echo "$r" ;;
	*) awk -v r="$r" 'BEGIN { printf "%.2f", r }' ;;
	esac
}

# cell prints a table cell: a rate rounded to a whole number, or "-".
cell() {
	case "$1" in
	"" | -) echo "-" ;;
	error) echo "error" ;;
	*) awk -v v="$1" 'BEGIN { printf "%.0f", v }' ;;
	esac
}

stolen=$(awk -v s="$(($(steal) - steal_start))" -v t="$(($(cpu_ticks) - ticks_start))" \
	'BEGIN { if (t > 0) printf "%.1f%%", 100 * s / t; else print "unknown" }')
echo
echo "== results ($(nproc) CPUs shared by load generators and servers; median of $ROUNDS round(s);" \
	"load avg at end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown);" \
	"CPU time stolen by the hypervisor: $stolen)"
echo "Each ratio column is the median of each round's ratio to nutcracker."
echo
# print_tables SUFFIX prints the throughput and CPU tables of the targets
# shardproxy, nutcracker and direct, each name followed by SUFFIX.
print_tables() {
	local sfx=$1 id depth sp nc dr bl ratio bratio noise
	# The baseline's columns appear only when SHARDPROXY_BASE_BIN was given;
	# the noise floor (nutcracker-again/nutcracker) only over single servers.
	if [ -n "$base_bin" ]; then
		echo "| workload | shardproxy req/s | baseline req/s | nutcracker req/s | direct redis req/s | shardproxy/nutcracker | baseline/nutcracker | noise: nutcracker/nutcracker |"
		echo "|---|---:|---:|---:|---:|---:|---:|---:|"
	else
		echo "| workload | shardproxy req/s | nutcracker req/s | direct redis req/s | shardproxy/nutcracker | noise: nutcracker/nutcracker |"
		echo "|---|---:|---:|---:|---:|---:|"
	fi
	for id in "${workloads[@]}"; do
		sp=$(median "${rps[$id/shardproxy$sfx]:-}")
		nc=$(median "${rps[$id/nutcracker$sfx]:-}")
		dr=$(median "${rps[$id/direct$sfx]:-}")
		ratio=$(ratio_cell "${rps[$id/shardproxy$sfx]:-}" "${rps[$id/nutcracker$sfx]:-}")
		noise=$(ratio_cell "${rps[$id/nutcracker-again$sfx]:-}" "${rps[$id/nutcracker$sfx]:-}")
		if [ -n "$base_bin" ]; then
			bl=$(median "${rps[$id/baseline]:-}")
			bratio=$(ratio_cell "${rps[$id/baseline]:-}" "${rps[$id/nutcracker$sfx]:-}")
			echo "| ${label_of[$id]} | $(cell "$sp") | $(cell "$bl") | $(cell "$nc") | $(cell "$dr") | $ratio | $bratio | $noise |"
		else
			echo "| ${label_of[$id]} | $(cell "$sp") | $(cell "$nc") | $(cell "$dr") | $ratio | $noise |"
		fi
	done
	echo
	echo "CPU time of each proxy process per request over each redis-benchmark run (SET and GET),"
	echo "in microseconds (/proc/<pid>/stat user+system; a tick is $((1000000 / hz)) us):"
	echo
	if [ -n "$base_bin" ]; then
		echo "| workload | shardproxy CPU us/request | baseline CPU us/request | nutcracker CPU us/request | shardproxy/nutcracker | baseline/nutcracker | noise: nutcracker/nutcracker |"
		echo "|---|---:|---:|---:|---:|---:|---:|"
	else
		echo "| workload | shardproxy CPU us/request | nutcracker CPU us/request | shardproxy/nutcracker | noise: nutcracker/nutcracker |"
		echo "|---|---:|---:|---:|---:|"
	fi
	for depth in 1 "$PIPELINE"; do
		sp=$(median "${cpu[rb-$depth/shardproxy$sfx]:-}")
		nc=$(median "${cpu[rb-$depth/nutcracker$sfx]:-}")
		ratio=$(ratio_cell "${cpu[rb-$depth/shardproxy$sfx]:-}" "${cpu[rb-$depth/nutcracker$sfx]:-}")
		noise=$(ratio_cell "${cpu[rb-$depth/nutcracker-again$sfx]:-}" "${cpu[rb-$depth/nutcracker$sfx]:-}")
		if [ -n "$base_bin" ]; then
			bl=$(median "${cpu[rb-$depth/baseline]:-}")
			bratio=$(ratio_cell "${cpu[rb-$depth/baseline]:-}" "${cpu[rb-$depth/nutcracker$sfx]:-}")
			echo "| redis-benchmark SET+GET, $CLIENTS clients, pipeline $depth | $sp | $bl | $nc | $ratio | $bratio | $noise |"
		else
			echo "| redis-benchmark SET+GET, $CLIENTS clients, pipeline $depth | $sp | $nc | $ratio | $noise |"
		fi
	done
	echo
}

# print_replicas_tables prints the throughput and CPU of shardproxy-replicas
# (read_from: prefer_replica) next to nutcracker-groups and shardproxy-groups,
# then how its requests spread over the groups' servers.
print_replicas_tables() {
	local id depth rr nc node calls
	echo "| workload | shardproxy prefer_replica req/s | nutcracker req/s | prefer_replica/nutcracker | shardproxy (reads on masters)/nutcracker |"
	echo "|---|---:|---:|---:|---:|"
	for id in "${workloads[@]}"; do
		rr=$(median "${rps[$id/shardproxy-replicas]:-}")
		nc=$(median "${rps[$id/nutcracker-groups]:-}")
		echo "| ${label_of[$id]} | $(cell "$rr") | $(cell "$nc")" \
			"| $(ratio_cell "${rps[$id/shardproxy-replicas]:-}" "${rps[$id/nutcracker-groups]:-}")" \
			"| $(ratio_cell "${rps[$id/shardproxy-groups]:-}" "${rps[$id/nutcracker-groups]:-}") |"
	done
	echo
	echo "| workload | shardproxy prefer_replica CPU us/request | nutcracker CPU us/request | prefer_replica/nutcracker | shardproxy (reads on masters)/nutcracker |"
	echo "|---|---:|---:|---:|---:|"
	for depth in 1 "$PIPELINE"; do
		echo "| redis-benchmark SET+GET, $CLIENTS clients, pipeline $depth" \
			"| $(median "${cpu[rb-$depth/shardproxy-replicas]:-}") | $(median "${cpu[rb-$depth/nutcracker-groups]:-}")" \
			"| $(ratio_cell "${cpu[rb-$depth/shardproxy-replicas]:-}" "${cpu[rb-$depth/nutcracker-groups]:-}")" \
			"| $(ratio_cell "${cpu[rb-$depth/shardproxy-groups]:-}" "${cpu[rb-$depth/nutcracker-groups]:-}") |"
	done
	echo
	echo "Calls on each server during the prefer_replica runs only, summed over all rounds"
	echo "(INFO commandstats before and after each run; a replica's SETs are its master's,"
	echo "replicated; a SET sent to a replica would be rejected with READONLY):"
	echo
	echo "| server | GET calls | SET calls | SET calls rejected |"
	echo "|---|---:|---:|---:|"
	for node in "${spread_nodes[@]}"; do
		calls=(${spread[$node]:-- - -})
		echo "| $node (127.0.0.1:$(node_port "$node")) | ${calls[0]} | ${calls[1]} | ${calls[2]} |"
	done
	echo
}

# ratio_pair_cell prints the median of the rounds' ratios, then the rounds'
# ratios in brackets.
ratio_pair_cell() {
	local rounds
	rounds=$(ratio_rounds "$1" "$2")
	printf '%s (%s)' "$(ratio_cell "$1" "$2")" \
		"$(for r in $rounds; do awk -v r="$r" 'BEGIN { if (r ~ /^[0-9.]+$/) printf "%.2f\n", r; else print r }'; done | paste -sd ' ')"
}

# groups_over_servers prints the median over rounds of each round's ratio
# over groups divided by its ratio over single servers.
groups_over_servers() {
	local single=($(ratio_rounds "$1" "$2")) grouped=($(ratio_rounds "$3" "$4")) i q=""
	for i in "${!single[@]}"; do
		q+=" $(awk -v a="${grouped[$i]:-}" -v b="${single[$i]}" 'BEGIN {
			if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) print a / b; else print "error" }')"
	done
	local m
	m=$(median "${q# }")
	case "$m" in
	- | error) echo "$m" ;;
	*) awk -v r="$m" 'BEGIN { printf "%.2f", r }' ;;
	esac
}

if [ "$GROUPS_MODE" = 1 ]; then
	echo "Over three single redis-servers:"
	echo
fi
print_tables ""
if [ "$GROUPS_MODE" = 1 ]; then
	echo "Over three Sentinel-watched groups, a master and a replica each (shardproxy follows"
	echo "the Sentinels, nutcracker is given the three masters, direct is master 1):"
	echo
	print_tables -groups
	echo "shardproxy/nutcracker over single servers and over groups: the median, then each"
	echo "round's ratio; groups/servers is the median of each round's quotient of the two:"
	echo
	echo "| workload | over servers | over groups | groups/servers |"
	echo "|---|---:|---:|---:|"
	for id in "${workloads[@]}"; do
		echo "| ${label_of[$id]}" \
			"| $(ratio_pair_cell "${rps[$id/shardproxy]:-}" "${rps[$id/nutcracker]:-}")" \
			"| $(ratio_pair_cell "${rps[$id/shardproxy-groups]:-}" "${rps[$id/nutcracker-groups]:-}")" \
			"| $(groups_over_servers "${rps[$id/shardproxy]:-}" "${rps[$id/nutcracker]:-}" \
				"${rps[$id/shardproxy-groups]:-}" "${rps[$id/nutcracker-groups]:-}") |"
	done
	for depth in 1 "$PIPELINE"; do
		echo "| CPU us/request, redis-benchmark SET+GET, pipeline $depth" \
			"| $(ratio_pair_cell "${cpu[rb-$depth/shardproxy]:-}" "${cpu[rb-$depth/nutcracker]:-}")" \
			"| $(ratio_pair_cell "${cpu[rb-$depth/shardproxy-groups]:-}" "${cpu[rb-$depth/nutcracker-groups]:-}")" \
			"| $(groups_over_servers "${cpu[rb-$depth/shardproxy]:-}" "${cpu[rb-$depth/nutcracker]:-}" \
				"${cpu[rb-$depth/shardproxy-groups]:-}" "${cpu[rb-$depth/nutcracker-groups]:-}") |"
	done
	echo
	echo "Over the same groups, a second shardproxy with read_from: prefer_replica (reads go to"
	echo "the replicas; the other shardproxy columns above send them to the masters):"
	echo
	print_replicas_tables
fi

# reference_of TARGET prints the nutcracker its ratios are taken to: the one
# over the groups for the targets over the groups.
reference_of() {
	case "$1" in
	*-groups | shardproxy-replicas) echo nutcracker-groups ;;
	*) echo nutcracker ;;
	esac
}

# write_tsvs writes the throughput and CPU of every target, the medians and
# ratios of the tables above, to $OUT_DIR, the files of a BENCH_GROUPS=1 run
# named apart so that both runs of `make bench` keep theirs.
write_tsvs() {
	local sfx="" id target ref depth
	[ "$GROUPS_MODE" = 0 ] || sfx=-groups
	tsv_params="BENCH_REQUESTS=$REQUESTS BENCH_DURATION=$DURATION BENCH_CLIENTS=$CLIENTS BENCH_PIPELINE=$PIPELINE BENCH_ROUNDS=$ROUNDS"
	tsv_header "$OUT_DIR/throughput$sfx.tsv" workload target req_s vs_nutcracker
	for id in "${workloads[@]}"; do
		for target in "${forward[@]}"; do
			ref=$(reference_of "$target")
			printf '%s\t%s\t%s\t%s\n' "${label_of[$id]}" "$target" "$(cell "$(median "${rps[$id/$target]:-}")")" \
				"$(ratio_cell "${rps[$id/$target]:-}" "${rps[$id/$ref]:-}")"
		done
	done >>"$OUT_DIR/throughput$sfx.tsv"
	tsv_header "$OUT_DIR/cpu$sfx.tsv" target workload cpu_us vs_nutcracker
	for target in "${forward[@]}"; do
		[ -n "${pid_of[$target]:-}" ] || continue
		ref=$(reference_of "$target")
		for depth in 1 "$PIPELINE"; do
			printf '%s\t%s\t%s\t%s\n' "$target" "redis-benchmark SET+GET, $CLIENTS clients, pipeline $depth" \
				"$(median "${cpu[rb-$depth/$target]:-}")" \
				"$(ratio_cell "${cpu[rb-$depth/$target]:-}" "${cpu[rb-$depth/$ref]:-}")"
		done
	done >>"$OUT_DIR/cpu$sfx.tsv"
	echo "tables written to $OUT_DIR/throughput$sfx.tsv and $OUT_DIR/cpu$sfx.tsv"
}

[ -z "$OUT_DIR" ] || write_tsvs
echo "total time: ${SECONDS}s"
if [ "$failures" -gt 0 ]; then
	die "$failures measurement(s) failed; see the output above"
fi
