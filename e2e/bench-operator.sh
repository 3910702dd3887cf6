#!/usr/bin/env bash
# make bench-operator: 1,000 OAuthClients applied at once on the test control
# plane. Reports the time until all are Ready (and until the AuthServer's
# config holds all of them), the operator's peak RSS, and the API writes it
# made per object. Targets (issue 5): all Ready < 60 s, RSS < 64 MiB, no more
# than one write per owned object.
#
#   N=1000 e2e/bench-operator.sh      (N: number of OAuthClients)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-1000}"
NS=bench
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export AUTHPLANE_CLUSTER_DIR="${AUTHPLANE_OPERATOR_BENCH_DIR:-${TMPDIR:-/tmp}/authplane-operator-bench-$$}"
WORK="$(mktemp -d)"
OP_PID=""

cleanup() {
  [ -n "$OP_PID" ] && kill "$OP_PID" 2>/dev/null && wait "$OP_PID" 2>/dev/null
  e2e/cluster.sh down >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "==> building authplane-operator (release)" >&2
cargo build --locked -q --release -p authplane-operator --bin authplane-operator
OP=target/release/authplane-operator

echo "==> starting a control plane in $AUTHPLANE_CLUSTER_DIR" >&2
eval "$(e2e/cluster.sh up | tail -1)"
eval "$(e2e/cluster.sh env)"
"$OP" crds | kubectl apply --server-side -f - >/dev/null
kubectl wait --for condition=established --timeout=60s crd/oauthclients.authplane.io >/dev/null
kubectl create namespace "$NS" >/dev/null

"$OP" run --namespace "$NS" --lease-namespace "$NS" --metrics-addr 127.0.0.1:0 >"$WORK/operator.log" 2>&1 &
OP_PID=$!
for _ in $(seq 100); do grep -q 'authplane-operator started' "$WORK/operator.log" && break; sleep 0.1; done
METRICS=$(grep -o 'metrics=[^ ]*' "$WORK/operator.log" | head -1 | cut -d= -f2)

kubectl apply -n "$NS" --server-side -f config/samples/authserver.yaml -f config/samples/protectedresource.yaml >/dev/null
kubectl wait -n "$NS" --for condition=Ready --timeout=60s authserver/authplane >/dev/null

writes() { # operator writes, Lease renewals aside
  curl -s "http://$METRICS/metrics" | awk '/^authplane_operator_api_writes_total\{/ && !/resource="leases"/ {s+=$NF} END {print s+0}'
}
rss_kib() { awk '/^VmHWM/ {print $2}' "/proc/$OP_PID/status"; }

python3 - "$N" >"$WORK/clients.yaml" <<'PY'
import sys
n = int(sys.argv[1])
for i in range(n):
    print(f"""---
apiVersion: authplane.io/v1alpha1
kind: OAuthClient
metadata:
  name: client-{i:04d}
spec:
  authServerRef: {{name: authplane}}
  type: confidential
  grantTypes: [client_credentials]
  allowedResources: [https://mcp.example.com/mcp]
  allowedScopes: [tools/read]""")
PY

w0=$(writes)
echo "==> applying $N OAuthClients" >&2
t0=$(date +%s.%N)
kubectl apply -n "$NS" --server-side -f "$WORK/clients.yaml" >/dev/null
t_applied=$(date +%s.%N)

ready_count() {
  kubectl get oauthclients -n "$NS" -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$' || true
}
while [ "$(ready_count)" -lt "$N" ]; do
  sleep 0.5
  if [ "$(echo "$(date +%s.%N) - $t0 > 300" | bc)" = 1 ]; then echo "not all Ready after 300 s" >&2; exit 1; fi
done
t_ready=$(date +%s.%N)
while [ "$(kubectl get authserver -n "$NS" authplane -o jsonpath='{.status.clients}')" != "$N" ]; do sleep 0.5; done
t_config=$(date +%s.%N)
sleep 5
w1=$(writes)
sleep 10
w2=$(writes)

secrets=$(kubectl get secrets -n "$NS" -l app.kubernetes.io/managed-by=authplane-operator -o name | wc -l)
rss=$(rss_kib)
printf '\n'
printf 'operator benchmark: %d OAuthClients (confidential) on kube-apiserver v1.37, release build\n' "$N"
printf '  kubectl apply (client side, sequential)   %6.1f s\n' "$(echo "$t_applied - $t0" | bc)"
printf '  all %d Ready (from start of apply)      %6.1f s   target < 60 s\n' "$N" "$(echo "$t_ready - $t0" | bc)"
printf '  config Secret holds all %d clients       %6.1f s\n' "$N" "$(echo "$t_config - $t0" | bc)"
printf '  operator peak RSS (VmHWM)                 %6.1f MiB target < 64 MiB\n' "$(echo "$rss / 1024" | bc -l)"
printf '  API writes for the burst                  %6d\n' "$((w1 - w0))"
printf '  writes per OAuthClient                    %6.2f   (credential Secret + status + Event, plus config re-renders)\n' "$(echo "($w1 - $w0) / $N" | bc -l)"
printf '  managed Secrets                           %6d\n' "$secrets"
printf '  writes in the 10 s after settling         %6d\n' "$((w2 - w1))"
echo '  writes by resource:'
curl -s "http://$METRICS/metrics" | grep '^authplane_operator_api_writes_total{' | sed 's/^authplane_operator_api_writes_total/    /'
