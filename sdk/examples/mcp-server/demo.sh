#!/usr/bin/env bash
# Starts AuthPlane (config/dev.yaml, :9000/:9001) and the example MCP server
# (:8080) together, prints what to point an MCP client at, and stops both on
# Ctrl-C. Meant for `make demo`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$root"
cargo build --quiet -p authplane-server --bin authserver -p authplane-example-mcp-server --bin mcp-server
bin="${CARGO_TARGET_DIR:-$root/target}/debug"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

mkdir -p data
"$bin/authserver" --config config/dev.yaml &
pids+=($!)
for _ in $(seq 1 50); do
  curl -sf http://localhost:9000/health >/dev/null 2>&1 && break
  sleep 0.2
done
"$bin/mcp-server" &
pids+=($!)
sleep 1

cat <<'MSG'

AuthPlane:        http://localhost:9000   (admin/metrics on :9001)
MCP server:       http://localhost:8080/mcp
PRM:              http://localhost:8080/.well-known/oauth-protected-resource/mcp
Login:            alice / dev-password

Point your MCP client at http://localhost:8080/mcp, for example:
  npx @modelcontextprotocol/inspector     (then connect to the URL above)

Ctrl-C stops both.
MSG
wait -n "${pids[@]}"
