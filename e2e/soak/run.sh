#!/usr/bin/env bash
# `make soak`: the mix of real flows of e2e/soak/load.py at 80 % of the
# measured maximum for SOAK_SECONDS, on SQLite and then on Postgres, with the
# end-of-run checks of e2e/soak/soak.py (zero 5xx, tokens = audit rows count
# by count, RSS flat, no fd or DB connection leak, DB size per retained row).
# Loopback only; every load is bounded by SOAK_SECONDS.
#
# Env: SOAK_SECONDS (120 per database), SOAK_DBS ("sqlite postgres"),
# SOAK_MEASURE_SECONDS (20), SOAK_LOAD_PERCENT (80), SOAK_PROCESSES (2),
# SOAK_THREADS (8), SOAK_RSS_BOUND_MB (16), SOAK_BYTES_PER_ROW (2048),
# AUTHSERVER_BIN (default: the release build, made by cargo when missing).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dbs="${SOAK_DBS:-sqlite postgres}"

# shellcheck source=../oauth/lib/authserver.sh
source "$root/e2e/oauth/lib/authserver.sh"
pg_started=""
cleanup() {
  as_stop
  if [[ -n "$pg_started" ]]; then "$root/scripts/postgres.sh" stop; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z "${AUTHSERVER_BIN:-}" ]]; then
  echo "soak: cargo build --release -p authplane-server"
  (cd "$root" && cargo build --quiet --release --locked -p authplane-server --bin authserver)
  AUTHSERVER_BIN="${CARGO_TARGET_DIR:-$root/target}/release/authserver"
fi

# The soak registers clients and signs in from 127.0.0.1 all the time; the
# limits that would refuse that are tested by e2e/abuse.
export AUTHPLANE_LIMITS_REGISTRATIONS_PER_MINUTE=0
rc=0
for db in $dbs; do
  echo "soak: $db, ${SOAK_SECONDS:-120} s"
  unset SOAK_PG_URL AUTHPLANE_DATABASE_URL
  if [[ "$db" == postgres ]]; then
    eval "$("$root/scripts/postgres.sh" start)"
    pg_started=1
    name="soak_$(date +%s)"
    psql="$(ls /usr/lib/postgresql/*/bin/psql | sort -V | tail -n 1)"
    "$psql" "$AUTHPLANE_TEST_POSTGRES_URL/postgres" -qc "CREATE DATABASE $name"
    export SOAK_PG_URL="$AUTHPLANE_TEST_POSTGRES_URL/$name"
    export AUTHPLANE_DATABASE_URL="$SOAK_PG_URL"
  fi
  as_start "soak-$db" "$AUTHSERVER_BIN"
  python3 "$here/soak.py" || rc=1
  as_stop
  unset AUTHPLANE_DATABASE_URL SOAK_PG_URL
done
exit $rc
