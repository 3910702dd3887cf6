#!/usr/bin/env bash
# AuthPlane in real pods, on a real node (e2e/cluster.sh up --node: containerd,
# kubelet, kube-scheduler, kube-proxy) with the images of `make images`:
#
#   1. `helm install` of charts/authplane with the local images: the operator
#      pod is Running and Ready and its log shows the leader lease taken;
#   2. `kubectl apply -f config/samples/`: the AuthServer pod is Running and
#      Ready (its probes pass), runs as uid 65532 on a read-only root
#      filesystem (seen from the host, in /proc); on a PersistentVolume its
#      SQLite database survives a pod delete;
#   3. through the pod IP: discovery answers with the CR's issuer,
#      client_credentials works with the operator-generated client secret, a
#      bad-PKCE request fails and `kubectl logs -l app=authplane --tail=1000 |
#      grep trace_id=<id from the response>` returns its `level=ERROR
#      msg="token issuance failed" error=ErrInvalidPKCE` line (the debugging
#      page's step 8);
#   4. an OAuthClient applied while the pod runs reaches it through the
#      kubelet's Secret volume update (syncFrequency 10s), no restart;
#   5. signing-key rotation through the Secret volume, verified by the SDK's
#      example MCP server outside the cluster: a token minted before the
#      rotation verifies during the overlap and is refused after retirement;
#      every fresh token verifies (counted);
#   6. replicas: 2 on Postgres (on the host, reached from the pods at the
#      node address): a rolling restart under bounded client_credentials load
#      through the Service (kube-proxy) fails no request (counted), and
#      `kubectl logs -l app=authplane` shows both pods' lines;
#   7. `helm uninstall`: the operator pod goes within its grace period after
#      SIGTERM (it logs its stop and hands its Lease back); CRs and the objects
#      the operator made stay (docs/install/helm.md);
# and that `down` restores the host: the host state (sysctls, links, routes,
# netfilter, mounts, cgroups, paths, processes) after equals before.
#
#   e2e/pods-test.sh          # prints "N passed, M failed"; exit 1 on failure
#   KEEP=1 e2e/pods-test.sh   # leave the cluster running (no host check)
#
# Needs root (a node changes the host), target/images/*.tar (built here by
# scripts/images.sh if missing; no-op release build when make images ran)
# and the debug mcp-server (scripts/build-test-bins.sh).
# Checks run `bash -c '...' _ args`: the single quotes are deliberate; ok
# and bad always succeed, so `test && ok || bad` is an if-then-else.
# shellcheck disable=SC2016,SC2001,SC2015
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
started=$SECONDS
# One fixed state dir: a node uses host-wide names (the dummy interface, the
# bridge), so only one node cluster runs at a time, and a crashed run's
# leftovers are taken down by the next run's `up`.
export AUTHPLANE_CLUSTER_DIR="${AUTHPLANE_PODS_E2E_DIR:-${TMPDIR:-/tmp}/authplane-pods-e2e}"
ns=authplane-system
apps=default
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
resource=https://mcp.example.com/mcp
issuer=https://auth.example.com

# shellcheck source=lib/report.sh
source "$here/lib/report.sh"
note() { echo "    $*"; }
# eventually <seconds> <command...>: retry every second until it succeeds.
eventually() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 1
  done
}

work="$(mktemp -d)"
chmod 0711 "$work" # Postgres (user postgres) keeps its data and hba file in here
pids=()
pg_started=""
cleanup() {
  local rc=$? p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ -n "$pg_started" ]]; then AUTHPLANE_PG_STATE="$work/pg" scripts/postgres.sh stop >/dev/null 2>&1 || true; fi
  if [[ "${KEEP:-0}" == 1 ]]; then
    echo "cluster kept: AUTHPLANE_CLUSTER_DIR=$AUTHPLANE_CLUSTER_DIR e2e/cluster.sh env (work dir $work)" >&2
  else
    e2e/cluster.sh down >/dev/null 2>&1 || true
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ "$(id -u)" == 0 ]] || { echo "pods-test: needs root (the node changes the host)" >&2; exit 1; }

# ------------------------------------------------------------------ setup
if [[ ! -f target/images/authserver.tar || ! -f target/images/authplane-operator.tar ]]; then
  echo "==> target/images/ incomplete: scripts/images.sh" >&2
  scripts/images.sh >&2
fi
mcp_bin="${MCP_SERVER_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/mcp-server}"
[[ -x "$mcp_bin" ]] || scripts/build-test-bins.sh >&2

# A leftover node cluster of a killed run goes first, so the "before" state
# is the host's own.
e2e/cluster.sh down >/dev/null 2>&1 || true
e2e/cluster.sh host-state >"$work/host.before"
t=$SECONDS
echo "==> e2e/cluster.sh up --node ($AUTHPLANE_CLUSTER_DIR)" >&2
e2e/cluster.sh up --node >"$work/up.log" 2>&1 || { tail -n 60 "$work/up.log" >&2; exit 1; }
note "node cluster up in $((SECONDS - t))s"
eval "$(e2e/cluster.sh env)"
node_ip=$(sed -n 's/^NODE_IP=\([0-9.]*\).*/\1/p' e2e/cluster.sh)
pod_cidr=$(sed -n 's/^POD_CIDR=\([0-9./]*\).*/\1/p' e2e/cluster.sh)
k() { kubectl --request-timeout=20s "$@"; }
jp() { k get "${@:2}" -o jsonpath="$1"; } # jp <jsonpath> <kubectl get args...>

# ------------------------------------------------------------------ 1. operator by Helm
echo "# 1. helm install: the operator as a pod"
k apply --server-side -f "$AUTHPLANE_SERVICEMONITOR_CRD" >/dev/null
op_sel=app.kubernetes.io/component=operator
if helm install authplane charts/authplane -n "$ns" --create-namespace --wait --timeout 180s >"$work/helm.log" 2>&1; then
  ok "helm install charts/authplane (image ghcr.io/authplane/authplane-operator:$version, pullPolicy IfNotPresent)"
else
  bad "helm install"; tail -n 20 "$work/helm.log"
  k -n "$ns" describe pods -l "$op_sel" | tail -n 30
fi
op_pod=$(jp '{.items[0].metadata.name}' -n "$ns" pods -l "$op_sel")
check "operator pod $op_pod Running and Ready" \
  k -n "$ns" wait --for=condition=Ready --timeout=60s "pod/$op_pod"
check "operator pod image is the local one, never pulled" bash -c '
  [[ "$(kubectl -n "$1" get pod "$2" -o jsonpath="{.status.containerStatuses[0].image}")" == *"authplane-operator:$3" ]] &&
  ! kubectl -n "$1" get events --field-selector involvedObject.name="$2" | grep -q "Pulling image"' _ "$ns" "$op_pod" "$version"
lease_line() { k -n "$ns" logs "$op_pod" | grep -m1 'leader lease acquired'; }
if eventually 30 lease_line; then
  ok "operator log shows the leader lease taken"; note "$(lease_line)"
else
  bad "operator log shows the leader lease taken"; k -n "$ns" logs "$op_pod" | tail -n 10
fi

# ------------------------------------------------------------------ 2. AuthServer pod
echo "# 2. kubectl apply -f config/samples/: the AuthServer pod"
# No PV provisioner on this node: the volume for SQLite is a hostPath
# PersistentVolume bound statically to a claim (docs/install/node.md).
pv_dir="$work/pv-authplane-data"
mkdir -p "$pv_dir"
chown 65532:65532 "$pv_dir"
k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolume
metadata: {name: pods-test-authplane-data}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  hostPath: {path: $pv_dir, type: Directory}
  claimRef: {namespace: $apps, name: authplane-data}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: authplane-data, namespace: $apps}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  volumeName: pods-test-authplane-data
  resources: {requests: {storage: 1Gi}}
EOF
check "kubectl apply -f config/samples/" k -n "$apps" apply -f config/samples/
as_ready() { [[ "$(jp '{.status.conditions[?(@.type=="Ready")].status}' -n "$apps" authserver authplane)" == True ]]; }
server_pod() { # the one Ready AuthServer pod not being deleted
  k -n "$apps" get pods -l app=authplane -o json | python3 -c '
import json, sys
for p in json.load(sys.stdin)["items"]:
    if p["metadata"].get("deletionTimestamp"): continue
    if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", [])):
        print(p["metadata"]["name"], p["status"]["podIP"], p["metadata"]["uid"]); break'
}
pod_ready() { [[ -n "$(server_pod)" ]]; }
# Names of the AuthServer pods not being deleted; all of them, terminating too.
live_pods() {
  k -n "$apps" get pods -l app=authplane -o json | python3 -c '
import json, sys
print(" ".join(sorted(p["metadata"]["name"] for p in json.load(sys.stdin)["items"] if not p["metadata"].get("deletionTimestamp"))))'
}
all_pods() { jp '{.items[*].metadata.name}' -n "$apps" pods -l app=authplane; }
if eventually 120 as_ready && eventually 120 pod_ready; then
  ok "AuthServer authplane Ready, its pod Running and Ready (readiness /health, liveness and startup /healthz passed)"
else
  bad "AuthServer pod Ready"
  k -n "$apps" get authserver authplane -o yaml | tail -n 30
  k -n "$apps" describe pods -l app=authplane | tail -n 40
fi
# The sample keeps SQLite on an emptyDir; put it on the claim (the
# Deployment is Recreate for SQLite: one writer at a time).
k -n "$apps" patch authserver authplane --type merge \
  -p '{"spec":{"database":{"sqlite":{"volumeClaimName":"authplane-data"}}}}' >/dev/null
on_claim() { jp '{.spec.template.spec.volumes[?(@.name=="data")].persistentVolumeClaim.claimName}' -n "$apps" deployment authplane | grep -qx authplane-data; }
if eventually 60 on_claim && k -n "$apps" rollout status deployment/authplane --timeout=120s >/dev/null && eventually 60 pod_ready; then
  ok "spec.database.sqlite.volumeClaimName: the pod now keeps SQLite on the PersistentVolume"
else
  bad "AuthServer on the PersistentVolume"; k -n "$apps" describe pods -l app=authplane | tail -n 30
fi
read -r pod pod_ip pod_uid <<<"$(server_pod)"
base="http://$pod_ip:9000"
# Endpoint paths from discovery (its URLs carry the public issuer).
disco=$(curl -sS --max-time 5 "$base/.well-known/oauth-authorization-server" || true)
endpoint_path() { python3 -c 'import json,sys,urllib.parse as u; print(u.urlsplit(json.loads(sys.argv[1])[sys.argv[2]]).path)' "$disco" "$1" 2>/dev/null || echo "$2"; }
token_path=$(endpoint_path token_endpoint /oauth/token)
jwks_path=$(endpoint_path jwks_uri /.well-known/jwks.json)
register_path=$(endpoint_path registration_endpoint /register)
# The container's main process, seen from the host: its uid, and its root
# mount (/proc/PID/mountinfo's "/" line) read-only.
container_pid() {
  local p
  for p in $(pgrep -x authserver); do
    grep -q "$1" "/proc/$p/cgroup" 2>/dev/null && { echo "$p"; return 0; }
  done
  return 1
}
pid=$(container_pid "${pod_uid//-/_}" || container_pid "$pod_uid" || true)
if [[ -n "$pid" ]]; then
  check "the server process runs as uid/gid 65532 (from /proc/$pid/status)" bash -c '
    grep -Eq "^Uid:\s+65532\s+65532\s+65532\s+65532" "/proc/$1/status" && grep -Eq "^Gid:\s+65532\s" "/proc/$1/status"' _ "$pid"
  check "its root filesystem is mounted read-only (from /proc/$pid/mountinfo)" bash -c '
    awk '"'"'$5 == "/" {print $6}'"'"' "/proc/$1/mountinfo" | grep -Eq "^ro(,|$)"' _ "$pid"
else
  bad "found the AuthServer container's process on the host (pod uid $pod_uid)"
fi
check "the rendered Deployment asks for it: readOnlyRootFilesystem, runAsNonRoot, runAsUser 65532" bash -c '
  [[ "$(kubectl -n "$1" get deployment authplane -o jsonpath="{.spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem} {.spec.template.spec.containers[0].securityContext.runAsNonRoot} {.spec.template.spec.containers[0].securityContext.runAsUser}")" == "true true 65532" ]]' _ "$apps"
# Something only the database knows: a client registered at /register.
reg=$(curl -sS --max-time 5 -X POST "$base$register_path" -H 'content-type: application/json' \
  -d '{"client_name":"pods-test","redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"none"}' || true)
reg_id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["client_id"])' "$reg" 2>/dev/null || true)
reg_token=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("registration_access_token",""))' "$reg" 2>/dev/null || true)
if [[ -n "$reg_id" ]]; then ok "a client registered (RFC 7591) into SQLite: $reg_id"; else bad "dynamic registration: $reg"; fi
check "the database file is on the volume (the hostPath on the node)" test -s "$pv_dir/authplane.db"
k -n "$apps" delete pod "$pod" --wait=true --timeout=60s >/dev/null
new_pod() { local p; p="$(server_pod)"; [[ -n "$p" && "${p%% *}" != "$pod" ]]; }
if eventually 120 new_pod; then
  read -r pod pod_ip pod_uid <<<"$(server_pod)"
  base="http://$pod_ip:9000"
  ok "pod deleted; a new pod $pod is Ready"
else
  bad "no new AuthServer pod after the delete"
fi
# The registration read endpoint (RFC 7592) if the server offers one, else a
# token request naming the client: `invalid_client` would mean it is gone.
still_there() {
  local s
  s=$(curl -sS --max-time 5 -o "$work/after-delete" -w '%{http_code}' -X POST "$base$token_path" \
    -d "grant_type=authorization_code&code=x&code_verifier=$(printf 'v%.0s' {1..43})&client_id=$reg_id&redirect_uri=http://127.0.0.1/cb")
  # Known client + unknown code → invalid_grant; unknown client → invalid_client.
  grep -q '"invalid_grant"' "$work/after-delete" && [[ "$s" == 400 ]]
}
check "the registered client survived the pod delete (SQLite on the volume: known client, invalid_grant not invalid_client)" still_there
# The control: a client_id never registered gets the other answer.
reg_id_saved=$reg_id
reg_id=dcr_never_registered
if still_there; then bad "the survival check cannot fail: an unknown client_id passes it too"; else ok "control: an unknown client_id gets $(grep -o '"invalid_[a-z_]*"' "$work/after-delete" | head -n 1), so the check above can fail"; fi
reg_id=$reg_id_saved
: "$reg_token"

# ------------------------------------------------------------------ 3. through the pod IP
echo "# 3. through the pod IP ($pod_ip): discovery, client_credentials, a bad PKCE and step 8"
disco=$(curl -sS --max-time 5 "$base/.well-known/oauth-authorization-server" || true)
got_issuer=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["issuer"])' "$disco" 2>/dev/null || true)
[[ "$got_issuer" == "$issuer" ]] && ok "discovery answers with the CR's issuer: $got_issuer" || bad "discovery issuer '$got_issuer' (want $issuer)"
secret_field() { k -n "$apps" get secret "$1" -o jsonpath="{.data.$2}" | base64 -d; }
cid=$(secret_field backend-oauth-client client_id)
csecret=$(secret_field backend-oauth-client client_secret)
cc() { # cc <base> <client_id> <secret>: prints the HTTP status, body to $work/cc.json
  curl -sS --max-time 5 -o "$work/cc.json" -w '%{http_code}' -u "$2:$3" -X POST "$1$token_path" \
    --data-urlencode grant_type=client_credentials --data-urlencode "resource=$resource" --data-urlencode scope=tools/read
}
s=$(cc "$base" "$cid" "$csecret" || true)
if [[ "$s" == 200 ]] && grep -q '"access_token"' "$work/cc.json"; then
  ok "client_credentials with the operator's client secret (Secret backend-oauth-client, client_id $cid): 200 and a token"
else
  bad "client_credentials: HTTP $s $(head -c 300 "$work/cc.json")"
fi
cli_id=$(jp '{.status.clientId}' -n "$apps" oauthclient cli)
# A PKCE failure without a user session: the code_verifier is missing (the
# server checks it before it looks the code up). A wrong verifier needs a
# real code, so a signed-in user: the e2e/oauth suite covers that.
curl -sS --max-time 5 -D "$work/pkce.h" -o "$work/pkce.json" -X POST "$base$token_path" \
  --data-urlencode grant_type=authorization_code --data-urlencode code=not-a-real-code \
  --data-urlencode "client_id=$cli_id" --data-urlencode redirect_uri=http://127.0.0.1/callback \
  --data-urlencode "resource=$resource" >/dev/null || true
pkce_status=$(sed -n '1s/^HTTP\/[0-9.]* \([0-9]*\).*/\1/p' "$work/pkce.h")
trace_id=$(tr -d '\r' <"$work/pkce.h" | sed -n 's/^traceparent: 00-\([0-9a-f]\{32\}\)-.*/\1/Ip' | head -n 1)
if [[ "$pkce_status" == 400 ]] && grep -q '"invalid_grant"' "$work/pkce.json" && [[ -n "$trace_id" ]]; then
  ok "the bad-PKCE request fails: 400 invalid_grant, traceparent trace id $trace_id"
else
  bad "bad-PKCE request: HTTP $pkce_status, trace id '$trace_id', body $(head -c 200 "$work/pkce.json")"
  sed 's/^/    /' "$work/pkce.h"
fi
step8() { kubectl logs -l app=authplane --tail=1000 | grep "trace_id=$trace_id"; }
step8_line() { step8 | grep -F 'level=ERROR msg="token issuance failed" error=ErrInvalidPKCE'; }
if [[ -n "$trace_id" ]] && eventually 20 step8_line; then
  ok "kubectl logs -l app=authplane --tail=1000 | grep trace_id=$trace_id (the debugging page's step 8):"
  step8 | sed 's/^/    /'
else
  bad "step 8: no ErrInvalidPKCE line for trace_id=$trace_id"; kubectl logs -l app=authplane --tail=20 | sed 's/^/    /'
fi

# ------------------------------------------------------------------ 4. a new client, hot
echo "# 4. a new OAuthClient reaches the running pod through the kubelet's Secret update (syncFrequency 10s)"
restarts() { jp '{.status.containerStatuses[0].restartCount}' -n "$apps" pod "$pod"; }
restarts_before=$(restarts)
t=$SECONDS
k -n "$apps" apply -f - >/dev/null <<EOF
apiVersion: authplane.io/v1alpha1
kind: OAuthClient
metadata: {name: backend-two}
spec:
  authServerRef: {name: authplane}
  clientName: Second backend
  type: confidential
  tokenEndpointAuthMethod: client_secret_basic
  grantTypes: [client_credentials]
  allowedResources: [$resource]
  allowedScopes: [tools/read]
EOF
have_secret() { secret_field backend-two-oauth-client client_secret >/dev/null && [[ -n "$(secret_field backend-two-oauth-client client_secret)" ]]; }
eventually 60 have_secret || true
cid2=$(secret_field backend-two-oauth-client client_id 2>/dev/null || true)
csecret2=$(secret_field backend-two-oauth-client client_secret 2>/dev/null || true)
new_client_works() { [[ "$(cc "$base" "$cid2" "$csecret2")" == 200 ]]; }
if [[ -n "$cid2" ]] && eventually 90 new_client_works; then
  ok "client_credentials with the new client $cid2 works $((SECONDS - t))s after kubectl apply"
else
  bad "the new client never worked on the running pod: $(head -c 300 "$work/cc.json")"
fi
read -r pod_now _ pod_uid_now <<<"$(server_pod)"
check "same pod, same container (no restart): $pod, restartCount ${restarts_before:-?}" bash -c '
  [[ "$1" == "$2" && "$3" == "$4" && "$5" == "$6" ]]' _ "$pod" "$pod_now" "$pod_uid" "$pod_uid_now" "$restarts_before" "$(restarts)"

# ------------------------------------------------------------------ 5. key rotation
echo "# 5. signing-key rotation through the Secret volume, verified by the SDK's example MCP server"
# A new key every 60 s, published 20 s before it signs, the old one kept 20 s
# after (60 > 20 + 20). 20 s covers the kubelet's 10 s sync period plus its
# jitter; the MCP server refreshes its key set every 2 s.
k -n "$apps" patch authserver authplane --type merge \
  -p '{"spec":{"signing":{"rotationInterval":"60s","publishAhead":"20s","overlap":"20s"}}}' >/dev/null
mcp_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
AUTHPLANE_JWKS_REFRESH_INTERVAL=2 "$mcp_bin" --listen "127.0.0.1:$mcp_port" --resource "$resource" --issuer "$issuer" \
  --jwks-uri "$base$jwks_path" >"$work/mcp.log" 2>&1 &
pids+=($!)
eventually 20 curl -fsS -o /dev/null "http://127.0.0.1:$mcp_port/.well-known/oauth-protected-resource/mcp" || true
if python3 -B e2e/pods/rotation.py "$base$token_path" "$base$jwks_path" "http://127.0.0.1:$mcp_port/mcp" \
  "$cid" "$csecret" "$resource" 240 >"$work/rotation.json" 2>"$work/rotation.err"; then
  rot() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, r))' "$work/rotation.json" "$1"; }
  note "rotation: $(cat "$work/rotation.json")"
  [[ "$(rot old_verified_before)" == True ]] && ok "a token minted before the rotation verifies at the MCP server (kid $(rot old_kid))" ||
    bad "the pre-rotation token did not verify at all"
  [[ "$(rot 'saw_two_keys and new_key_signing_in_overlap and old_verified_in_overlap > 0 and old_refused_in_overlap == 0')" == True ]] &&
    ok "during the overlap (two keys published, the new one signing) the old token verifies: $(rot old_verified_in_overlap) times, refused 0" ||
    bad "overlap: saw two keys $(rot saw_two_keys), new key signing $(rot new_key_signing_in_overlap), old verified $(rot old_verified_in_overlap), refused $(rot old_refused_in_overlap)"
  [[ "$(rot old_refused_after_retirement)" == True ]] &&
    ok "after retirement (old key out of JWKS at $(rot retired_at)s) the MCP server refuses the old token" ||
    bad "the old token was never refused after retirement (retired at $(rot retired_at))"
  [[ "$(rot 'fresh_failed == 0 and fresh_verified >= 20 and len(fresh_kids) >= 2')" == True ]] &&
    ok "fresh tokens: $(rot fresh_verified) verified, $(rot fresh_failed) failed, across keys $(rot 'sorted(fresh_kids.values())')" ||
    bad "fresh tokens: $(rot fresh_verified) verified, $(rot fresh_failed) failed ($(rot fresh_failures)), keys $(rot fresh_kids)"
else
  bad "rotation run failed: $(tail -n 5 "$work/rotation.err")"
fi
check "no restart through the rotation" bash -c '[[ "$(kubectl -n "$1" get pod "$2" -o jsonpath="{.status.containerStatuses[0].restartCount}")" == "$3" ]]' _ "$apps" "$pod" "$restarts_before"

# ------------------------------------------------------------------ 6. two replicas on Postgres
echo "# 6. replicas: 2 on Postgres at $node_ip, a rolling restart under load"
# Debian's Postgres (scripts/postgres.sh), also listening on the node
# address, trusting the pod network only for this throw-away database.
printf 'local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all %s trust\n' "$pod_cidr" >"$work/pg_hba.conf"
chmod 0644 "$work/pg_hba.conf"
pg_env=$(AUTHPLANE_PG_STATE="$work/pg" AUTHPLANE_PG_EXTRA_OPTS="-c listen_addresses=127.0.0.1,$node_ip -c hba_file=$work/pg_hba.conf" \
  scripts/postgres.sh start) && pg_started=1
pg_port=$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' <<<"$pg_env")
k -n "$apps" create secret generic authplane-postgres \
  --from-literal=url="postgres://postgres@$node_ip:$pg_port/postgres?sslmode=disable" >/dev/null
k -n "$apps" patch authserver authplane --type merge -p '{"spec":{"replicas":2,"database":{"sqlite":null,"postgres":{"urlSecretRef":{"name":"authplane-postgres","key":"url"}}}}}' >/dev/null
two_ready() { [[ "$(jp '{.status.readyReplicas}' -n "$apps" deployment authplane)" == 2 && "$(jp '{.status.updatedReplicas}' -n "$apps" deployment authplane)" == 2 && "$(jp '{.status.replicas}' -n "$apps" deployment authplane)" == 2 ]]; }
if eventually 180 two_ready; then
  ok "AuthServer on Postgres with 2 Ready pods: $(live_pods)"
else
  bad "2 Ready pods on Postgres"; k -n "$apps" get pods -l app=authplane -o wide; k -n "$apps" logs -l app=authplane --tail=5
fi
svc_ip=$(jp '{.spec.clusterIP}' -n "$apps" service authplane)
svc="http://$svc_ip:9000"
s=$(cc "$svc" "$cid" "$csecret" || true)
[[ "$s" == 200 ]] && ok "the Service $svc (kube-proxy) answers client_credentials" || bad "client_credentials through the Service: HTTP $s"
stop="$work/load.stop"
python3 -B e2e/pods/load.py "$svc$token_path" "$cid" "$csecret" "$resource" "$stop" "$work/load.json" 20 4 &
load_pid=$!
pids+=("$load_pid")
sleep 3
old_pods=$(live_pods)
k -n "$apps" rollout restart deployment/authplane >/dev/null
if k -n "$apps" rollout status deployment/authplane --timeout=240s >/dev/null; then
  ok "kubectl rollout restart deployment/authplane completed"
else
  bad "rollout restart did not complete"
fi
# The load runs until the old pods are gone, not only replaced: their
# termination (preStop, SIGTERM, drain) is where requests get lost.
old_gone() { local p; for p in $old_pods; do [[ " $(all_pods) " != *" $p "* ]] || return 1; done; }
eventually 90 old_gone || bad "old pods still there 90 s after the rollout: $(all_pods)"
sleep 2
touch "$stop"
wait "$load_pid" || true
new_pods=$(live_pods)
lr() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, r))' "$work/load.json" "$1"; }
if [[ -f "$work/load.json" ]] && [[ "$(lr 'failed == 0 and ok >= 100')" == True ]]; then
  ok "bounded load (20 req/s, 4 clients) through the rolling restart: $(lr ok) requests, $(lr failed) failed"
else
  bad "load through the rolling restart: $(lr ok 2>/dev/null) ok, $(lr failed 2>/dev/null) failed: $(lr failures 2>/dev/null)"
fi
check "all pods replaced ($old_pods → $new_pods)" bash -c '
  for p in $1; do [[ " $2 " != *" $p "* ]] || exit 1; done; [[ $(wc -w <<<"$2") == 2 ]]' _ "$old_pods" "$new_pods"
# Which pod wrote each line: --prefix adds "[pod/NAME/CONTAINER]".
kubectl logs -l app=authplane --tail=1000 --prefix | sed -n 's/^\[pod\/\([^/]*\)\/.*/\1/p' | sort | uniq -c >"$work/log-pods"
both_logged() {
  local p
  for p in $new_pods; do grep -q " $p\$" "$work/log-pods" || return 1; done
}
if both_logged; then
  ok "kubectl logs -l app=authplane --tail=1000 shows both pods' lines (lines per pod): $(tr -s ' \n' ' ' <"$work/log-pods")"
else
  bad "kubectl logs -l app=authplane: want lines from $new_pods, got $(tr -s ' \n' ' ' <"$work/log-pods")"
fi

# ------------------------------------------------------------------ 7. helm uninstall
echo "# 7. the operator's SIGTERM, then helm uninstall: the operator goes, the CRs and their objects stay"
op_gone() { [[ -z "$(jp '{.items[*].metadata.name}' -n "$ns" pods -l "$op_sel")" ]]; }
op_pod=$(jp '{.items[0].metadata.name}' -n "$ns" pods -l "$op_sel")
grace=$(jp '{.spec.terminationGracePeriodSeconds}' -n "$ns" pod "$op_pod")
lease=$(jp '{.items[0].metadata.name}' -n "$ns" leases.coordination.k8s.io)
holder() { jp '{.spec.holderIdentity}' -n "$ns" lease "$lease"; }
# SIGTERM with everything else in place: scale the Deployment to 0. The
# kubelet sends SIGTERM and SIGKILLs after the grace period; the operator
# must stop well before, handing its Lease back on the way.
k -n "$ns" logs -f "$op_pod" >"$work/operator-stop.log" 2>&1 &
pids+=($!)
sleep 1
op_deploy() { jp '{.items[0].metadata.name}' -n "$ns" deployments -l "$op_sel"; }
# stops_in_grace <what> <log> <command…>: runs the command, then checks that
# the operator pod is gone within its grace period (no SIGKILL) and that its
# log (followed into <log>) ends with the clean stop.
stops_in_grace() {
  local what="$1" log="$2" t took
  shift 2
  t=$SECONDS
  "$@" >/dev/null
  if eventually 90 op_gone; then
    took=$((SECONDS - t))
    ((took < grace)) && ok "$what: operator pod $op_pod gone in ${took}s, inside its ${grace}s grace period (no SIGKILL)" ||
      bad "$what: operator pod took ${took}s to stop (grace ${grace}s)"
  else
    bad "$what: operator pod still there after 90s"
  fi
  check "$what: its log ends with the clean stop ('shutting down' … 'authplane-operator stopped')" bash -c '
    grep -q "shutting down" "$1" && tail -n 1 "$1" | grep -q "authplane-operator stopped"' _ "$log"
}
holder_before=$(holder)
stops_in_grace "SIGTERM (scale to 0)" "$work/operator-stop.log" k -n "$ns" scale deployment "$(op_deploy)" --replicas=0
holder_after=$(holder)
[[ "$holder_before" == "$op_pod" && -z "$holder_after" ]] &&
  ok "it handed the Lease back on SIGTERM: holder '$holder_before' → '$holder_after'" ||
  bad "Lease holder '$holder_before' → '$holder_after' (want $op_pod → empty)"
k -n "$ns" scale deployment "$(op_deploy)" --replicas=1 >/dev/null
op_back() { op_pod=$(jp '{.items[0].metadata.name}' -n "$ns" pods -l "$op_sel") && [[ -n "$op_pod" && "$(holder)" == "$op_pod" ]]; }
if eventually 90 op_back && k -n "$ns" wait --for=condition=Ready --timeout=60s "pod/$op_pod" >/dev/null; then
  ok "scaled back to 1: $op_pod Ready and leading"
else
  bad "the operator did not come back after scaling to 1"
fi

k -n "$ns" logs -f "$op_pod" >"$work/operator-final.log" 2>&1 &
pids+=($!)
sleep 1
stops_in_grace "helm uninstall" "$work/operator-final.log" helm uninstall authplane -n "$ns" --wait --timeout 120s
# Helm deletes the RBAC right after the Deployment, so the Lease hand-back
# races it: reported, not asserted (the Lease expires after 15 s anyway).
note "after helm uninstall the Lease holder is '$(holder 2>/dev/null || echo "(Lease gone)")'"
check "the CRDs and CRs stay: AuthServer authplane, OAuthClients backend, cli, backend-two, ProtectedResource mcp-tools" bash -c '
  kubectl -n "$1" get authserver/authplane oauthclient/backend oauthclient/cli oauthclient/backend-two protectedresource/mcp-tools' _ "$apps"
check "the objects the operator made stay and keep serving: Deployment, Service, Secrets; 2 pods Ready" bash -c '
  kubectl -n "$1" get deployment/authplane service/authplane secret/authplane-signing-keys secret/backend-oauth-client &&
  [[ "$(kubectl -n "$1" get deployment authplane -o jsonpath="{.status.readyReplicas}")" == 2 ]]' _ "$apps"
s=$(cc "$svc" "$cid" "$csecret" || true)
[[ "$s" == 200 ]] && ok "client_credentials through the Service still works without the operator" || bad "client_credentials after uninstall: HTTP $s"

# ------------------------------------------------------------------ the host, restored
if [[ "${KEEP:-0}" != 1 ]]; then
  echo "# the host after e2e/cluster.sh down"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
  AUTHPLANE_PG_STATE="$work/pg" scripts/postgres.sh stop >/dev/null 2>&1 || true
  pg_started=""
  t=$SECONDS
  e2e/cluster.sh down >"$work/down.log" 2>&1 || { bad "e2e/cluster.sh down failed"; tail -n 20 "$work/down.log"; }
  note "down in $((SECONDS - t))s"
  e2e/cluster.sh host-state >"$work/host.after"
  if diff -u "$work/host.before" "$work/host.after" >"$work/host.diff"; then
    ok "host state after down equals before up ($(wc -l <"$work/host.before") lines: sysctls, links, addresses, routes, nft ruleset, mounts, cgroups, paths, processes)"
  else
    bad "host state differs after down:"; sed 's/^/    /' "$work/host.diff" | head -n 40
  fi
fi

echo "$passed passed, $failed failed (pods-test took $((SECONDS - started))s)"
[[ $failed -eq 0 ]]
