#!/usr/bin/env bash
# Builds every binary the test scripts start (authserver, mcp-server,
# authplane-operator) into target/debug.
#
# Every test script builds through here, and `make test` resolves features the
# same way (`--workspace` with the test targets selected), so the dependency
# graph is compiled once per profile. A `cargo build -p <one package>` would
# resolve a different feature set and compile much of the graph a second time
# (minutes of CPU and gigabytes of target/ each time).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec cargo build --workspace --bins --tests --locked --quiet "$@"
