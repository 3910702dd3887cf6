#!/usr/bin/env bash
# The OAuth flows of the authserver driven by clients nobody here wrote:
#   1. node: openid-client + oauth4webapi + jose (flows.test.mjs), the
#      RFC 9700 / OAuth 2.1 negative tests over raw HTTP (negative.test.mjs),
#      DPoP with both clients, a jose-crafted negative matrix and the example
#      MCP server with --dpop-required (dpop.test.mjs), and DPoP nonces on a
#      second server with oauth.dpop_nonce on (dpop-nonce.test.mjs);
#   2. python: authlib + joserfc + requests (py/);
#   3. browser: Debian's Chromium driven by playwright-core (browser.test.mjs),
#      screenshots in e2e/oauth/artifacts/; and sign-in through an identity
#      provider, node oidc-provider with its own login pages
#      (upstream.test.mjs, js/upstream/provider.mjs).
# Each runner gets its own authserver (free loopback ports, temp dir, SQLite),
# stopped afterwards. Prints each runner's summary line; exits non-zero if
# anything failed.
#
# Installs only what is missing or changed: npm packages when package-lock.json
# changed (npm ci), the Python venv in ~/.cache/authplane/venv-<hash of
# requirements.txt>, Chromium with apt-get when /usr/bin/chromium is missing.
#
# Env: AUTHSERVER_BIN (skip the cargo build), E2E_ONLY=node|python|browser
# (comma-separated), E2E_STRICT=1 (known server bugs fail instead of TODO),
# CHROMIUM (default /usr/bin/chromium).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
js="$here/js"
py="$here/py"
artifacts="$here/artifacts"
logs="$artifacts/logs"
only="${E2E_ONLY:-node,python,browser}"
want() { [[ ",$only," == *",$1,"* ]]; }

# shellcheck source=lib/authserver.sh
source "$here/lib/authserver.sh"
# The upstream identity provider of upstream.test.mjs and its temp dir, while they exist.
up_pid=""
up_dir=""
trap 'as_stop; if [[ -n "$up_pid" ]]; then kill "$up_pid" 2>/dev/null || true; fi; if [[ -n "$up_dir" ]]; then rm -rf "$up_dir"; fi' EXIT
trap 'exit 130' INT TERM

rm -rf "$artifacts"
mkdir -p "$logs"
export E2E_ARTIFACTS="$artifacts"

# --- what the runners need ---------------------------------------------------

if [[ -z "${AUTHSERVER_BIN:-}" ]]; then
  echo "e2e-oauth: building authserver"
  "$root/scripts/build-test-bins.sh"
  AUTHSERVER_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/authserver"
fi

if want node || want browser; then
  # shellcheck source=lib/npm.sh
  source "$here/lib/npm.sh"
  npm_ci e2e-oauth "$js"
fi

if want python; then
  # shellcheck source=lib/pyvenv.sh
  source "$here/lib/pyvenv.sh"
  py_venv e2e-oauth "$py/requirements.txt"
fi

if want browser; then
  CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
  if [[ ! -x "$CHROMIUM" ]]; then
    echo "e2e-oauth: installing Debian's chromium"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
  fi
  export CHROMIUM
fi

# --- the runners --------------------------------------------------------------

status=0
passed=0
failed=0
todo=0

node_summary() { # $1 = log
  grep -E '^ℹ (tests|pass|fail|todo) ' "$1" || true
  local p f t
  p="$(sed -n 's/^ℹ pass \([0-9]*\)$/\1/p' "$1" | tail -1)"
  f="$(sed -n 's/^ℹ fail \([0-9]*\)$/\1/p' "$1" | tail -1)"
  t="$(sed -n 's/^ℹ todo \([0-9]*\)$/\1/p' "$1" | tail -1)"
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0}))
  todo=$((todo + ${t:-0}))
  if [[ "${t:-0}" != 0 ]]; then
    # A known-bug test that fails is a TODO; one that passes means the server
    # was fixed and the knownBug() marker should go.
    grep -E '^ *✖ .*# known server bug' "$1" | sed 's/^ *✖ //; s/ ([0-9.]*ms)//' | sort -u | sed 's/^/  TODO (still broken) /' || true
    grep -E '^ *✔ .*# known server bug' "$1" | sed 's/^ *✔ //; s/ ([0-9.]*ms)//' | sort -u | sed 's/^/  FIXED (drop its knownBug marker) /' || true
  fi
  if [[ -z "$p" || "$p" == 0 ]]; then
    echo "e2e-oauth: no node test passed (see $1)"
    return 1
  fi
}

run_node() { # $1 = name, rest = files
  local name="$1"
  shift
  local log="$logs/$name.log"
  as_start "$name" "$AUTHSERVER_BIN"
  echo "e2e-oauth: $name: node --test $*"
  local rc=0
  (cd "$js" && timeout 600 node --test --test-concurrency=1 --test-reporter=spec "$@") >"$log" 2>&1 || rc=$?
  E2E_KEEP_LOGS="$logs/$name-authserver.log" as_stop
  node_summary "$log" || rc=1
  if [[ $rc -ne 0 ]]; then
    status=1
    grep -vE '^\s+at ' "$log" | sed -n '/failing tests:/,$p' | head -n 120
    echo "e2e-oauth: $name FAILED (logs: $log, $logs/$name-authserver.log)"
  fi
}

if want node; then
  run_node node flows.test.mjs negative.test.mjs dpop.test.mjs
  # DPoP nonces need a server with oauth.dpop_nonce on.
  AUTHPLANE_OAUTH_DPOP_NONCE=true run_node dpop-nonce dpop-nonce.test.mjs
  # The DPoP matrix again with the database on Postgres: the replay store
  # (one row per proof under a unique key) is the database's job there.
  # (make test stops its Postgres before this step but keeps the exported
  # URL, so ask the server, not the environment.)
  pg_was_up=0
  "$root/scripts/postgres.sh" status && pg_was_up=1
  eval "$("$root/scripts/postgres.sh" start)"
  pg_db="e2e_dpop_$$"
  psql -q "$AUTHPLANE_TEST_POSTGRES_URL/postgres" -c "CREATE DATABASE $pg_db" >/dev/null
  AUTHPLANE_DATABASE_URL="$AUTHPLANE_TEST_POSTGRES_URL/$pg_db" run_node dpop-postgres dpop.test.mjs
  psql -q "$AUTHPLANE_TEST_POSTGRES_URL/postgres" -c "DROP DATABASE $pg_db" >/dev/null || true
  [[ $pg_was_up == 1 ]] || "$root/scripts/postgres.sh" stop >/dev/null
fi

if want python; then
  log="$logs/python.log"
  as_start python "$AUTHSERVER_BIN"
  echo "e2e-oauth: python: pytest (authlib, joserfc)"
  rc=0
  (cd "$py" && timeout 600 "$venv/bin/python" -m pytest -p no:cacheprovider -q -rfE) >"$log" 2>&1 || rc=$?
  E2E_KEEP_LOGS="$logs/python-authserver.log" as_stop
  summary="$(grep -E '^=*\s*[0-9]+ (passed|failed)|no tests ran' "$log" | tail -1 || true)"
  echo "${summary:-pytest printed no summary}"
  p="$(sed -n 's/.*\b\([0-9]\+\) passed.*/\1/p' <<<"$summary")"
  f="$(sed -n 's/.*\b\([0-9]\+\) failed.*/\1/p' <<<"$summary")"
  e="$(sed -n 's/.*\b\([0-9]\+\) error.*/\1/p' <<<"$summary")"
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0} + ${e:-0}))
  # pytest exits 5 when no test ran: that is a failure here too.
  if [[ $rc -ne 0 || -z "$p" || "$p" == 0 ]]; then
    status=1
    tail -n 80 "$log"
    echo "e2e-oauth: python FAILED (exit $rc; logs: $log, $logs/python-authserver.log)"
  fi
fi

if want browser; then
  run_node browser browser.test.mjs
  # Sign-in through an identity provider: node oidc-provider on a port picked
  # first (AuthPlane's config names it; discovery happens at first sign-in),
  # started once AuthPlane's issuer (its callback URLs) is known.
  up_port="$(as_free_port)"
  up_secret="$(as_rand 32)"
  up_dir="$(mktemp -d "${TMPDIR:-/tmp}/authplane-e2e-upstream.XXXXXX")"
  printf %s "$up_secret" >"$up_dir/corp-secret"
  cat >"$up_dir/upstreams.yaml" <<YAML
upstreams:
  - id: corp
    display_name: Corp SSO
    issuer: http://127.0.0.1:$up_port
    client_id: authplane
    client_secret_file: $up_dir/corp-secret
    scopes: [openid, email, profile]
    allowed_email_domains: [corp.example]
    store_tokens: true
  - id: plain
    display_name: Plain OAuth
    authorization_endpoint: http://127.0.0.1:$up_port/auth
    token_endpoint: http://127.0.0.1:$up_port/token
    userinfo_endpoint: http://127.0.0.1:$up_port/me
    token_endpoint_auth_method: client_secret_post
    client_id: authplane-plain
    client_secret: "$up_secret"
    scopes: [openid, email, profile]
broker:
  # The provider's tokens live 45 s here: fresh for 15 s, then refreshed.
  refresh_before: 30s
YAML
  # Clients of the broker tests, added to as_start's clients: list.
  broker_secret="$(as_rand 43)"
  export E2E_BROKER_CLIENT=e2e-broker E2E_BROKER_SECRET="$broker_secret"
  export E2E_BROKER_OTHER=e2e-broker-files
  cat >"$up_dir/clients.yaml" <<YAML
  - client_id: e2e-broker
    token_endpoint_auth_method: client_secret_basic
    client_secret_sha256: $(as_sha256 "$broker_secret")
    grant_types: [client_credentials]
    allowed_resources: [$E2E_RESOURCE]
    broker_upstreams: [corp]
  - client_id: e2e-broker-files
    token_endpoint_auth_method: client_secret_basic
    client_secret_sha256: $(as_sha256 "$broker_secret")
    grant_types: [client_credentials]
    allowed_resources: [$E2E_RESOURCE2]
    broker_upstreams: [corp]
YAML
  log="$logs/upstream.log"
  AS_EXTRA_CLIENTS="$up_dir/clients.yaml" as_start upstream "$AUTHSERVER_BIN" "$up_dir/upstreams.yaml"
  (cd "$js" && ACCESS_TTL=45 exec node upstream/provider.mjs "$up_port" "$E2E_ISSUER" "$up_secret") >"$logs/upstream-provider.log" 2>&1 &
  up_pid=$!
  for _ in $(seq 1 100); do grep -q '^listening' "$logs/upstream-provider.log" && break; sleep 0.1; done
  echo "e2e-oauth: upstream: node --test upstream.test.mjs (provider http://127.0.0.1:$up_port)"
  rc=0
  (cd "$js" && E2E_UPSTREAM_ISSUER="http://127.0.0.1:$up_port" timeout 600 node --test --test-concurrency=1 --test-reporter=spec upstream.test.mjs) >"$log" 2>&1 || rc=$?
  kill "$up_pid" 2>/dev/null || true
  wait "$up_pid" 2>/dev/null || true
  up_pid=""
  E2E_KEEP_LOGS="$logs/upstream-authserver.log" as_stop
  rm -rf "$up_dir"
  up_dir=""
  node_summary "$log" || rc=1
  if [[ $rc -ne 0 ]]; then
    status=1
    grep -vE '^\s+at ' "$log" | sed -n '/failing tests:/,$p' | head -n 120
    echo "e2e-oauth: upstream FAILED (logs: $log, $logs/upstream-authserver.log, $logs/upstream-provider.log)"
  fi
  if [[ -f "$artifacts/login.png" && -f "$artifacts/consent.png" ]]; then
    echo "e2e-oauth: screenshots: $(cd "$artifacts" && ls ./*.png | tr '\n' ' ')(in $artifacts)"
  else
    echo "e2e-oauth: browser screenshots missing"
    status=1
  fi
fi

if [[ $todo -gt 0 ]]; then
  echo "e2e-oauth: $todo test(s) marked as known server bugs (TODO; E2E_STRICT=1 makes them count)"
fi
echo "e2e-oauth: $passed passed, $failed failed"
exit $status
