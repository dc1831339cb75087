#!/usr/bin/env bash
# Make sure Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432, database `test`) answer.
# Idempotent: servers that already answer are left alone; missing ones are installed from
# Debian's packages and started. Used by `npm test` (pretest) and by hand: `npm run services`.
set -euo pipefail

REDIS_PORT="${REDIS_PORT:-6379}"
PG_PORT="${PG_PORT:-5432}"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

say() { echo "[services] $*"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

redis_ok() {
  port_open "$REDIS_PORT" || return 1
  # A bare PING over /dev/tcp: works without redis-cli.
  local reply
  reply=$(exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT"; printf 'PING\r\n' >&3; timeout 2 head -c 7 <&3 || true)
  [[ "$reply" == "+PONG"* ]]
}

pg_ok() {
  command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p "$PG_PORT"
}

apt_install() {
  say "installing $* from Debian's packages"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

start_redis() {
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  # __test__/tls.test.ts makes its CA and certificates with openssl.
  command -v openssl >/dev/null 2>&1 || apt_install openssl
  say "starting redis-server on 127.0.0.1:$REDIS_PORT"
  local dir=/var/lib/redis log=/var/log/redis
  $SUDO mkdir -p "$dir" "$log"
  # Nothing on disk: the warm tier is a cache, and tests flush only their own key prefix.
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" \
    --appendonly no --dir "$dir" --logfile "$log/stackmemory-tiers.log"
}

start_pg() {
  command -v pg_ctlcluster >/dev/null 2>&1 || apt_install postgresql
  local version
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
  if [ -z "$version" ]; then
    say "no PostgreSQL cluster found after install"; return 1
  fi
  say "starting PostgreSQL $version (cluster main)"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
}

wait_for() {
  local what=$1 check=$2
  for _ in $(seq 1 60); do
    if $check; then return 0; fi
    sleep 0.5
  done
  say "$what did not come up"; return 1
}

if redis_ok; then say "redis: answering on $REDIS_PORT"; else start_redis; wait_for redis redis_ok; fi
if pg_ok; then say "postgres: answering on $PG_PORT"; else start_pg; wait_for postgres pg_ok; fi

# The tests connect as postgres/postgres to database `test` over TCP. A fresh Debian cluster
# asks for a password on TCP, so give the role one (a no-op where auth is trust) and create
# the database where it is missing.
as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@"; elif [ "$(id -u)" = 0 ]; then su postgres -c "$(printf '%q ' "$@")"; else sudo -u postgres "$@"; fi
}
if ! psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d test -Atc 'select 1' >/dev/null 2>&1 \
   && ! PGPASSWORD=postgres psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d test -Atc 'select 1' >/dev/null 2>&1; then
  say "preparing role postgres and database test"
  as_postgres psql -p "$PG_PORT" -qc "ALTER USER postgres PASSWORD 'postgres'" || true
  as_postgres createdb -p "$PG_PORT" test 2>/dev/null || true
fi
PGPASSWORD=postgres psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d test -Atc 'select 1' >/dev/null
say "ready: redis://127.0.0.1:$REDIS_PORT postgres://postgres:postgres@127.0.0.1:$PG_PORT/test"
