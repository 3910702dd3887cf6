#!/usr/bin/env bash
# Everything `make test` runs, in order. Each step installs or starts what it
# needs (idempotently) and cleans up after itself. Expensive tool builds are
# cached outside the clone (~/.cache/authplane), keyed by version.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# Incremental caches speed up edit-compile loops, not a run that builds each
# crate once; they would take several GB of target/.
export CARGO_INCREMENTAL=0

started=$(date +%s)
step_name=""
step_started=$started
# Each step's header; the previous step's time is printed before it.
step() {
  local now
  now=$(date +%s)
  if [ -n "$step_name" ]; then printf '<== %s: %ss\n' "$step_name" $((now - step_started)); fi
  step_name="$*"
  step_started=$now
  printf '\n==> %s\n' "$*"
}

# Work that nothing needs until later builds beside the first steps, at nice
# 10 so that it takes only what they leave idle (cargo's serial link and
# build-script phases, the e2e suites waiting on servers): the pinned Go
# tools (e2e/tools/build.sh, about 13 minutes on a cold cache plus the
# node's kubelet, kube-scheduler and kube-proxy; nothing when cached) and the
# fuzz targets' instrumented build (about 9 minutes cold).
# Each is waited for right before the first step that uses it; its output is
# printed there.
bg_logs="$(mktemp -d)"
bg_pids=()
postgres_started=""
cleanup() {
  local pid
  for pid in "${bg_pids[@]}"; do kill -- "-$pid" 2>/dev/null || true; done
  if [ -n "$postgres_started" ]; then scripts/postgres.sh stop; fi
  rm -rf "$bg_logs"
}
trap cleanup EXIT
background() { # NAME COMMAND... : start in its own process group
  setsid -w nice -n 10 "${@:2}" >"$bg_logs/$1.log" 2>&1 &
  echo $! >"$bg_logs/$1.pid"
  bg_pids+=("$!")
  date +%s >"$bg_logs/$1.started"
}
await() { # NAME : wait for a background job, show its output, fail with it
  local rc=0
  wait "$(cat "$bg_logs/$1.pid")" || rc=$?
  sed 's/^/    /' "$bg_logs/$1.log"
  printf '    (%s: %ss in the background, exit %s)\n' "$1" $(($(date +%s) - $(cat "$bg_logs/$1.started"))) "$rc"
  return "$rc"
}
background go-tools e2e/tools/build.sh
background fuzz-build env FUZZ_BUILD_ONLY=1 scripts/fuzz.sh

step "format and lint"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "unit and integration tests (SQLite)"
# One feature resolution for every step (see scripts/build-test-bins.sh).
scripts/build-test-bins.sh
cargo test --workspace --locked

step "server integration tests (PostgreSQL)"
eval "$(scripts/postgres.sh start)"
postgres_started=1
cargo test --workspace --locked --test api
# Replicas, TLS and the pool under pressure; starts more servers of its own.
cargo test --workspace --locked --test postgres
scripts/postgres.sh stop
postgres_started=""

if [ -x sdk/tests/run.sh ]; then
  step "SDK against the real authserver"
  SDK_RUST_TESTS=0 sdk/tests/run.sh
fi

step "OAuth flows driven by independent clients and Chromium (e2e/oauth)"
e2e/oauth/run.sh

step "MCP Inspector through AuthPlane and the example MCP server (e2e/inspector)"
e2e/inspector/run.sh

step "the black-box probe of the public endpoints, bounded (e2e/abuse)"
e2e/abuse/run.sh

step "faults under load: kill -9, Postgres restart, full disk, key rotation, two servers (e2e/faults)"
e2e/faults/run.sh

step "every fuzz target briefly, from the committed seeds (scripts/fuzz.sh, nightly)"
await fuzz-build
FUZZ_NO_BUILD=1 FUZZ_SECONDS="${FUZZ_SECONDS:-4}" scripts/fuzz.sh

step "OpenTelemetry traces into a real collector (e2e/otel)"
await go-tools
e2e/otel/run.sh

step "/metrics through the Prometheus parsers (e2e/metrics)"
e2e/metrics/run.sh

step "container images: OCI archives checked, reproducible, run as non-root under chroot (e2e/images-test.sh)"
e2e/images-test.sh

step "Kubernetes control plane (e2e/cluster.sh)"
e2e/cluster-smoke.sh

step "Helm chart and deploy/ manifests on the control plane (e2e/helm-test.sh)"
e2e/helm-test.sh

step "operator on a real control plane (e2e/operator-test.sh)"
e2e/operator-test.sh

# The images (e2e/images-test.sh built them) in real pods: a node (containerd, kubelet,
# kube-proxy) joins a fresh control plane; Helm installs the operator.
step "AuthPlane in real pods on a real node (e2e/pods-test.sh)"
e2e/pods-test.sh

step "done in $(( $(date +%s) - started ))s; target/ holds $(du -sh "${CARGO_TARGET_DIR:-target}" | cut -f1)"
