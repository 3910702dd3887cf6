#!/usr/bin/env bash
# make bench-operator: 1,000 OAuthClients applied at once on the test control
# plane. Reports the time until all are Ready (Ready means "in the config the
# pods read"), checks that claim by starting a real authserver on the config
# and registry shards copied out of the Secrets and getting a token with the
# last client's secret, and reports the operator's peak RSS, the API writes it
# made per object and the writes once settled (must be 0). Targets (issues 5
# and 18): all Ready < 60 s at 1,000, RSS < 128 MiB at 10,000.
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

echo "==> building authplane-operator (release) and authserver" >&2
# One release build of the workspace's binaries (a `-p` build would resolve
# features differently and compile the dependency graph again).
cargo build --locked -q --release --workspace --bins
# OPERATOR_BIN: another operator build to measure (e.g. one with symbols for perf).
OP="${OPERATOR_BIN:-target/release/authplane-operator}"
AS=target/release/authserver

echo "==> starting a control plane in $AUTHPLANE_CLUSTER_DIR" >&2
eval "$(e2e/cluster.sh up | tail -1)"
eval "$(e2e/cluster.sh env)"
"$OP" crds | kubectl apply --server-side -f - >/dev/null
kubectl wait --for condition=established --timeout=60s crd/oauthclients.authplane.io >/dev/null
kubectl create namespace "$NS" >/dev/null

# OPERATOR_WRAP: a command to run the operator under, e.g. "heaptrack -o /tmp/op"
# (then the RSS figure is the wrapper's, not the operator's).
${OPERATOR_WRAP:-} "$OP" run --namespace "$NS" --lease-namespace "$NS" --metrics-addr 127.0.0.1:0 >"$WORK/operator.log" 2>&1 &
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
LIMIT=$((300 + N / 20)) # seconds; 800 s at 10,000
while [ "$(ready_count)" -lt "$N" ]; do
  sleep 1
  if [ "$(echo "$(date +%s.%N) - $t0 > $LIMIT" | bc)" = 1 ]; then
    echo "not all Ready after $LIMIT s: $(ready_count) of $N; AuthServer reports $(kubectl get authserver -n "$NS" authplane -o jsonpath='{.status.clients}') clients; peak RSS $(rss_kib) KiB" >&2
    tail -20 "$WORK/operator.log" >&2
    exit 1
  fi
done
t_ready=$(date +%s.%N)
while [ "$(kubectl get authserver -n "$NS" authplane -o jsonpath='{.status.clients}')" != "$N" ]; do sleep 0.5; done
t_config=$(date +%s.%N)
sleep 5
w1=$(writes)
sleep 10
w2=$(writes)

# What the pods read: config.yaml, registry.d/*.yaml, keys/*.json.
mkdir -p "$WORK/pod/registry.d" "$WORK/pod/keys"
kubectl get secret -n "$NS" authplane-config -o jsonpath='{.data.config\.yaml}' | base64 -d >"$WORK/pod/config.yaml"
kubectl get secrets -n "$NS" -l authplane.io/authserver=authplane,authplane.io/registry-shard -o json |
  python3 -c '
import base64, json, sys
for s in json.load(sys.stdin)["items"]:
    for k, v in s["data"].items():
        if k.startswith("registry-"):
            open(sys.argv[1] + "/" + k, "wb").write(base64.b64decode(v))' "$WORK/pod/registry.d"
kubectl get secret -n "$NS" authplane-signing-keys -o json |
  python3 -c '
import base64, json, sys
for k, v in json.load(sys.stdin)["data"].items():
    open(sys.argv[1] + "/" + k, "wb").write(base64.b64decode(v))' "$WORK/pod/keys"
in_config=$(cat "$WORK"/pod/registry.d/*.yaml | grep -c '^  *client_id:\|^- client_id:' || true)
shard_max=$(wc -c "$WORK"/pod/registry.d/*.yaml | grep -v total | sort -n | tail -1 | awk '{print $1}')
AUTHPLANE_SERVER_LISTEN=127.0.0.1:0 AUTHPLANE_ADMIN_LISTEN=127.0.0.1:0 \
  AUTHPLANE_SIGNING_KEY_DIR="$WORK/pod/keys" AUTHPLANE_DATABASE_URL="sqlite://$WORK/pod/db.sqlite?mode=rwc" \
  "$AS" --config "$WORK/pod/config.yaml" --registry-dir "$WORK/pod/registry.d" serve >"$WORK/authserver.log" 2>&1 &
AS_PID=$!
for _ in $(seq 300); do grep -q 'authserver started' "$WORK/authserver.log" && break; sleep 0.2; done
PUBLIC=$(grep -o 'public=[^ ]*' "$WORK/authserver.log" | head -1 | cut -d= -f2)
last=$(printf 'client-%04d' $((N - 1)))
cid=$(kubectl get secret -n "$NS" "$last-oauth-client" -o jsonpath='{.data.client_id}' | base64 -d)
csec=$(kubectl get secret -n "$NS" "$last-oauth-client" -o jsonpath='{.data.client_secret}' | base64 -d)
token_status=$(curl -s -o /dev/null -w '%{http_code}' -u "$cid:$csec" "http://$PUBLIC/oauth/token" \
  -d grant_type=client_credentials -d resource=https://mcp.example.com/mcp -d scope=tools/read)
kill "$AS_PID" 2>/dev/null; wait "$AS_PID" 2>/dev/null || true

secrets=$(kubectl get secrets -n "$NS" -l app.kubernetes.io/managed-by=authplane-operator -o name | wc -l)
rss=$(rss_kib)
printf '\n'
printf 'operator benchmark: %d OAuthClients (confidential) on kube-apiserver v1.37, release build\n' "$N"
printf '  kubectl apply (client side, sequential)   %6.1f s\n' "$(echo "$t_applied - $t0" | bc)"
printf '  all %d Ready (from start of apply)      %6.1f s   target < 60 s\n' "$N" "$(echo "$t_ready - $t0" | bc)"
printf '  AuthServer status reports %d clients     %6.1f s\n' "$N" "$(echo "$t_config - $t0" | bc)"
printf '  clients in the registry shards            %6d   (largest shard %d bytes)\n' "$in_config" "$shard_max"
printf '  token for %s from a real authserver  HTTP %s\n' "$last" "$token_status"
printf '  operator peak RSS (VmHWM)                 %6.1f MiB target < 128 MiB\n' "$(echo "$rss / 1024" | bc -l)"
printf '  API writes for the burst                  %6d\n' "$((w1 - w0))"
printf '  writes per OAuthClient                    %6.2f   (credential Secret + status writes + Event, plus shard rewrites)\n' "$(echo "($w1 - $w0) / $N" | bc -l)"
printf '  managed Secrets                           %6d\n' "$secrets"
printf '  writes in the 10 s after settling         %6d\n' "$((w2 - w1))"
echo '  writes by resource:'
curl -s "http://$METRICS/metrics" | grep '^authplane_operator_api_writes_total{' | sed 's/^authplane_operator_api_writes_total/    /'
[ "$in_config" = "$N" ] || { echo "FAIL: $in_config of $N clients in the config the pods read" >&2; exit 1; }
[ "$token_status" = 200 ] || { echo "FAIL: the last client got HTTP $token_status from a real authserver" >&2; exit 1; }
[ "$((w2 - w1))" = 0 ] || { echo "FAIL: $((w2 - w1)) writes after settling" >&2; exit 1; }
