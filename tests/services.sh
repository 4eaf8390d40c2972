#!/usr/bin/env bash
# Run a command against PostgreSQL + Redis on loopback: start both from Debian packages when they are not
# already there (installing them if needed), export CDPHUB_DATABASE_URL and CDPHUB_BROKER, run "$@", and
# stop what this script started.
set -euo pipefail

PGPORT=${CDPHUB_TEST_PGPORT:-54329}
REDISPORT=${CDPHUB_TEST_REDISPORT:-63799}
PGDATA=${CDPHUB_TEST_PGDATA:-/var/tmp/cdphub-test-pg}
started_pg="" started_redis=""

need_apt() {  # install Debian packages by name, once
  if [ "$(id -u)" != 0 ]; then echo "services.sh: $* missing and not root; install them" >&2; exit 1; fi
  [ -n "${APT_UPDATED:-}" ] || { apt-get update -qq; APT_UPDATED=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
  need_apt postgresql
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
fi
command -v redis-server >/dev/null 2>&1 || need_apt redis-server

as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }

if ! "$pgbin/pg_isready" -q -h 127.0.0.1 -p "$PGPORT"; then
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA"; [ "$(id -u)" = 0 ] && chown postgres:postgres "$PGDATA"
    as_pg "$pgbin/initdb -D $PGDATA -A trust -U postgres --no-sync >/dev/null"
  fi
  as_pg "$pgbin/pg_ctl -D $PGDATA -o '-p $PGPORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200' -l $PGDATA/log -w start >/dev/null"
  started_pg=1
fi
psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -tc "SELECT 1 FROM pg_roles WHERE rolname='cdphub'" | grep -q 1 \
  || psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -c "CREATE ROLE cdphub LOGIN SUPERUSER PASSWORD 'cdphub'"
psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -tc "SELECT 1 FROM pg_database WHERE datname='cdphub'" | grep -q 1 \
  || psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -c "CREATE DATABASE cdphub OWNER cdphub"

if ! redis-cli -p "$REDISPORT" ping >/dev/null 2>&1; then
  redis-server --port "$REDISPORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes >/dev/null
  for _ in $(seq 50); do redis-cli -p "$REDISPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  started_redis=1
fi

cleanup() {
  [ -n "$started_redis" ] && redis-cli -p "$REDISPORT" shutdown nosave >/dev/null 2>&1 || true
  [ -n "$started_pg" ] && as_pg "$pgbin/pg_ctl -D $PGDATA -m fast -w stop >/dev/null" || true
}
trap cleanup EXIT

export CDPHUB_DATABASE_URL="postgres://cdphub:cdphub@127.0.0.1:$PGPORT/cdphub"
export CDPHUB_BROKER="redis://127.0.0.1:$REDISPORT/0"
# For the fault tests (tests/faults.py), which restart both: PostgreSQL with pg_ctl as the postgres user, Redis
# with the flags above.
export CDPHUB_TEST_PGBIN="$pgbin" CDPHUB_TEST_PGDATA="$PGDATA" CDPHUB_TEST_PGPORT="$PGPORT" CDPHUB_TEST_REDISPORT="$REDISPORT"
echo "services.sh: PostgreSQL on 127.0.0.1:$PGPORT, Redis on 127.0.0.1:$REDISPORT"
"$@"
