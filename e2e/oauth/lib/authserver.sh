# Sourced by e2e/oauth/run.sh and e2e/bench/run.sh: start and stop a throw-away
# authserver on free loopback ports, in a temp dir, on SQLite.
#
#   as_start NAME BIN [EXTRA_YAML]
#                         starts it and exports the E2E_* variables below;
#                         EXTRA_YAML is appended to the config, and the file
#                         $AS_EXTRA_CLIENTS (if set) to its clients: list,
#                         and the file $AS_EXTRA_USERS (if set) to its users:
#   as_stop               stops it (SIGTERM, then SIGKILL) and removes its dir
#
# Exported for the tests: E2E_ISSUER (= the public base URL), E2E_ADMIN_URL,
# E2E_ADMIN_KEY, E2E_USER, E2E_PASSWORD, E2E_RESOURCE, E2E_RESOURCE2,
# E2E_PUBLIC_CLIENT (public, loopback + https redirect URIs),
# E2E_CONF_CLIENT / E2E_CONF_SECRET (client_secret_basic, every grant),
# E2E_CC_CLIENT / E2E_CC_SECRET (client_credentials only), E2E_SERVER_LOG,
# E2E_SERVER_PID, E2E_DB (the SQLite file).

as_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

as_rand() { head -c 32 /dev/urandom | base64 | tr -d '/+=\n' | head -c "${1:-32}"; }

as_sha256() { printf %s "$1" | sha256sum | cut -d' ' -f1; }

# as_start NAME BIN [EXTRA_YAML_FILE]
as_start() {
  local name="$1" bin extra="${3:-}"
  bin="$(realpath "$2")"
  AS_DIR="$(mktemp -d "${TMPDIR:-/tmp}/authplane-e2e-$name.XXXXXX")"
  export E2E_ADMIN_KEY="e2e-admin-$(as_rand 24)"
  export E2E_USER="alice"
  export E2E_PASSWORD="${AS_PASSWORD:-pw-$(as_rand 20)}"
  export E2E_RESOURCE="https://mcp.e2e.test/mcp"
  export E2E_RESOURCE2="https://files.e2e.test/mcp"
  export E2E_PUBLIC_CLIENT="e2e-public"
  export E2E_CONF_CLIENT="e2e-confidential"
  export E2E_CONF_SECRET="$(as_rand 43)"
  export E2E_CC_CLIENT="e2e-machine"
  export E2E_CC_SECRET="$(as_rand 43)"
  export E2E_DB="$AS_DIR/authplane.db"
  export E2E_SERVER_LOG="$AS_DIR/server.log"
  local hash
  hash="$(printf %s "$E2E_PASSWORD" | "$bin" util hash-password)"
  local try port
  for try in 1 2 3; do
    port="$(as_free_port)"
    export E2E_ISSUER="http://127.0.0.1:$port"
    cat >"$AS_DIR/config.yaml" <<YAML
server:
  issuer: $E2E_ISSUER
  listen: 127.0.0.1:$port
admin:
  listen: 127.0.0.1:0
  api_key: $E2E_ADMIN_KEY
database:
  url: sqlite://$E2E_DB?mode=rwc
signing:
  key_store: file
  key_dir: $AS_DIR/keys
oauth:
  require_scope: false
  unknown_scopes: drop
  # These suites check that a reused refresh token revokes its family at once;
  # the reuse interval has its own tests (server/tests/api).
  refresh_reuse_interval: 0
limits:
  # The suites register many clients from 127.0.0.1; e2e/abuse tests the limit.
  registrations_per_minute: 0
log:
  level: info
  format: logfmt
resources:
  - resource: $E2E_RESOURCE
    name: E2E MCP server
    scopes: [tools/read, tools/write]
    default_scopes: [tools/read]
  - resource: $E2E_RESOURCE2
    name: E2E file server
    scopes: [files/read]
clients:
  - client_id: $E2E_PUBLIC_CLIENT
    client_name: E2E public client
    token_endpoint_auth_method: none
    redirect_uris: ["http://127.0.0.1/callback", "https://app.e2e.test/oauth/callback"]
    grant_types: [authorization_code, refresh_token]
  - client_id: $E2E_CONF_CLIENT
    client_name: E2E confidential client
    token_endpoint_auth_method: client_secret_basic
    client_secret_sha256: $(as_sha256 "$E2E_CONF_SECRET")
    redirect_uris: ["http://127.0.0.1/callback"]
    grant_types: [authorization_code, refresh_token, client_credentials]
    allowed_resources: [$E2E_RESOURCE, $E2E_RESOURCE2]
  - client_id: $E2E_CC_CLIENT
    client_name: E2E machine client
    token_endpoint_auth_method: client_secret_post
    client_secret_sha256: $(as_sha256 "$E2E_CC_SECRET")
    grant_types: [client_credentials]
    allowed_resources: [$E2E_RESOURCE, $E2E_RESOURCE2]
$(if [[ -n "${AS_EXTRA_CLIENTS:-}" ]]; then cat "$AS_EXTRA_CLIENTS"; fi)
users:
  - username: $E2E_USER
    id: user-e2e-alice
    name: Alice E2E
    email: alice@e2e.test
    password_hash: "$hash"
$(if [[ -n "${AS_EXTRA_USERS:-}" ]]; then cat "$AS_EXTRA_USERS"; fi)
YAML
    if [[ -n "$extra" ]]; then cat "$extra" >>"$AS_DIR/config.yaml"; fi
    (cd "$AS_DIR" && exec "$bin" --config "$AS_DIR/config.yaml" serve) >"$E2E_SERVER_LOG" 2>&1 &
    E2E_SERVER_PID=$!
    export E2E_SERVER_PID
    local i
    for i in $(seq 1 300); do
      if grep -q 'msg="authserver started"' "$E2E_SERVER_LOG" 2>/dev/null; then
        local admin
        admin="$(grep -m1 'msg="authserver started"' "$E2E_SERVER_LOG" | sed -n 's/.* admin=\([^ ]*\).*/\1/p')"
        export E2E_ADMIN_URL="http://$admin"
        if curl -fsS "$E2E_ISSUER/health" >/dev/null 2>&1; then
          echo "$name: authserver $E2E_ISSUER (admin $E2E_ADMIN_URL, pid $E2E_SERVER_PID, dir $AS_DIR)"
          return 0
        fi
      fi
      if ! kill -0 "$E2E_SERVER_PID" 2>/dev/null; then break; fi
      sleep 0.1
    done
    echo "$name: authserver did not start (try $try):" >&2
    tail -n 20 "$E2E_SERVER_LOG" >&2
    kill "$E2E_SERVER_PID" 2>/dev/null || true
    wait "$E2E_SERVER_PID" 2>/dev/null || true
  done
  return 1
}

as_stop() {
  if [[ -n "${E2E_SERVER_PID:-}" ]] && kill -0 "$E2E_SERVER_PID" 2>/dev/null; then
    kill -TERM "$E2E_SERVER_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 100); do kill -0 "$E2E_SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$E2E_SERVER_PID" 2>/dev/null || true
    wait "$E2E_SERVER_PID" 2>/dev/null || true
  fi
  E2E_SERVER_PID=""
  if [[ -n "${AS_DIR:-}" && -d "$AS_DIR" ]]; then
    if [[ -n "${E2E_KEEP_LOGS:-}" ]]; then cp "$AS_DIR/server.log" "$E2E_KEEP_LOGS" 2>/dev/null || true; fi
    rm -rf "$AS_DIR"
  fi
  AS_DIR=""
}
