#!/usr/bin/env bash
# Measures the example MCP server's memory under bounded initialize storms
# (loopback only) with the real authserver: 6,000 initializes with one token,
# then 6,000 spread over 200 principals (which reaches the global cap).
# Prints one JSON summary per run; exits non-zero when a run ends above its
# bound. See docs/guides/protect-an-mcp-server.md, "Sessions".
#
# Env: STORM_COUNT (6000), STORM_MAX_RSS_MB (32), STORM_MAX_RSS_MB_MANY (80:
# start-up size + max_sessions (1,000) x ~55 KB).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$root"
scripts/build-test-bins.sh
js="$root/sdk/tests/js"
[[ -d "$js/node_modules/jose" ]] || (cd "$js" && npm ci --no-audit --no-fund --loglevel=error)
n="${STORM_COUNT:-6000}"
cd "$js"
node bench/session-storm.mjs --count "$n" --principals 1 --max-rss-mb "${STORM_MAX_RSS_MB:-32}"
node bench/session-storm.mjs --count "$n" --principals 200 --max-rss-mb "${STORM_MAX_RSS_MB_MANY:-80}"
