#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on loopback for the store tests (CI and developers).
#   eval "$(scripts/pg-test-cluster.sh start)"   # prints: export DOXA_TEST_POSTGRES_URL=...
#   scripts/pg-test-cluster.sh stop
# Needs Debian's postgresql package (installed when missing). Listens on 127.0.0.1 only.
set -euo pipefail
PORT=${DOXA_PG_PORT:-54329}
DATA=${DOXA_PG_DATA:-/tmp/doxa-pg-$PORT}
URL="postgresql://postgres@127.0.0.1:$PORT/doxa_test"
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [[ -z $bin ]]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >&2
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case ${1:-start} in
  start)
    if ! as_pg "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
      rm -rf "$DATA"; mkdir -p "$DATA"
      [[ $(id -u) == 0 ]] && chown postgres "$DATA"
      as_pg "$bin/initdb" -D "$DATA" -U postgres --auth=trust >/dev/null
      as_pg "$bin/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $PORT -k /tmp -c fsync=off" start >&2
      as_pg "$bin/createdb" -h 127.0.0.1 -p "$PORT" -U postgres doxa_test
    fi
    echo "export DOXA_TEST_POSTGRES_URL=$URL" ;;
  stop) as_pg "$bin/pg_ctl" -D "$DATA" -m fast stop >&2 || true ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
