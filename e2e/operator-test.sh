#!/usr/bin/env bash
# The operator's end-to-end tests on a real control plane (e2e/cluster.sh):
# builds the operator and the authserver, starts a throw-away cluster in its
# own state dir, installs the CRDs (from `authplane-operator crds`) and the
# ServiceMonitor CRD, runs operator/tests/e2e (each test in its own namespace
# with its own operator process), and tears the cluster down. Exit status is
# the test runner's.
#
#   e2e/operator-test.sh                 # all tests
#   e2e/operator-test.sh rotation        # tests whose name contains "rotation"
#   KEEP=1 E2E_VERBOSE=1 e2e/operator-test.sh   # keep the cluster, echo process logs
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export AUTHPLANE_CLUSTER_DIR="${AUTHPLANE_OPERATOR_E2E_DIR:-${TMPDIR:-/tmp}/authplane-operator-e2e-$$}"

echo "==> building authplane-operator, authserver and the e2e tests" >&2
scripts/build-test-bins.sh
export AUTHPLANE_OPERATOR_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/authplane-operator"
export AUTHPLANE_AUTHSERVER_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/authserver"

cleanup() {
  if [ "${KEEP:-0}" = 1 ]; then
    echo "cluster kept: AUTHPLANE_CLUSTER_DIR=$AUTHPLANE_CLUSTER_DIR e2e/cluster.sh env" >&2
  else
    e2e/cluster.sh down >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

echo "==> starting a control plane in $AUTHPLANE_CLUSTER_DIR" >&2
eval "$(e2e/cluster.sh up | tail -1)"
eval "$(e2e/cluster.sh env)"
"$AUTHPLANE_OPERATOR_BIN" crds | kubectl apply --server-side -f - >&2
kubectl apply --server-side -f "$AUTHPLANE_SERVICEMONITOR_CRD" >&2
kubectl wait --for condition=established --timeout=60s \
  crd/authservers.authplane.io crd/protectedresources.authplane.io crd/oauthclients.authplane.io \
  crd/servicemonitors.monitoring.coreos.com >&2

echo "==> operator e2e tests" >&2
cargo test --workspace --locked --test e2e -- --ignored --test-threads="${E2E_THREADS:-3}" "$@"
