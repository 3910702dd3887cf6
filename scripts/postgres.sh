#!/usr/bin/env bash
# A throw-away PostgreSQL for the test suites, from Debian's `postgresql`
# package: a fresh cluster in a temp directory on a free loopback port.
#
#   scripts/postgres.sh start   # prints: export AUTHPLANE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:PORT
#   scripts/postgres.sh stop    # stops it and removes the directory
#   scripts/postgres.sh pause|resume  # stop and start it again, data kept (fault tests)
#   scripts/postgres.sh status        # exit 0 when it is running
#
# State lives in $AUTHPLANE_PG_STATE (default .tmp/postgres in the clone).
# Tests that need a differently configured server start their own with:
#   AUTHPLANE_PG_SSL_DIR=DIR    DIR/server.crt and DIR/server.key: TLS on
#   AUTHPLANE_PG_EXTRA_OPTS=... more server options, e.g. "-c max_connections=8"
set -euo pipefail

state="${AUTHPLANE_PG_STATE:-$(cd "$(dirname "$0")/.." && pwd)/.tmp/postgres}"

bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$d" ] || [ ! -x "$d/initdb" ]; then
    echo "postgres.sh: installing Debian's postgresql package" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2
    d=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  echo "$d"
}

# initdb and postgres refuse to run as root: use the package's `postgres` user.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

start() {
  if [ -f "$state/port" ] && as_pg "$(bindir)/pg_ctl" -D "$state/data" status >/dev/null 2>&1; then
    echo "export AUTHPLANE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$(cat "$state/port")"
    return
  fi
  stop >/dev/null 2>&1 || true
  local bin port
  bin=$(bindir)
  port=$(free_port)
  mkdir -p "$state"
  chmod 0777 "$state"
  if [ "$(id -u)" = 0 ]; then chown postgres "$state"; fi
  as_pg "$bin/initdb" -D "$state/data" -U postgres -A trust --no-sync -E UTF8 >"$state/initdb.log" 2>&1 \
    || { cat "$state/initdb.log" >&2; exit 1; }
  local extra="${AUTHPLANE_PG_EXTRA_OPTS:-}"
  if [ -n "${AUTHPLANE_PG_SSL_DIR:-}" ]; then
    # Postgres wants its key owned by the server's user with mode 0600.
    install -m 0644 "$AUTHPLANE_PG_SSL_DIR/server.crt" "$state/server.crt"
    install -m 0600 "$AUTHPLANE_PG_SSL_DIR/server.key" "$state/server.key"
    if [ "$(id -u)" = 0 ]; then chown postgres "$state/server.crt" "$state/server.key"; fi
    extra="$extra -c ssl=on -c ssl_cert_file=$state/server.crt -c ssl_key_file=$state/server.key"
  fi
  # Durability is irrelevant for a throw-away test cluster; speed is not.
  as_pg "$bin/pg_ctl" -D "$state/data" -l "$state/server.log" -w -t 60 \
    -o "-p $port -k $state -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 $extra" \
    start >/dev/null || { cat "$state/server.log" >&2; exit 1; }
  echo "$port" >"$state/port"
  echo "export AUTHPLANE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$port"
}

stop() {
  if [ -d "$state/data" ]; then
    as_pg "$(bindir)/pg_ctl" -D "$state/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$state"
}

# For fault tests: stop the server but keep its data (`pause`), and start it
# again on the same port with the same options (`resume`).
pause() {
  as_pg "$(bindir)/pg_ctl" -D "$state/data" -m fast -w stop >/dev/null
}

resume() {
  local opts
  # postmaster.opts: the command line of the last start, quoted per argument.
  opts=$(sed -e 's/^[^ ]* //' "$state/data/postmaster.opts")
  eval "set -- $opts"
  as_pg "$(bindir)/pg_ctl" -D "$state/data" -l "$state/server.log" -w -t 60 -o "$(printf '%q ' "$@")" start >/dev/null \
    || { tail -n 20 "$state/server.log" >&2; exit 1; }
}

# Exit 0 when this state dir's server is running.
status() {
  [ -f "$state/port" ] && as_pg "$(bindir)/pg_ctl" -D "$state/data" status >/dev/null 2>&1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  pause) pause ;;
  resume) resume ;;
  status) status ;;
  *) echo "usage: $0 start|stop|pause|resume|status" >&2; exit 2 ;;
esac
