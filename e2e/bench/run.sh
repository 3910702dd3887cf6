#!/usr/bin/env bash
# `make bench`: AuthPlane (release build; SQLite, then PostgreSQL) side by
# side with node oidc-provider (in memory; e2e/bench/oidc/server.mjs) under
# the same wrk load, one server at a time, for every grant an MCP client or
# resource server drives:
#
#   client_credentials        POST /token, client_secret_basic, resource, scope
#   client_credentials_dpop   the same with a fresh DPoP proof per request
#   refresh_token             rotating refresh tokens, none ever used twice
#   authorization_code        the code flow of a returning user (signed in,
#                             consent remembered): authorize → … → token
#   authorization_code_first  the code flow of a first-time user: authorize →
#                             login page → password (argon2id) → consent page
#                             → approve → token, a new user every flow
#   introspection             RFC 7662 of an access token, by the confidential client
#   jwks, discovery           GET of the key set and of the metadata document
#
# Each line: operations/s (a flow counts once however many requests it
# takes), p50/p99 of the HTTP requests, server CPU per operation, RSS (VmRSS
# after the load and peak VmHWM), database writes per operation; then
# `ratio <grant> <x> <database>` against oidc-provider and the targets of
# issue 17 (>= 3x, p99 < 5 ms, refresh CPU within 2x of client_credentials,
# RSS < 40 MB loaded and < 20 MB idle). A benchmark, not a test: it fails
# only when requests fail, never on a missed target.
#
# Method
# - wrk -t2 -c32 -d10s after a warm-up of the same load, on the 2-core
#   machine; wrk shares the cores with the server. Loopback only.
# - refresh_token: 64 grants are minted first through each server's real
#   code flow (mint.mjs); each wrk thread owns a pool and puts back the
#   rotated token from every answer (refresh_token.lua), so no token is
#   used twice (AuthPlane's refresh_reuse denials are checked to stay 0).
# - authorization_code: wrk follows each server's own steps and fills its
#   own forms (authorization_code.lua); the first-time flow signs in
#   bench-<n> users that all have the same argon2id hash (m=19 MiB, t=2),
#   verified by both servers (oidc-provider's login page uses
#   @node-rs/argon2); its latency is that of argon2 by design.
# - DPoP: proofs pre-signed with node:crypto (mint-proofs.mjs; single use),
#   so the load measures the server's checks, not the client's signing.
# - introspection: oidc-provider refuses to introspect its JWT access
#   tokens, so its load introspects an opaque token (a lookup in memory);
#   AuthPlane's introspects its JWT.
# - server CPU per operation: user+system time of the server process
#   (/proc/PID/stat) over the measured run; wrk's own CPU is not in it.
# - DB writes per operation: row counts of every table (plus rows marked
#   spent) before and after the measured run (dbstat.py).
# - PostgreSQL: Debian's, a throw-away cluster on loopback
#   (scripts/postgres.sh, its own state directory).
#
# Env: BENCH_THREADS (2), BENCH_CONNECTIONS (32), BENCH_DURATION (10s),
# BENCH_WARMUP (2s), BENCH_DPOP_PROOFS (300000: proofs signed per DPoP run),
# BENCH_DBS ("sqlite postgres"), BENCH_USERS (2000: first-time users),
# BENCH_REFERENCE (1; 0 skips oidc-provider: before/after runs of AuthPlane
# alone), BENCH_GRANTS (every grant; a subset, e.g. "refresh_token
# authorization_code", for quick comparisons), AUTHSERVER_BIN (skip the
# release build).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
oidc="$here/oidc"
threads="${BENCH_THREADS:-2}"
conns="${BENCH_CONNECTIONS:-32}"
duration="${BENCH_DURATION:-10s}"
warmup="${BENCH_WARMUP:-2s}"
dpop_proofs="${BENCH_DPOP_PROOFS:-300000}"
dbs="${BENCH_DBS-sqlite postgres}"
nusers="${BENCH_USERS:-2000}"
all_grants="client_credentials client_credentials_dpop refresh_token authorization_code authorization_code_first introspection jwks discovery"
read -r -a grants <<<"${BENCH_GRANTS:-$all_grants}"
reference="${BENCH_REFERENCE:-1}"
wanted() { [[ " ${grants[*]} " == *" $1 "* ]]; }

# shellcheck source=../oauth/lib/authserver.sh
source "$root/e2e/oauth/lib/authserver.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"
work="$(mktemp -d "${TMPDIR:-/tmp}/authplane-bench.XXXXXX")"
# Its own Postgres beside the suites' (.tmp/postgres), in the clone: the
# postgres user cannot enter a mktemp directory.
export AUTHPLANE_PG_STATE="$root/.tmp/bench-postgres"
oidc_pid=""
pg_started=""
stop_oidc() {
  if [[ -n "$oidc_pid" ]]; then
    kill "$oidc_pid" 2>/dev/null || true
    wait "$oidc_pid" 2>/dev/null || true
    oidc_pid=""
  fi
}
cleanup() {
  as_stop
  stop_oidc
  if [[ -n "$pg_started" ]]; then "$root/scripts/postgres.sh" stop >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools ----------------------------------------------------------------------
bench_prepare
# shellcheck source=../oauth/lib/npm.sh
source "$root/e2e/oauth/lib/npm.sh"
npm_ci bench "$oidc"

# --- helpers ------------------------------------------------------------------------

urlenc() { python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# writes_per_op BEFORE_JSON AFTER_JSON OPS -> "N (table +x, ...)"
writes_per_op() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
a, b, n = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
parts, total = [], 0.0
for k in sorted(b):
    d = (b[k] - a.get(k, 0)) / max(n, 1)
    if abs(d) >= 0.005:
        parts.append(f"{k} {d:+.2f}")
        total += d
print(f"{total:.2f} ({', '.join(parts)})" if parts else "0")
PY
}

# measured NAME URL SCRIPT PID [DB]: the measured run, with the database's
# row counts before and after when DB (a SQLite file or a postgres:// URL)
# is given.
measured() {
  local name="$1" url="$2" script="$3" pid="$4" db="${5:-}" before
  if [[ -n "$db" ]]; then before="$(python3 "$here/dbstat.py" "$db")"; fi
  run_wrk "$name" "$url" "$script" "$pid"
  if [[ -n "$db" ]]; then
    RESULT[$name.writes]="$(writes_per_op "$before" "$(python3 "$here/dbstat.py" "$db")" "${RESULT[$name.ok]}")"
  fi
}

# measure NAME URL SCRIPT PID [DB]: a warm-up of the same load, then measured.
measure() {
  wrk -t"$threads" -c"$conns" -d"$warmup" -s "$here/$3" "$2" >/dev/null
  measured "$@"
}

# The code-flow load's settings for one server: ISSUER AUTHORIZE_PATH
# TOKEN_PATH CLIENT_ID RESOURCE.
verifier="bench-verifier-$(as_rand 43)"
challenge="$(printf %s "$verifier" | openssl dgst -sha256 -binary | base64 | tr '+/' '-_' | tr -d '=')"
redirect="http://127.0.0.1/callback"
export BENCH_AUTHORIZE BENCH_TOKEN_PATH BENCH_TOKEN_BODY BENCH_REDIRECT="$redirect" BENCH_COOKIE BENCH_USER_PREFIX BENCH_PASSWORD
export BENCH_AUTH BENCH_BODY BENCH_PROOFS BENCH_TOKENS BENCH_CLIENT_ID
code_flow_env() {
  BENCH_AUTHORIZE="$2?response_type=code&client_id=$4&redirect_uri=$(urlenc "$redirect")&scope=tools%2Fread&state=bench&code_challenge=$challenge&code_challenge_method=S256&resource=$(urlenc "$5")"
  BENCH_TOKEN_PATH="$3"
  BENCH_TOKEN_BODY="grant_type=authorization_code&client_id=$4&redirect_uri=$(urlenc "$redirect")&code_verifier=$verifier&resource=$(urlenc "$5")&code="
}

# dpop_run NAME TOKEN_ENDPOINT PID [DB]: client_credentials with a proof per request.
dpop_run() {
  local name="$1" url="$2" pid="$3" db="${4:-}" check before after
  check="$(curl -fsS -H "Authorization: $BENCH_AUTH" -H 'Content-Type: application/x-www-form-urlencoded' \
    -H "DPoP: $(cd "$here" && node mint-proofs.mjs "$url" 1)" --data "$BENCH_BODY" "$url")"
  echo "  with a proof: token_type $(json_field token_type <<<"$check")"
  echo "  signing $dpop_proofs DPoP proofs (node:crypto)"
  (cd "$here" && node mint-proofs.mjs "$url" "$dpop_proofs") >"$work/proofs.txt"
  BENCH_PROOFS="$work/proofs.txt"
  measured "$name" "$url" client_credentials_dpop.lua "$pid" "$db"
}

# mint ISSUER AUTHORIZE_PATH TOKEN_PATH CLIENT_ID RESOURCE USER N: signs the
# user in through the server's own pages; prints `cookie: …` and N refresh
# tokens (mint.mjs).
mint() { (cd "$here" && node mint.mjs "$@"); }

# refresh_run SRV TOKEN_URL PID [DB] -- MINT_ARGS (mint's, without N): 64
# grants for a warm-up, 64 fresh ones for the measured run.
refresh_run() {
  local srv="$1" url="$2" pid="$3" db="${4:-}"
  shift 5
  echo "  signing in and minting 64 refresh-token grants through the code flow (mint.mjs)"
  mint "$@" 64 | sed 1d >"$work/tokens.txt"
  BENCH_TOKENS="$work/tokens.txt" BENCH_CLIENT_ID="$4"
  wrk -t"$threads" -c"$conns" -d"$warmup" -s "$here/refresh_token.lua" "$url" >/dev/null
  mint "$@" 64 | sed 1d >"$work/tokens.txt"
  measured "$srv.refresh_token" "$url" refresh_token.lua "$pid" "$db"
}

# returning_run SRV ISSUER PID [DB] -- MINT_ARGS: the code flow of a user
# signed in (consent given) right before the load: oidc-provider keeps only
# its 1,000 newest artifacts, and a refresh load before pushes an earlier
# session out.
returning_run() {
  local srv="$1" issuer="$2" pid="$3" db="${4:-}"
  shift 5
  code_flow_env "$issuer" "$2" "$3" "$4" "$5"
  BENCH_COOKIE="$(mint "$@" 1 | head -1 | sed 's/^cookie: //')" BENCH_USER_PREFIX="" BENCH_PASSWORD=""
  measure "$srv.authorization_code" "$issuer/" authorization_code.lua "$pid" "$db"
}

# first_time_run SRV ISSUER PID [DB]: the code flow of a new user every flow.
first_time_run() {
  BENCH_COOKIE="" BENCH_USER_PREFIX="bench-" BENCH_PASSWORD="$password"
  measure "$1.authorization_code_first" "$2/" authorization_code.lua "$3" "${4:-}"
}

# The first-time users (AuthPlane's config; oidc-provider accepts bench-<n>).
password="pw-$(as_rand 24)"
password_hash="$(printf %s "$password" | "$AUTHSERVER_BIN" util hash-password)"
awk -v n="$nusers" -v h="$password_hash" 'BEGIN { for (i = 0; i < n; i++) printf "  - username: bench-%d\n    id: bench-%d\n    password_hash: \"%s\"\n", i, i, h }' >"$work/users.yaml"

echo "bench: wrk -t$threads -c$conns -d$duration (warm-up $warmup), $(nproc) cores, $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2), load average $(loadavg)"

# --- AuthPlane, on each database ----------------------------------------------------
reuse_total=0
authplane_suite() {
  local db="$1" srv dburl ap_pid body out
  srv="authplane-$db"
  unset AUTHPLANE_DATABASE_URL
  if [[ "$db" == postgres ]]; then
    if [[ -z "$pg_started" ]]; then
      eval "$("$root/scripts/postgres.sh" start)"
      pg_started=1
    fi
    local name="bench_$(date +%s)" psql
    psql="$(ls /usr/lib/postgresql/*/bin/psql | sort -V | tail -n 1)"
    "$psql" "$AUTHPLANE_TEST_POSTGRES_URL/postgres" -qc "CREATE DATABASE $name"
    export AUTHPLANE_DATABASE_URL="$AUTHPLANE_TEST_POSTGRES_URL/$name"
    dburl="$AUTHPLANE_DATABASE_URL"
  fi
  # Idle: the e2e configuration as it is, 1 s after start (the first-time
  # users below add ~3 KB each to every later figure).
  as_start "$srv-idle" "$AUTHSERVER_BIN" >/dev/null
  sleep 1
  RESULT[$srv.idle]="$(rss_mb "$E2E_SERVER_PID" VmRSS)"
  as_stop
  AS_PASSWORD="$password" AS_EXTRA_USERS="$work/users.yaml" as_start "$srv" "$AUTHSERVER_BIN" >/dev/null
  dburl="${dburl:-$E2E_DB}"
  ap_pid="$E2E_SERVER_PID"
  echo "$srv: $("$AUTHSERVER_BIN" version 2>/dev/null | head -1) ($db, log level info, access log on), idle RSS ${RESULT[$srv.idle]} MB"

  BENCH_AUTH="$(basic "$E2E_CONF_CLIENT" "$E2E_CONF_SECRET")"
  BENCH_BODY="grant_type=client_credentials&scope=tools%2Fread&resource=$(urlenc "$E2E_RESOURCE")"
  check_token "$E2E_ISSUER/oauth/token" "$BENCH_AUTH" "$BENCH_BODY"
  if wanted client_credentials; then measure "$srv.client_credentials" "$E2E_ISSUER/oauth/token" client_credentials.lua "$ap_pid" "$dburl"; fi
  if wanted client_credentials_dpop; then dpop_run "$srv.client_credentials_dpop" "$E2E_ISSUER/oauth/token" "$ap_pid" "$dburl"; fi

  local who=("$E2E_ISSUER" /oauth/authorize /oauth/token "$E2E_PUBLIC_CLIENT" "$E2E_RESOURCE" "$E2E_USER" "$E2E_PASSWORD")
  if wanted refresh_token; then
    refresh_run "$srv" "$E2E_ISSUER/oauth/token" "$ap_pid" "$dburl" -- "${who[@]}"
    local reuse
    reuse="$(curl -s "$E2E_ADMIN_URL/metrics" | sed -n 's/^authserver_auth_denied_total{reason="refresh_reuse"} //p')"
    echo "  refresh_reuse denials: ${reuse:-0} (must be 0: no token was used twice)"
    reuse_total=$((reuse_total + ${reuse:-0}))
  fi
  if wanted authorization_code; then returning_run "$srv" "$E2E_ISSUER" "$ap_pid" "$dburl" -- "${who[@]}"; fi

  if wanted introspection; then
    BENCH_BODY="token=$(curl -fsS -H "Authorization: $BENCH_AUTH" --data "grant_type=client_credentials&scope=tools%2Fread&resource=$(urlenc "$E2E_RESOURCE")" "$E2E_ISSUER/oauth/token" | json_field access_token)"
    echo "  introspection: active=$(curl -fsS -H "Authorization: $BENCH_AUTH" --data "$BENCH_BODY" "$E2E_ISSUER/oauth/introspect" | json_field active)"
    measure "$srv.introspection" "$E2E_ISSUER/oauth/introspect" client_credentials.lua "$ap_pid" "$dburl"
  fi
  if wanted jwks; then measure "$srv.jwks" "$E2E_ISSUER/.well-known/jwks.json" get.lua "$ap_pid" "$dburl"; fi
  if wanted discovery; then measure "$srv.discovery" "$E2E_ISSUER/.well-known/oauth-authorization-server" get.lua "$ap_pid" "$dburl"; fi

  if wanted authorization_code_first; then first_time_run "$srv" "$E2E_ISSUER" "$ap_pid" "$dburl"; fi
  as_stop
  unset AUTHPLANE_DATABASE_URL
}
for db in $dbs; do authplane_suite "$db"; done

# --- oidc-provider ----------------------------------------------------------------------
run_reference() {
  oidc_secret="$(as_rand 43)"
  resource="https://mcp.bench.test/mcp"
  export BENCH_OIDC_PASSWORD_HASH="$password_hash"
  start_oidc() {
    local port log="$work/oidc-$1.log"
    port="$(as_free_port)"
    node "$oidc/server.mjs" "$port" bench-client "$oidc_secret" "$resource" "$1" >"$log" 2>&1 &
    oidc_pid=$!
    for _ in $(seq 1 100); do grep -q '^listening' "$log" 2>/dev/null && break; sleep 0.1; done
    grep -q '^listening' "$log" || { cat "$log"; echo "bench: oidc-provider did not start"; exit 1; }
    oidc_url="http://127.0.0.1:$port"
  }
  srv=oidc-provider
  start_oidc plain
  sleep 1
  RESULT[$srv.idle]="$(rss_mb "$oidc_pid" VmRSS)"
  echo "oidc-provider $(node -p 'require("'"$oidc"'/node_modules/oidc-provider/package.json").version') on node $(node --version) (in memory), idle RSS ${RESULT[$srv.idle]} MB"
  BENCH_AUTH="$(basic bench-client "$oidc_secret")"
  BENCH_BODY="grant_type=client_credentials&scope=tools%2Fread&resource=$(urlenc "$resource")"
  check_token "$oidc_url/token" "$BENCH_AUTH" "$BENCH_BODY"
  if wanted client_credentials; then measure "$srv.client_credentials" "$oidc_url/token" client_credentials.lua "$oidc_pid"; fi

  local who=("$oidc_url" /auth /token bench-public "$resource" alice "$password")
  if wanted refresh_token; then refresh_run "$srv" "$oidc_url/token" "$oidc_pid" "" -- "${who[@]}"; fi
  if wanted authorization_code; then returning_run "$srv" "$oidc_url" "$oidc_pid" "" -- "${who[@]}"; fi

  if wanted introspection; then
    BENCH_BODY="token=$(curl -fsS -H "Authorization: $BENCH_AUTH" --data "grant_type=client_credentials&scope=tools%2Fread&resource=$(urlenc https://opaque.bench.test/api)" "$oidc_url/token" | json_field access_token)"
    echo "  introspection (opaque token): active=$(curl -fsS -H "Authorization: $BENCH_AUTH" --data "$BENCH_BODY" "$oidc_url/token/introspection" | json_field active)"
    measure "$srv.introspection" "$oidc_url/token/introspection" client_credentials.lua "$oidc_pid"
  fi
  if wanted jwks; then measure "$srv.jwks" "$oidc_url/jwks" get.lua "$oidc_pid"; fi
  if wanted discovery; then measure "$srv.discovery" "$oidc_url/.well-known/openid-configuration" get.lua "$oidc_pid"; fi

  if wanted authorization_code_first; then first_time_run "$srv" "$oidc_url" "$oidc_pid"; fi
  stop_oidc

  # The same server with its dPoP feature on (a fresh process).
  if wanted client_credentials_dpop; then
    start_oidc dpop
    echo "oidc-provider with features.dPoP"
    BENCH_BODY="grant_type=client_credentials&scope=tools%2Fread&resource=$(urlenc "$resource")"
    wrk -t"$threads" -c"$conns" -d"$warmup" -s "$here/client_credentials.lua" "$oidc_url/token" >/dev/null
    dpop_run "$srv.client_credentials_dpop" "$oidc_url/token" "$oidc_pid"
    stop_oidc
  fi
}
if [[ "$reference" != 0 ]]; then run_reference; fi

# --- summary ------------------------------------------------------------------------
servers=()
for db in $dbs; do servers+=("authplane-$db"); done
if [[ "$reference" != 0 ]]; then servers+=(oidc-provider); fi
echo
echo "p50/p99: of the HTTP requests; a code flow is several (the count is after its rate)"
printf '%-42s %9s %8s %8s %9s %8s %8s  %s\n' "server / grant" "ops/s" "p50 ms" "p99 ms" "CPU us/op" "RSS MB" "peak MB" "DB writes per op"
for srv in "${servers[@]}"; do
  for g in "${grants[@]}"; do
    n="$srv.$g"
    printf '%-42s %9s %8s %8s %9s %8s %8s  %s\n' "$n" "${RESULT[$n.tps]}${RESULT[$n.per_op]:+ /${RESULT[$n.per_op]}}" "${RESULT[$n.p50]}" "${RESULT[$n.p99]}" "${RESULT[$n.cpu]}" "${RESULT[$n.rss]}" "${RESULT[$n.hwm]}" "${RESULT[$n.writes]:-none (in memory)}"
  done
done
echo
missed=0
for db in $dbs; do
  srv="authplane-$db"
  hwm=0
  for g in "${grants[@]}"; do
    n="$srv.$g"
    # Memory under the token grants; a first-time login adds its argon2
    # working memory (19 MiB per concurrent hash), reported on its own.
    if [[ "$g" != authorization_code_first ]]; then
      hwm="$(awk -v a="$hwm" -v b="${RESULT[$n.hwm]}" 'BEGIN { print (b > a ? b : a) }')"
    fi
    if [[ "$reference" == 0 ]]; then continue; fi
    r="$(awk -v a="${RESULT[$n.tps]}" -v b="${RESULT[oidc-provider.$g.tps]}" 'BEGIN { printf "%.1f", a / b }')"
    p99_ok=ok
    if [[ "$g" == authorization_code_first ]]; then
      p99_ok="n/a (argon2id per login)"
    elif ! awk -v p="${RESULT[$n.p99]}" 'BEGIN { exit !(p < 5) }'; then
      p99_ok=MISSED; missed=1
    fi
    rate_ok=ok
    if ! awk -v r="$r" 'BEGIN { exit !(r >= 3) }'; then rate_ok=MISSED; missed=1; fi
    echo "ratio $g ${r}x $db   (>= 3x: $rate_ok; p99 ${RESULT[$n.p99]} ms < 5: $p99_ok)"
  done
  line="$srv:"
  if wanted refresh_token && wanted client_credentials; then
    rc="$(awk -v a="${RESULT[$srv.refresh_token.cpu]}" -v b="${RESULT[$srv.client_credentials.cpu]}" 'BEGIN { printf "%.1f", a / b }')"
    cpu_ok=ok; awk -v r="$rc" 'BEGIN { exit !(r <= 2) }' || { cpu_ok=MISSED; missed=1; }
    line+=" refresh CPU ${rc}x client_credentials (<= 2x: $cpu_ok);"
  fi
  rss_ok=ok; awk -v m="$hwm" 'BEGIN { exit !(m < 40) }' || { rss_ok=MISSED; missed=1; }
  idle_ok=ok; awk -v m="${RESULT[$srv.idle]}" 'BEGIN { exit !(m < 20) }' || { idle_ok=MISSED; missed=1; }
  line+=" peak RSS under the token grants $hwm MB (< 40: $rss_ok); idle RSS ${RESULT[$srv.idle]} MB (< 20: $idle_ok)"
  if wanted authorization_code_first; then line+="; peak after first-time logins ${RESULT[$srv.authorization_code_first.hwm]} MB"; fi
  echo "$line"
done
if wanted client_credentials_dpop && wanted client_credentials; then echo "DPoP: authplane with / without $(awk -v a="${RESULT[authplane-sqlite.client_credentials_dpop.tps]:-0}" -v b="${RESULT[authplane-sqlite.client_credentials.tps]:-1}" 'BEGIN { printf "%.2f", a / b }')x of the tokens/s (SQLite)"; fi
echo "load average after: $(loadavg) (other work on the machine skews ops/s; CPU per op much less)"
if [[ $missed -ne 0 ]]; then echo "bench: some targets were missed (see MISSED above)"; fi
errors=0
for n in "${!RESULT[@]}"; do
  if [[ "$n" == *.errors ]]; then errors=$((errors + RESULT[$n])); fi
done
if [[ $errors -ne 0 || $reuse_total -ne 0 ]]; then
  echo "bench: some requests failed; the numbers above are not valid"
  exit 1
fi
