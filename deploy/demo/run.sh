#!/usr/bin/env bash
# Starts the demo: three redis-servers on 127.0.0.1:7001-7003 and shardproxy
# on 127.0.0.1:22121 (stats on 127.0.0.1:22222). Ctrl-C stops everything.
set -euo pipefail
bin=${1:-bin/shardproxy}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM
for port in 7001 7002 7003; do
	mkdir -p "$work/$port"
	redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
		--dir "$work/$port" --logfile "$work/$port/redis.log" &
	pids+=($!)
done
for port in 7001 7002 7003; do
	for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
echo "redis-servers on 127.0.0.1:7001-7003; shardproxy on 127.0.0.1:22121 (try: redis-cli -p 22121)"
echo "stats: curl -s 127.0.0.1:22222/  |  metrics: curl -s 127.0.0.1:22222/metrics"
"$bin" -c "$here/nutcracker.yml" -a 127.0.0.1 -s 22222 &
pids+=($!)
wait "${pids[-1]}"
