#!/bin/sh
# Writes a Sentinel's configuration and starts it. A Sentinel that joins
# running groups monitors each group's master as the other Sentinels know
# it; on first start, pod 0 of each group. Sentinel rewrites the file, so
# it lives on an emptyDir, SENTINEL_DIR (default /sentinel).
set -eu
dir=${SENTINEL_DIR:-/sentinel}
conf=$dir/sentinel.conf
{
  echo "port 26379"
  echo "dir $dir"
  echo "sentinel resolve-hostnames yes"
  echo "sentinel announce-hostnames yes"
  for group in $SENTINEL_GROUPS; do
    master=$(redis-cli -h sentinel -p 26379 --raw SENTINEL GET-MASTER-ADDR-BY-NAME "$group" 2>/dev/null | head -n 1 || true)
    [ -n "$master" ] || master="$group-0.redis"
    # Sentinel refuses a master hostname it cannot resolve yet (the pod
    # has no address until it is scheduled).
    until getent hosts "$master" >/dev/null; do sleep 1; done
    echo "sentinel monitor $group $master 6379 2"
    echo "sentinel auth-pass $group $REDIS_PASSWORD"
    echo "sentinel down-after-milliseconds $group 5000"
    echo "sentinel failover-timeout $group 60000"
    echo "sentinel parallel-syncs $group 1"
  done
} > "$conf"
exec redis-server "$conf" --sentinel
