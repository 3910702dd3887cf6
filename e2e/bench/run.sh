#!/usr/bin/env bash
# `make bench`: tokens per second of the authserver (release build, SQLite,
# audit rows durable) for client_credentials and refresh_token, and of node
# oidc-provider (in memory, ES256 JWT access tokens, resource indicators) for
# client_credentials under the same wrk load, in one run. Prints tokens/s,
# p50/p99, RSS (VmRSS and peak VmHWM from /proc), database writes per grant
# and the ratio. Loopback only; every load is bounded by wrk's -d.
#
# Method
# - wrk -t2 -c32 -d10s (issue 3's baseline), after a 2 s warm-up, one server
#   at a time on the 2-core machine; wrk shares the cores with the server.
# - client_credentials: the same POST each time (client_secret_basic,
#   resource, scope), against both servers.
# - refresh_token: refresh tokens rotate and a reused one revokes its family,
#   so each request needs a fresh one. 64 grants are minted first through
#   the real authorization-code flow (mint-refresh.mjs); each wrk thread owns
#   a pool of them and puts back the rotated token from every answer
#   (refresh_token.lua), so every connection is a client keeping its grant
#   alive, and no token is ever used twice.
# - server CPU per token: user+system time of the server process (/proc/PID/stat)
#   over the measured run, divided by the tokens issued; wrk's own CPU is not
#   in it, and it moves much less than tokens/s when other work shares the cores.
# - DB writes per grant: row counts of every table (plus rows marked spent)
#   before and after the measured run, divided by the successful requests.
# - client_credentials with DPoP (RFC 9449), on both servers: each request
#   carries a fresh proof, pre-signed with node:crypto (mint-proofs.mjs; a
#   proof is single use), so the load measures proof verification, the
#   replay check (AuthPlane: one row in dpop_proofs; oidc-provider: its
#   in-memory cache) and the bound token, not the client's signing. No
#   warm-up for these runs (the servers are warm from the plain run).
#
# Env: BENCH_THREADS (2), BENCH_CONNECTIONS (32), BENCH_DURATION (10s),
# BENCH_WARMUP (2s), BENCH_DPOP_PROOFS (300000: proofs signed per DPoP run),
# AUTHSERVER_BIN (skip the release build).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
oidc="$here/oidc"
threads="${BENCH_THREADS:-2}"
conns="${BENCH_CONNECTIONS:-32}"
duration="${BENCH_DURATION:-10s}"
warmup="${BENCH_WARMUP:-2s}"
dpop_proofs="${BENCH_DPOP_PROOFS:-300000}"

# shellcheck source=../oauth/lib/authserver.sh
source "$root/e2e/oauth/lib/authserver.sh"
# shellcheck source=lib.sh
source "$here/lib.sh"
work="$(mktemp -d "${TMPDIR:-/tmp}/authplane-bench.XXXXXX")"
oidc_pid=""
cleanup() {
  as_stop
  if [[ -n "$oidc_pid" ]]; then
    kill "$oidc_pid" 2>/dev/null || true
    wait "$oidc_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools ----------------------------------------------------------------------
bench_prepare
# shellcheck source=../oauth/lib/npm.sh
source "$root/e2e/oauth/lib/npm.sh"
npm_ci bench "$oidc"

# --- helpers: e2e/bench/lib.sh ---------------------------------------------------

# writes_per_grant BEFORE_JSON AFTER_JSON OK -> "N (table +x, ...)"
writes_per_grant() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
a, b, n = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
parts, total = [], 0.0
for k in sorted(b):
    d = (b[k] - a.get(k, 0)) / max(n, 1)
    if abs(d) >= 0.005:
        parts.append(f"{k} {d:+.2f}")
        total += d
print(f"{total:.2f} ({', '.join(parts)})")
PY
}

echo "bench: wrk -t$threads -c$conns -d$duration (warm-up $warmup), $(nproc) cores, $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"

# --- AuthPlane --------------------------------------------------------------------
as_start authplane "$AUTHSERVER_BIN"
ap_pid="$E2E_SERVER_PID"
cc_body="grant_type=client_credentials&scope=tools%2Fread&resource=$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$E2E_RESOURCE")"
echo "authplane $("$AUTHSERVER_BIN" version 2>/dev/null | head -1) (SQLite, log level info, access log on)"
check_token "$E2E_ISSUER/oauth/token" "$(basic "$E2E_CONF_CLIENT" "$E2E_CONF_SECRET")" "$cc_body"

export BENCH_AUTH BENCH_BODY
BENCH_AUTH="$(basic "$E2E_CONF_CLIENT" "$E2E_CONF_SECRET")"
BENCH_BODY="$cc_body"
wrk -t"$threads" -c"$conns" -d"$warmup" -s "$here/client_credentials.lua" "$E2E_ISSUER/oauth/token" >/dev/null
before="$(python3 "$here/dbstat.py" "$E2E_DB")"
run_wrk authplane.client_credentials "$E2E_ISSUER/oauth/token" client_credentials.lua "$ap_pid"
after="$(python3 "$here/dbstat.py" "$E2E_DB")"
RESULT[authplane.client_credentials.writes]="$(writes_per_grant "$before" "$after" "${RESULT[authplane.client_credentials.ok]}")"

# dpop_run NAME TOKEN_ENDPOINT PID: client_credentials with a proof per request.
dpop_run() {
  local name="$1" url="$2" pid="$3" check
  check="$(curl -fsS -H "Authorization: $BENCH_AUTH" -H 'Content-Type: application/x-www-form-urlencoded' \
    -H "DPoP: $(cd "$here" && node mint-proofs.mjs "$url" 1)" --data "$BENCH_BODY" "$url")"
  echo "  with a proof: token_type $(python3 -c 'import json,sys; print(json.load(sys.stdin)["token_type"])' <<<"$check")"
  echo "  signing $dpop_proofs DPoP proofs (node:crypto)"
  (cd "$here" && node mint-proofs.mjs "$url" "$dpop_proofs") >"$work/proofs.txt"
  BENCH_PROOFS="$work/proofs.txt" run_wrk "$name" "$url" client_credentials_dpop.lua "$pid"
}
export BENCH_PROOFS
before="$(python3 "$here/dbstat.py" "$E2E_DB")"
dpop_run authplane.client_credentials_dpop "$E2E_ISSUER/oauth/token" "$ap_pid"
after="$(python3 "$here/dbstat.py" "$E2E_DB")"
RESULT[authplane.client_credentials_dpop.writes]="$(writes_per_grant "$before" "$after" "${RESULT[authplane.client_credentials_dpop.ok]}")"

echo "  minting 64 refresh-token grants through the code flow"
(cd "$here" && node mint-refresh.mjs 64) >"$work/tokens.txt"
export BENCH_TOKENS="$work/tokens.txt" BENCH_CLIENT_ID="$E2E_PUBLIC_CLIENT"
before="$(python3 "$here/dbstat.py" "$E2E_DB")"
run_wrk authplane.refresh_token "$E2E_ISSUER/oauth/token" refresh_token.lua "$ap_pid"
after="$(python3 "$here/dbstat.py" "$E2E_DB")"
RESULT[authplane.refresh_token.writes]="$(writes_per_grant "$before" "$after" "${RESULT[authplane.refresh_token.ok]}")"
reuse="$(curl -s "$E2E_ADMIN_URL/metrics" | sed -n 's/^authserver_auth_denied_total{reason="refresh_reuse"} //p')"
echo "  refresh_reuse denials during the run: ${reuse:-0} (must be 0: no token was used twice)"
as_stop

# --- oidc-provider --------------------------------------------------------------------
port="$(as_free_port)"
oidc_secret="$(as_rand 43)"
resource="https://mcp.bench.test/mcp"
node "$oidc/server.mjs" "$port" bench-client "$oidc_secret" "$resource" >"$work/oidc.log" 2>&1 &
oidc_pid=$!
for _ in $(seq 1 100); do grep -q '^listening' "$work/oidc.log" 2>/dev/null && break; sleep 0.1; done
grep -q '^listening' "$work/oidc.log" || { cat "$work/oidc.log"; echo "bench: oidc-provider did not start"; exit 1; }
echo "oidc-provider $(node -p 'require("'"$oidc"'/node_modules/oidc-provider/package.json").version') on node $(node --version) (in memory)"
BENCH_AUTH="$(basic bench-client "$oidc_secret")"
BENCH_BODY="grant_type=client_credentials&scope=tools%2Fread&resource=$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$resource")"
check_token "http://127.0.0.1:$port/token" "$BENCH_AUTH" "$BENCH_BODY"
wrk -t"$threads" -c"$conns" -d"$warmup" -s "$here/client_credentials.lua" "http://127.0.0.1:$port/token" >/dev/null
run_wrk oidc-provider.client_credentials "http://127.0.0.1:$port/token" client_credentials.lua "$oidc_pid"
kill "$oidc_pid"
wait "$oidc_pid" 2>/dev/null || true
oidc_pid=""

# The same with oidc-provider's dPoP feature on (a fresh process).
port="$(as_free_port)"
node "$oidc/server.mjs" "$port" bench-client "$oidc_secret" "$resource" dpop >"$work/oidc-dpop.log" 2>&1 &
oidc_pid=$!
for _ in $(seq 1 100); do grep -q '^listening' "$work/oidc-dpop.log" 2>/dev/null && break; sleep 0.1; done
grep -q '^listening' "$work/oidc-dpop.log" || { cat "$work/oidc-dpop.log"; echo "bench: oidc-provider (dPoP) did not start"; exit 1; }
echo "oidc-provider with features.dPoP"
wrk -t"$threads" -c"$conns" -d"$warmup" -s "$here/client_credentials.lua" "http://127.0.0.1:$port/token" >/dev/null
dpop_run oidc-provider.client_credentials_dpop "http://127.0.0.1:$port/token" "$oidc_pid"
kill "$oidc_pid"
wait "$oidc_pid" 2>/dev/null || true
oidc_pid=""

# --- summary ------------------------------------------------------------------------
echo
printf '%-34s %9s %8s %8s %11s %8s %8s  %s\n' "server / grant" "tokens/s" "p50 ms" "p99 ms" "CPU us/tok" "RSS MB" "peak MB" "DB writes per grant"
for name in authplane.client_credentials authplane.client_credentials_dpop authplane.refresh_token oidc-provider.client_credentials oidc-provider.client_credentials_dpop; do
  printf '%-34s %9s %8s %8s %11s %8s %8s  %s\n' "$name" "${RESULT[$name.tps]}" "${RESULT[$name.p50]}" "${RESULT[$name.p99]}" "${RESULT[$name.cpu]}" "${RESULT[$name.rss]}" "${RESULT[$name.hwm]}" "${RESULT[$name.writes]:-none (in memory)}"
done
ratio="$(awk -v a="${RESULT[authplane.client_credentials.tps]}" -v b="${RESULT[oidc-provider.client_credentials.tps]}" 'BEGIN { printf "%.2f", a / b }')"
echo
cpu_ratio="$(awk -v a="${RESULT[authplane.client_credentials.cpu]}" -v b="${RESULT[oidc-provider.client_credentials.cpu]}" 'BEGIN { printf "%.2f", b / a }')"
echo "ratio (client_credentials tokens/s, authplane / oidc-provider): ${ratio}x   (issue 3 target: >= 2x, p99 < 10 ms, RSS < 40 MB)"
echo "ratio (client_credentials server CPU per token, oidc-provider / authplane): ${cpu_ratio}x"
dpop_ratio="$(awk -v a="${RESULT[authplane.client_credentials_dpop.tps]}" -v b="${RESULT[oidc-provider.client_credentials_dpop.tps]}" 'BEGIN { printf "%.2f", a / b }')"
dpop_cost="$(awk -v a="${RESULT[authplane.client_credentials_dpop.tps]}" -v b="${RESULT[authplane.client_credentials.tps]}" 'BEGIN { printf "%.2f", a / b }')"
echo "ratio (client_credentials with DPoP on both sides, authplane / oidc-provider): ${dpop_ratio}x   (issue 13 target: >= 3x)"
echo "authplane with DPoP / without: ${dpop_cost}x of the tokens/s (issue 13 target: at most one extra DB write per token)"
echo "load average after: $(loadavg) (other work on the machine skews tokens/s; CPU per token much less)"
errors=$(( ${RESULT[authplane.client_credentials.errors]} + ${RESULT[authplane.client_credentials_dpop.errors]} + ${RESULT[authplane.refresh_token.errors]} + ${RESULT[oidc-provider.client_credentials.errors]} + ${RESULT[oidc-provider.client_credentials_dpop.errors]} ))
if [[ $errors -ne 0 || "${reuse:-0}" != 0 ]]; then
  echo "bench: some requests failed; the numbers above are not valid"
  exit 1
fi
