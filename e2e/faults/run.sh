#!/usr/bin/env bash
# Faults under load (issue 16): each fault is made while e2e/soak/load.py's
# mix of real flows runs, then e2e/faults/faults.py checks what was answered.
# Bounded (a few seconds of load per fault), loopback only.
#
#   1. kill -9 of the authserver mid-load (SQLite), restart on the same
#      database: every 200 has its audit row, every refresh token a client
#      holds still rotates (no family lost or half-rotated).
#   2. Postgres stopped and started mid-load: /health says degraded (503)
#      and ok again, requests meanwhile get clean 503s (never another 5xx,
#      never a dropped connection), nothing answered is lost, the pool
#      recovers (a clean load afterwards).
#   3. SQLite on a full filesystem (a tmpfs of a few MB made here, unmounted
#      on exit): clean 503s while full, the database passes
#      `PRAGMA integrity_check`, requests succeed again once space is freed.
#   4. Key rotation under load, the normal schedule then `keys rotate
#      --immediate`: fresh tokens sent at once to the example MCP server (the
#      SDK verifier) — zero refused, counted, and all three keys seen.
#   5. Two authservers on one Postgres (db key store, one issuer): the same
#      code or refresh token at both at once is honoured once; load spread
#      over both loses nothing.
#
# Env: AUTHSERVER_BIN / MCP_SERVER_BIN (default: the debug builds),
# FAULTS (default "kill9 pg-restart disk-full rotation two-as").
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
faults="${FAULTS:-kill9 pg-restart disk-full rotation two-as}"

# shellcheck source=../oauth/lib/authserver.sh
source "$root/e2e/oauth/lib/authserver.sh"
work="$(mktemp -d "${TMPDIR:-/tmp}/authplane-faults.XXXXXX")"
chmod 0755 "$work" # Postgres runs as its own user and must reach its directory
export AUTHPLANE_PG_STATE="$work/postgres"
mnt=""
pg=""
extra_pids=()
cleanup() {
  as_stop
  for p in "${extra_pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  if [[ -n "$mnt" ]] && mountpoint -q "$mnt"; then umount "$mnt" && echo "faults: unmounted $mnt"; fi
  if [[ -n "$pg" ]]; then "$root/scripts/postgres.sh" stop; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z "${AUTHSERVER_BIN:-}" || -z "${MCP_SERVER_BIN:-}" ]]; then
  "$root/scripts/build-test-bins.sh"
fi
AUTHSERVER_BIN="${AUTHSERVER_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/authserver}"
MCP_SERVER_BIN="${MCP_SERVER_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/mcp-server}"
# The load signs in and registers from 127.0.0.1 all the time (e2e/abuse
# tests those limits).
export AUTHPLANE_LIMITS_REGISTRATIONS_PER_MINUTE=0

total_passed=0
total_failed=0
# shellcheck source=../oauth/lib/pysuite.sh
source "$here/../oauth/lib/pysuite.sh"
py() { py_suite faults "$here/faults.py" "$@"; }
load() { python3 "$here/faults.py" load "$@"; }
ok() { echo "ok   $*"; total_passed=$((total_passed + 1)); }
fail() { echo "FAIL $*"; total_failed=$((total_failed + 1)); }
health() { curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$E2E_ISSUER/health" || true; }

# as_restart: the same server again (same config, database, keys and port).
as_restart() {
  local bin i
  bin="$(realpath "$AUTHSERVER_BIN")"
  : >"$AS_DIR/restart.log"
  (cd "$AS_DIR" && exec "$bin" --config "$AS_DIR/config.yaml" serve) >"$AS_DIR/restart.log" 2>&1 &
  E2E_SERVER_PID=$!
  for i in $(seq 1 300); do
    if grep -q 'msg="authserver started"' "$AS_DIR/restart.log" && curl -fsS -o /dev/null "$E2E_ISSUER/health"; then
      E2E_ADMIN_URL="http://$(grep -m1 'msg="authserver started"' "$AS_DIR/restart.log" | sed -n 's/.* admin=\([^ ]*\).*/\1/p')"
      export E2E_SERVER_PID E2E_ADMIN_URL
      return 0
    fi
    sleep 0.1
  done
  tail -n 20 "$AS_DIR/restart.log" >&2
  return 1
}

pg_db() { # a fresh database on the suite's Postgres -> its URL
  if [[ -z "$pg" ]]; then
    eval "$("$root/scripts/postgres.sh" start)"
    pg="$AUTHPLANE_TEST_POSTGRES_URL"
  fi
  local name="faults_$1"
  "$(ls /usr/lib/postgresql/*/bin/psql | sort -V | tail -n 1)" "$pg/postgres" -qc "CREATE DATABASE $name"
  echo "$pg/$name"
}

for fault in $faults; do
  t0=$(date +%s)
  case "$fault" in
  kill9)
    echo "faults: kill -9 of the authserver mid-load (SQLite)"
    as_start faults-kill9 "$AUTHSERVER_BIN"
    load 6 "$work/kill9.json" --rate 150 &
    lp=$!
    sleep 3
    kill -9 "$E2E_SERVER_PID"
    wait "$lp"
    as_restart
    py verify "$work/kill9.json"
    py expect "$work/kill9.json" n_5xx=0 n_unexpected=0 min_issued=50
    as_stop
    ;;
  pg-restart)
    echo "faults: Postgres stopped and started mid-load"
    url="$(pg_db restart)"
    # A 1 s pool wait (default 5 s): a request that arrives during the 2 s
    # outage gets its 503 then, instead of waiting for Postgres to come back
    # and succeeding; without it the only 503s are requests whose statement
    # was in flight at the shutdown, and a run can catch none.
    SOAK_PG_URL="$url" AUTHPLANE_DATABASE_URL="$url" AUTHPLANE_DATABASE_ACQUIRE_TIMEOUT=1s \
      as_start faults-pg "$AUTHSERVER_BIN"
    export SOAK_PG_URL="$url"
    load 9 "$work/pg.json" --rate 120 --tolerate 503 &
    lp=$!
    sleep 2.5
    "$root/scripts/postgres.sh" pause
    down=""
    for _ in $(seq 1 30); do down="$(health)"; [[ "$down" == 503 ]] && break; sleep 0.1; done
    body="$(curl -s --max-time 10 "$E2E_ISSUER/health" || true)"
    sleep 2
    "$root/scripts/postgres.sh" resume
    up=""
    for _ in $(seq 1 100); do up="$(health)"; [[ "$up" == 200 ]] && break; sleep 0.1; done
    wait "$lp"
    [[ "$down" == 503 && "$body" == *'"status":"degraded"'* ]] && ok "health degraded (503) while Postgres is down ($body)" \
      || fail "health while Postgres is down: $down $body"
    [[ "$up" == 200 ]] && ok "health ok again after Postgres is back" || fail "health after Postgres is back: $up"
    python3 - "$work/pg.json" <<'PY' && ok "requests meanwhile got clean 503s (JSON or the error page), no other 5xx, no dropped connection" || fail "requests while Postgres was down"
import json, sys
d = json.load(open(sys.argv[1]))
n503 = sum(m.get("503", 0) for m in d["by_flow"].values())
print(f"     {n503} answered 503 while Postgres was down; 5xx other than 503: {d['n_5xx']}, connection errors: {d['n_conn_errors']}, other: {d['n_unexpected']} {d['errors'][:3]}")
sys.exit(0 if n503 > 0 and d["n_5xx"] == 0 and d["n_conn_errors"] == 0 and d["n_unexpected"] == 0 else 1)
PY
    py verify "$work/pg.json"
    load 3 "$work/pg-after.json" --rate 120
    py expect "$work/pg-after.json" n_5xx=0 n_unexpected=0 n_conn_errors=0 min_issued=20
    as_stop
    unset SOAK_PG_URL
    ;;
  disk-full)
    echo "faults: SQLite on a full filesystem"
    mnt="$work/small-fs"
    mkdir -p "$mnt"
    mount -t tmpfs -o size=6m,mode=0755 tmpfs "$mnt"
    echo "faults: mounted a 6 MB tmpfs on $mnt (unmounted on exit)"
    export E2E_DB="$mnt/authplane.db"
    AUTHPLANE_DATABASE_URL="sqlite://$mnt/authplane.db?mode=rwc" as_start faults-disk "$AUTHSERVER_BIN"
    export E2E_DB="$mnt/authplane.db"
    load 2 "$work/disk-before.json" --rate 100
    # Fill what is left, then load: every write fails.
    dd if=/dev/zero of="$mnt/filler" bs=64k 2>/dev/null || true
    echo "faults: filesystem full: $(df -h "$mnt" | tail -n 1 | awk '{print $3 " used of " $2}')"
    load 4 "$work/disk-full.json" --rate 100 --tolerate 503
    python3 - "$work/disk-full.json" <<'PY' && ok "a full disk gives clean 503s, no other 5xx, no dropped connection" || fail "requests on a full disk"
import json, sys
d = json.load(open(sys.argv[1]))
n503 = sum(m.get("503", 0) for m in d["by_flow"].values())
print(f"     {n503} answered 503 while the disk was full; other 5xx {d['n_5xx']}, connection errors {d['n_conn_errors']}, other {d['n_unexpected']} {d['errors'][:3]}")
sys.exit(0 if n503 > 0 and d["n_5xx"] == 0 and d["n_conn_errors"] == 0 and d["n_unexpected"] == 0 else 1)
PY
    kill -0 "$E2E_SERVER_PID" && ok "the server is still running" || fail "the server died on a full disk"
    rm -f "$mnt/filler"
    sleep 1
    load 3 "$work/disk-after.json" --rate 100
    py expect "$work/disk-after.json" n_5xx=0 n_unexpected=0 n_conn_errors=0 min_issued=20
    py verify "$work/disk-before.json" "$work/disk-full.json" "$work/disk-after.json"
    as_stop
    integrity="$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("PRAGMA integrity_check").fetchone()[0])' "$mnt/authplane.db")"
    [[ "$integrity" == ok ]] && ok "PRAGMA integrity_check: ok" || fail "integrity_check: $integrity"
    umount "$mnt" && echo "faults: unmounted $mnt"
    mnt=""
    unset E2E_DB
    ;;
  rotation)
    echo "faults: key rotation under load, verified by the SDK"
    # Compressed times, same order as the defaults (publish_ahead 6m > the
    # SDK's 300 s refresh): a scheduled key is published 8 s before it signs,
    # the SDK refreshes its key set every 2 s, the server re-reads the key
    # directory every 2 s: the SDK knows the key at least 4 s before it signs.
    export AUTHPLANE_SIGNING_PUBLISH_AHEAD=8s
    as_start faults-keys "$AUTHSERVER_BIN"
    mport="$(as_free_port)"
    AUTHPLANE_JWKS_REFRESH_INTERVAL=2 "$MCP_SERVER_BIN" --listen "127.0.0.1:$mport" --resource "$E2E_RESOURCE" \
      --issuer "$E2E_ISSUER" >"$work/mcp.log" 2>&1 &
    extra_pids+=($!)
    for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$mport/.well-known/oauth-protected-resource/mcp" && break; sleep 0.1; done
    keys() { "$AUTHSERVER_BIN" --config "$AS_DIR/config.yaml" keys "$@"; }
    python3 "$here/faults.py" sdk 18 "$work/sdk.json" "http://127.0.0.1:$mport/mcp" --rate 80 &
    lp=$!
    sleep 2
    keys rotate >/dev/null && echo "faults: keys rotate (published now, signs after publish_ahead)"
    sleep 10
    keys rotate --immediate >/dev/null && echo "faults: keys rotate --immediate"
    wait "$lp"
    unset AUTHPLANE_SIGNING_PUBLISH_AHEAD
    echo "faults: keys now: $(keys list | tail -n +2 | awk '{print $2}' | sort | uniq -c | xargs)"
    python3 - "$work/sdk.json" <<'PY' && ok "zero failed verifications of fresh tokens at the SDK across both rotations" || fail "verifications failed at the SDK"
import json, sys
d = json.load(open(sys.argv[1]))
print(f"     {d['verified']} verified, {d['refused']} refused, {d['issue_failed']} not issued; {d['refusals']}")
sys.exit(0 if d["verified"] > 100 and d["refused"] == 0 and d["issue_failed"] == 0 else 1)
PY
    python3 -c 'import json,sys; sys.exit(0 if len(json.load(open(sys.argv[1]))["kids"]) >= 3 else 1)' "$work/sdk.json" \
      && ok "tokens signed by each of the three keys reached the SDK (both rotations took effect under load)" \
      || fail "fewer than three signing keys seen: a rotation did not take effect during the load"
    as_stop
    ;;
  two-as)
    echo "faults: two authservers on one Postgres"
    url="$(pg_db two)"
    export SOAK_PG_URL="$url"
    AUTHPLANE_SIGNING_KEY_STORE=db AUTHPLANE_DATABASE_URL="$url" as_start faults-as1 "$AUTHSERVER_BIN"
    as1_pid="$E2E_SERVER_PID" as1_dir="$AS_DIR" as1="$E2E_ISSUER"
    # The second one: same database, keys, clients and issuer (a replica
    # behind a load balancer), its own port.
    port2="$(as_free_port)"
    sed -e "0,/listen: 127.0.0.1:[0-9]*/s##listen: 127.0.0.1:$port2#" -e "s#key_dir: .*#key_dir: $as1_dir/keys2#" \
      "$as1_dir/config.yaml" >"$as1_dir/config2.yaml"
    AUTHPLANE_SIGNING_KEY_STORE=db AUTHPLANE_DATABASE_URL="$url" \
      "$(realpath "$AUTHSERVER_BIN")" --config "$as1_dir/config2.yaml" serve >"$as1_dir/server2.log" 2>&1 &
    extra_pids+=($!)
    as2="http://127.0.0.1:$port2"
    for _ in $(seq 1 300); do curl -fsS -o /dev/null "$as2/health" 2>/dev/null && break; sleep 0.1; done
    if ! curl -fsS -o /dev/null "$as2/health"; then
      tail -n 20 "$as1_dir/server2.log"
      fail "the second authserver did not start"
      as_stop
      continue
    fi
    py race-codes 20 "$as1" "$as2"
    py race-refresh 20 "$as1" "$as2"
    load 6 "$work/two.json" --rate 150 --base "$as1,$as2"
    py expect "$work/two.json" n_5xx=0 n_unexpected=0 n_conn_errors=0 min_issued=50
    py verify "$work/two.json"
    as_stop
    unset SOAK_PG_URL
    ;;
  *) echo "faults: unknown fault $fault"; exit 2 ;;
  esac
  echo "faults: $fault took $(( $(date +%s) - t0 ))s"
done

echo "$total_passed passed, $total_failed failed"
[[ $total_failed -eq 0 ]]
