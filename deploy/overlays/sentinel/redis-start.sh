#!/bin/sh
# Starts a group's Redis: as its master, or as a replica of the master the
# Sentinels name. The group is the StatefulSet: the pod's name less its
# ordinal. Each pod announces its stable name (pod.redis), so Sentinel
# reports hostnames that survive a new pod IP.
set -eu
pod=$(hostname)
group=${pod%-*}
self="$pod.redis"
# A running group's master, as the Sentinels know it; nothing on first start.
master=$(redis-cli -h sentinel -p 26379 --raw SENTINEL GET-MASTER-ADDR-BY-NAME "$group" 2>/dev/null | head -n 1 || true)
if [ -z "$master" ]; then
  if [ "${pod##*-}" = 0 ]; then master=$self; else master="$group-0.redis"; fi
fi
set -- redis-server --port 6379 --dir /data --appendonly yes \
  --requirepass "$REDIS_PASSWORD" --masterauth "$REDIS_PASSWORD" \
  --replica-announce-ip "$self"
if [ "$master" != "$self" ]; then
  set -- "$@" --replicaof "$master" 6379
fi
exec "$@"
