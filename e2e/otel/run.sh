#!/usr/bin/env bash
# The authserver's OpenTelemetry traces, received by a real collector.
#
# Starts the minimal collector from e2e/tools/otelcol (collector.sh: OTLP
# gRPC + HTTP on loopback, the file exporter writing OTLP JSON), then three
# throw-away authservers (e2e/oauth/lib/authserver.sh: free ports, temp dir,
# SQLite), one after the other, each exporting to it:
#   ratio0   AUTHPLANE_OTEL_PROTOCOL=grpc, AUTHPLANE_OTEL_SAMPLE_RATIO=0, no
#            service name (the default, authplane)
#   grpc     grpc, ratio 1, service name authplane-e2e-grpc
#   http     http/protobuf, ratio 1, service name authplane-e2e-http
# drive.py sends the requests (client_credentials; an authorization_code flow
# through login and consent whose token request fails PKCE; incoming
# traceparents, sampled and not) and records the responses; after each run
# `check.py wait` waits until the collector's file holds the traces that must
# be there; at the end `check.py check` asserts on the traces, the responses
# and the server logs (every check in <work>/check.log; printed: what did not
# pass, known server bugs as TODO, and "otel: N passed, M failed").
#
# Env: AUTHSERVER_BIN (skip the cargo build), OTELCOL_BIN (skip the collector
# build), E2E_OTEL_WAIT (seconds to wait for each run's traces, default 30),
# E2E_OTEL_KEEP=1 (keep the work dir even when everything passed),
# E2E_STRICT=1 (known server bugs fail instead of TODO).
# The work dir (collector config, log and traces.jsonl, each server's log,
# what drive.py recorded) is kept when anything fails and its path printed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
wait_s="${E2E_OTEL_WAIT:-30}"

# shellcheck source=e2e/oauth/lib/authserver.sh
source "$root/e2e/oauth/lib/authserver.sh"

work="$(mktemp -d "${TMPDIR:-/tmp}/authplane-e2e-otel.XXXXXX")"
keep="${E2E_OTEL_KEEP:-0}"
# shellcheck disable=SC2317 # run by the EXIT trap
finish() {
  local rc=$?
  as_stop
  "$here/collector.sh" stop "$work/collector" 2>/dev/null || true
  if [[ $rc -eq 0 && "$keep" != 1 ]]; then
    rm -rf "$work"
  else
    echo "e2e-otel: work dir kept: $work (check.log, collector/traces.jsonl, collector/otelcol.log, <run>-authserver.log, <run>-requests.jsonl)"
  fi
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

# --- what it needs -------------------------------------------------------------

if [[ -z "${AUTHSERVER_BIN:-}" ]]; then
  echo "e2e-otel: building authserver"
  "$root/scripts/build-test-bins.sh"
  AUTHSERVER_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/authserver"
fi

# The same venv as e2e/oauth/run.sh (same key: its requirements.txt and the
# Python version): drive.py uses requests and e2e/oauth/py/conftest.py.
py="$root/e2e/oauth/py"
# shellcheck source=../oauth/lib/pyvenv.sh
source "$root/e2e/oauth/lib/pyvenv.sh"
py_venv e2e-otel "$py/requirements.txt"

# --- the collector ---------------------------------------------------------------

eval "$("$here/collector.sh" start "$work/collector")"
: "${OTELCOL_GRPC:?}" "${OTELCOL_HTTP:?}" "${OTELCOL_TRACES:?}"

# --- the authserver runs -------------------------------------------------------------

runs="$work/runs.jsonl"
: >"$runs"

run() { # name protocol ratio service_name(empty = default) scenario
  local name="$1" protocol="$2" ratio="$3" service="$4" scenario="$5" endpoint
  case "$protocol" in
    grpc) endpoint="$OTELCOL_GRPC" ;;
    http/protobuf) endpoint="$OTELCOL_HTTP" ;;
  esac
  export AUTHPLANE_OTEL_ENDPOINT="$endpoint" AUTHPLANE_OTEL_PROTOCOL="$protocol" AUTHPLANE_OTEL_SAMPLE_RATIO="$ratio"
  if [[ -n "$service" ]]; then export AUTHPLANE_OTEL_SERVICE_NAME="$service"; else unset AUTHPLANE_OTEL_SERVICE_NAME; fi
  as_start "otel-$name" "$AUTHSERVER_BIN"
  local rc=0
  "$venv/bin/python" "$here/drive.py" "$scenario" "$work/$name-requests.jsonl" "$work/$name-secrets.json" || rc=$?
  if [[ $rc -eq 0 ]]; then
    python3 "$here/check.py" wait "$OTELCOL_TRACES" "$work/$name-requests.jsonl" "$wait_s" || rc=$?
  fi
  E2E_KEEP_LOGS="$work/$name-authserver.log" as_stop
  unset AUTHPLANE_OTEL_ENDPOINT AUTHPLANE_OTEL_PROTOCOL AUTHPLANE_OTEL_SAMPLE_RATIO AUTHPLANE_OTEL_SERVICE_NAME
  python3 - "$runs" "$name" "$protocol" "$ratio" "${service:-authplane}" "$work" <<'PY'
import json, sys
runs, name, protocol, ratio, service, work = sys.argv[1:]
with open(runs, "a") as f:
    f.write(json.dumps({"name": name, "protocol": protocol, "sample_ratio": float(ratio), "service_name": service,
                        "requests": f"{work}/{name}-requests.jsonl", "secrets": f"{work}/{name}-secrets.json",
                        "server_log": f"{work}/{name}-authserver.log"}) + "\n")
PY
  if [[ $rc -ne 0 ]]; then
    echo "e2e-otel: $name: failed; last server log lines:"
    tail -n 15 "$work/$name-authserver.log" 2>/dev/null | sed 's/^/  /'
    echo "e2e-otel: $name: collector log:"
    grep -v 'Everything is ready\|Starting' "$work/collector/otelcol.log" | tail -n 5 | sed 's/^/  /'
    exit 1
  fi
}

# ratio0 first: its one sampled trace arriving shows the export path works,
# and the later runs give any straggler from it time to show up before the
# final check.
run ratio0 grpc 0 "" ratio0
run grpc grpc 1.0 authplane-e2e-grpc sampled
run http http/protobuf 1.0 authplane-e2e-http sampled

# Stopping the collector flushes the file exporter.
"$here/collector.sh" stop "$work/collector"
# Every check goes to check.log (kept with the work dir on failure); the
# terminal gets what failed, one line per known server bug, and the summary.
rc=0
python3 "$here/check.py" check "$OTELCOL_TRACES" "$runs" >"$work/check.log" 2>&1 || rc=$?
grep -Ev '^(ok  |TODO \[)' "$work/check.log" || true
exit "$rc"
