#!/usr/bin/env bash
# /metrics of a real authserver through parsers nobody here wrote:
# prometheus_client's (the Python client library's OpenMetrics and text-format
# parsers) and `promtool check metrics` (Prometheus' own linter). check.py
# starts from a fresh server, drives a little traffic and checks the
# exposition against docs/reference/metrics.md and the traffic (see check.py).
#
# Installs only what is missing or changed: the Python venv in
# ~/.cache/authplane/venv-<hash of requirements.txt and the Python version>,
# and Debian's `prometheus` package (for promtool) when promtool is missing.
#
#   e2e/metrics/run.sh      # prints "N passed, M failed"; exit 1 on failure
#
# Env: AUTHSERVER_BIN (skip the cargo build), PROMTOOL (default: promtool on
# PATH, else /usr/bin/promtool after apt-get install prometheus).
# Expositions and the server log of the last run: e2e/metrics/artifacts/.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
artifacts="$here/artifacts"

# shellcheck source=../oauth/lib/authserver.sh
source "$root/e2e/oauth/lib/authserver.sh"
trap 'as_stop' EXIT
trap 'exit 130' INT TERM

rm -rf "$artifacts"
mkdir -p "$artifacts"

if [[ -z "${AUTHSERVER_BIN:-}" ]]; then
  echo "e2e-metrics: building authserver"
  "$root/scripts/build-test-bins.sh"
  AUTHSERVER_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/authserver"
fi

# shellcheck source=../oauth/lib/pyvenv.sh
source "$root/e2e/oauth/lib/pyvenv.sh"
py_venv e2e-metrics "$here/requirements.txt"

# promtool comes with Debian's prometheus package (about 20 MB; its service is
# not started: nothing here runs Prometheus itself).
PROMTOOL="${PROMTOOL:-$(command -v promtool || true)}"
if [[ -z "$PROMTOOL" ]]; then
  echo "e2e-metrics: installing Debian's prometheus (for promtool)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  PROMTOOL=/usr/bin/promtool
fi
export PROMTOOL
echo "e2e-metrics: $("$PROMTOOL" --version 2>&1 | head -n 1)"

as_start metrics "$AUTHSERVER_BIN"
rc=0
METRICS_ARTIFACTS="$artifacts" timeout 120 "$venv/bin/python" "$here/check.py" || rc=$?
E2E_KEEP_LOGS="$artifacts/authserver.log" as_stop
if [[ $rc -ne 0 ]]; then
  echo "e2e-metrics: FAILED (expositions and server log in $artifacts)"
fi
exit $rc
