# lib.sh: what the benchmark scripts share. Sourced, not run:
#
#   BENCH_SCRIPT=compare.sh KEEP=$BENCH_KEEP
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   bench_tmp shardproxy-bench    # the temporary directory $tmp, cleaned up at exit
#
# It gives die, need_counts, need_tools, need_fds, print_machine, show, run,
# run_to, free_port, start (a server that answers PING, stopped at exit),
# start_redis_servers, write_pool_conf, start_pool_proxy, shardproxy_binary,
# record, median, median_ratio, need_out_dir and tsv_header. Every process started
# with start, or whose pid is added to pids, is stopped when the script
# exits.

# die prints an error naming the script and exits 1.
die() {
	echo "${BENCH_SCRIPT:-bench}: $*" >&2
	exit 1
}

# need_counts dies unless every argument is a positive integer (the BENCH_*
# counts).
need_counts() {
	local n
	for n in "$@"; do
		if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -eq 0 ]; then
			die "BENCH_* counts must be positive integers, got \"$n\""
		fi
	done
}

# need_tools dies unless every command named is installed.
need_tools() {
	local tool
	for tool in "$@"; do
		command -v "$tool" >/dev/null || die "$tool is not installed"
	done
}

# need_fds raises the open file limit to $1, or dies if it cannot.
need_fds() {
	if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$1" ]; then
		ulimit -n "$1" 2>/dev/null || die "ulimit -n is $(ulimit -n); $1 file descriptors are needed"
	fi
}

# print_machine prints the "== machine" header: date, CPUs, memory, load
# and the versions of redis-server, go and the tools given as arguments
# (each printed by "TOOL -V").
print_machine() {
	local cpu_model mem_total tools tool
	cpu_model=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | sed -n 1p)
	mem_total=$(free -h 2>/dev/null | awk '/^Mem:/ {print $2}')
	tools="$(redis-server --version | cut -d' ' -f1-3)"
	# sed -n 1p, not head: head exits after its line, and the writer's
	# SIGPIPE (nutcracker -V prints three) would end the script under
	# pipefail.
	for tool in "$@"; do
		tools="$tools, $("$tool" -V 2>&1 | sed -n 1p)"
	done
	echo "== machine"
	echo "date:     $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "cpus:     $(nproc) x ${cpu_model:-unknown}"
	echo "memory:   ${mem_total:-unknown}"
	echo "load avg: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown) (at start)"
	echo "tools:    $tools, $(go version | cut -d' ' -f3)"
}

pids=()
tmp=

# bench_tmp makes the temporary directory $tmp (named after $1) for configs
# and logs, and sets the traps that clean up at exit.
bench_tmp() {
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# cleanup stops, by pid, every process this script started, then removes
# $tmp, or keeps it when KEEP is 1.
cleanup() {
	local rc=$? pid i
	trap - EXIT INT TERM
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for i in $(seq 50); do
		local alive=0
		for pid in "${pids[@]}"; do
			if kill -0 "$pid" 2>/dev/null; then alive=1; fi
		done
		[ "$alive" = 0 ] && break
		sleep 0.1
	done
	for pid in "${pids[@]}"; do
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [ -n "$tmp" ]; then
		if [ "${KEEP:-0}" = 1 ]; then
			echo "configs and logs kept in $tmp"
		else
			rm -rf "$tmp"
		fi
	fi
	exit "$rc"
}

# show_words prints a command line without its end, quoting only the words
# that need it; show prints the whole line.
show_words() {
	local arg
	printf '+'
	for arg in "$@"; do
		if [[ $arg =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
			printf ' %s' "$arg"
		else
			printf ' %q' "$arg"
		fi
	done
}

show() {
	show_words "$@"
	printf '\n'
}

# run prints a command, then runs it.
run() {
	show "$@"
	"$@"
}

# run_to prints a command, then runs it with its stdout shown and saved in $1.
run_to() {
	local out=$1
	shift
	show "$@"
	"$@" | tee "$out"
}

# free_port sets $free to a loopback port that nothing listens on and that
# this script has not handed out yet.
used_ports=" "
free=
free_port() {
	local p i
	for i in $(seq 200); do
		p=$((20000 + RANDOM % 12000)) # below Linux's ephemeral range
		case "$used_ports" in *" $p "*) continue ;; esac
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			used_ports+="$p "
			free=$p
			return 0
		fi
	done
	die "found no free loopback port"
}

# wait_ping NAME PID PORT LOG waits until PORT answers PING.
wait_ping() {
	local name=$1 pid=$2 port=$3 log=$4 i
	for i in $(seq 100); do
		if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ]; then
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 20 "$log" >&2 || true
			die "$name exited before answering PING on 127.0.0.1:$port"
		fi
		sleep 0.1
	done
	tail -n 20 "$log" >&2 || true
	die "$name does not answer PING on 127.0.0.1:$port after 10s"
}

# start NAME PORT LOG COMMAND... starts a server in the background, its
# output appended to LOG, and waits for it to answer PING.
start() {
	local name=$1 port=$2 log=$3
	shift 3
	show_words "$@"
	printf ' >>%q 2>&1 &\n' "$log"
	"$@" >>"$log" 2>&1 &
	pids+=("$!")
	wait_ping "$name" "$!" "$port" "$log"
}

# median prints the median of the space-separated numbers in $1, "-" for
# none and "error" if one of them is.
median() {
	case " $1 " in
	"  ") echo "-" ;;
	*" error "*) echo error ;;
	*) tr ' ' '\n' <<<"$1" | sort -g |
		awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }' ;;
	esac
}

# start_redis_servers starts the three redis-servers most scripts measure
# over (no persistence), their ports in redis_ports.
start_redis_servers() {
	local i
	redis_ports=()
	for i in 1 2 3; do
		free_port
		redis_ports+=("$free")
		mkdir -p "$tmp/redis$i"
		start "redis-server $i" "$free" "$tmp/redis$i.log" \
			redis-server --port "$free" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp/redis$i"
	done
}

# write_pool_conf PORT FILE [EXTRA] writes the pool of start_redis_servers'
# servers (ketama over fnv1a_64, servers named redis1..3) listening on
# PORT, with the YAML lines EXTRA; the files of the proxies a script runs
# side by side differ only in that.
write_pool_conf() {
	{
		echo "bench:"
		echo "  listen: 127.0.0.1:$1"
		echo "  hash: fnv1a_64"
		echo "  distribution: ketama"
		echo "  redis: true"
		[ -n "${3:-}" ] && printf '%s\n' "$3"
		echo "  servers:"
		echo "   - 127.0.0.1:${redis_ports[0]}:1 redis1"
		echo "   - 127.0.0.1:${redis_ports[1]}:1 redis2"
		echo "   - 127.0.0.1:${redis_ports[2]}:1 redis3"
	} >"$2"
}

# start_pool_proxy TARGET BIN starts BIN (a shardproxy binary, or
# nutcracker) over write_pool_conf's pool as TARGET, on free ports: its
# listen port in port[TARGET], its pid in pid_of[TARGET], its config in
# $tmp/TARGET.yml and its log in $tmp/TARGET.log. The caller declares the
# associative arrays port and pid_of.
start_pool_proxy() {
	local target=$1 bin=$2 stats
	free_port
	port[$target]=$free
	free_port
	stats=$free
	write_pool_conf "${port[$target]}" "$tmp/$target.yml"
	if [ "$bin" = nutcracker ]; then
		start "$target" "${port[$target]}" "$tmp/$target.log" \
			nutcracker -c "$tmp/$target.yml" -s "$stats" -a 127.0.0.1 -o "$tmp/$target.log"
	else
		start "$target" "${port[$target]}" "$tmp/$target.log" \
			"$bin" -c "$tmp/$target.yml" -s "$stats" -a 127.0.0.1
	fi
	pid_of[$target]=${pids[-1]}
}

# shardproxy_binary sets $shardproxy_bin to $SHARDPROXY_BIN when set, after
# checking that it can run, or else builds ./cmd/shardproxy into $tmp.
shardproxy_binary() {
	if [ -n "${SHARDPROXY_BIN:-}" ]; then
		shardproxy_bin=$SHARDPROXY_BIN
		[ -x "$shardproxy_bin" ] || die "SHARDPROXY_BIN=$shardproxy_bin is not an executable"
	else
		run go build -o "$tmp/shardproxy" ./cmd/shardproxy
		shardproxy_bin=$tmp/shardproxy
	fi
}

# record ARRAY KEY VALUE appends one round's VALUE to ARRAY[KEY], an
# associative array of space-separated results.
record() {
	local -n into=$1
	into[$2]="${into[$2]:-}${into[$2]:+ }$3"
}

# median_ratio A B prints the median over rounds of A/B, to two decimals:
# A and B hold one result a round, space-separated, and each round's pair
# was measured minutes apart at most, so its ratio is steadier on a noisy
# machine than the ratio of the two medians.
median_ratio() {
	local a=($1) b=($2) i r=""
	for i in "${!a[@]}"; do
		r+=" $(awk -v a="${a[$i]}" -v b="${b[$i]:-}" 'BEGIN {
			if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a / b; else print "error" }')"
	done
	median "${r# }"
}

# need_out_dir makes the directory $OUT_DIR (BENCH_OUT_DIR, relative to the
# repository root), when it is set, or dies if it cannot: before the run,
# so that a run of minutes does not end without its tables.
need_out_dir() {
	[ -n "${OUT_DIR:-}" ] || return 0
	[ ! -e "$OUT_DIR" ] || [ -d "$OUT_DIR" ] || die "BENCH_OUT_DIR=$OUT_DIR is not a directory"
	mkdir -p "$OUT_DIR" 2>/dev/null || die "BENCH_OUT_DIR=$OUT_DIR cannot be made"
}

# tsv_header FILE COLUMN... starts the table FILE (replacing it) that a
# script writes into BENCH_OUT_DIR for bench/chart: comment lines
# "# KEY: VALUE" that name the run (date, machine, commit, and $tsv_params
# when set), then the column names, tab-separated. The rows follow, one a
# line, appended by the caller.
tsv_header() {
	local file=$1 cpu_model mem_total commit
	shift
	cpu_model=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | sed -n 1p)
	mem_total=$(free -h 2>/dev/null | awk '/^Mem:/ {print $2}')
	commit=$(git describe --always --dirty 2>/dev/null || echo unknown)
	[ -z "${SHARDPROXY_BIN:-}" ] || commit+=" (shardproxy: SHARDPROXY_BIN=$SHARDPROXY_BIN)"
	{
		echo "# date: $(date -u '+%Y-%m-%d %H:%M UTC')"
		echo "# machine: $(nproc) x ${cpu_model:-unknown}, ${mem_total:-unknown} memory"
		echo "# commit: $commit"
		[ -z "${tsv_params:-}" ] || echo "# params: $tsv_params"
		local IFS=$'\t'
		echo "$*"
	} >"$file"
}
