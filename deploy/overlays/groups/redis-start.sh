#!/bin/sh
# Starts a group's Redis without Sentinel: as a replica of the peer that
# says it is the master, or, when none does (a first start), pod 0 as the
# master and the others as its replicas. Asking first is what keeps a pod 0
# that restarts after a replica was promoted from coming back as a second
# master. The group is the StatefulSet: the pod's name less its ordinal;
# its pods are $group-0 to $group-(GROUP_SIZE-1). Each pod announces its
# stable name (pod.redis), so its replicas report a name that survives a
# new pod IP.
set -eu
: "${GROUP_SIZE:?must be the StatefulSet's replicas}"
pod=$(hostname)
group=${pod%-*}
self="$pod.redis"
master=
i=0
while [ "$i" -lt "$GROUP_SIZE" ] && [ -z "$master" ]; do
  peer="$group-$i.redis"
  if [ "$peer" != "$self" ]; then
    # ROLE's first line is master, slave or an error (a peer that is down,
    # not scheduled, or loading). The timeout bounds a peer whose old
    # address no longer answers at all.
    role=$(REDISCLI_AUTH=$REDIS_PASSWORD timeout 5 redis-cli -h "$peer" -p 6379 --raw ROLE 2>/dev/null | head -n 1 || true)
    if [ "$role" = master ]; then master=$peer; fi
  fi
  i=$((i + 1))
done
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
