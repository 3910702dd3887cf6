#!/usr/bin/env bash
# Runs every test of authplane-sdk: unit and doc tests, the Rust integration
# tests against the real authserver (tokens minted by jose), and the node
# tests that drive the example MCP server with the official MCP TypeScript
# SDK. Called by `make test`; prints each runner's summary lines.
#
# Env: SDK_RUST_TESTS=0 runs only the node tests.
# Needs: cargo, node >= 20, npm. Installs the pinned npm packages only when
# node_modules does not match package-lock.json.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
js="$here/js"
logs="${SDK_TEST_LOG_DIR:-$root/target/sdk-tests}"
mkdir -p "$logs"

# 1. npm packages, pinned by package-lock.json; `npm ci` only when the lock changed.
# shellcheck source=../../e2e/oauth/lib/npm.sh
source "$root/e2e/oauth/lib/npm.sh"
npm_ci sdk "$js"

# 2. Binaries the tests start: the AS and the example MCP server.
cd "$root"
scripts/build-test-bins.sh
export AUTHSERVER_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/authserver"
export MCP_SERVER_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/mcp-server"

status=0

# 3. Rust: unit, doc and integration tests. `make test` has run them already in
#    its workspace step (SDK_RUST_TESTS=0); `-p authplane-sdk` resolves its own
#    feature set, so running it there would compile the dependency graph again.
if [[ "${SDK_RUST_TESTS:-1}" == 0 ]]; then
  echo "sdk: Rust tests ran in the workspace step (cargo test --workspace)"
else
  echo "sdk: cargo test -p authplane-sdk"
  if cargo test --locked -p authplane-sdk >"$logs/cargo-test.log" 2>&1; then
    grep -E '^test result:' "$logs/cargo-test.log"
  else
    status=1
    tail -n 80 "$logs/cargo-test.log"
  fi
fi

# 4. Node: the example MCP server driven by independent clients.
echo "sdk: node --test (sdk/tests/js)"
if (cd "$js" && node --test --test-reporter=spec ./*.test.mjs) >"$logs/node-test.log" 2>&1; then
  grep -E '^ℹ (tests|pass|fail|skipped)' "$logs/node-test.log"
else
  status=1
  tail -n 80 "$logs/node-test.log"
fi

if [[ $status -ne 0 ]]; then
  echo "sdk: FAILED (full logs in $logs)"
fi
exit $status
