#!/usr/bin/env bash
# Smoke test for e2e/cluster.sh: bring a cluster up, check that the parts the
# operator relies on work (API, CRDs, RBAC, ServiceAccount tokens, garbage
# collection through owner references, the ServiceMonitor CRD, helm), then
# bring it down again (KEEP=1 leaves it running).
#
#   e2e/cluster-smoke.sh            # prints "N passed, 0 failed" on success
#   KEEP=1 e2e/cluster-smoke.sh     # keep the cluster for poking around
#
# It uses its own state dir (not the one `e2e/cluster.sh up` uses by default),
# so it never stops a cluster you are working with. Set AUTHPLANE_CLUSTER_DIR
# to choose it.
set -uo pipefail
# Checks run `bash -c '...' _ args`: the single quotes are deliberate.
# shellcheck disable=SC2016

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export AUTHPLANE_CLUSTER_DIR="${AUTHPLANE_CLUSTER_DIR:-${TMPDIR:-/tmp}/authplane-smoke-$$}"
KUBECTL="${KUBECTL:-kubectl}"
GC_TIMEOUT="${GC_TIMEOUT:-60}"
ns=authplane-smoke

# shellcheck source=lib/report.sh
source "$here/lib/report.sh"
finish() {
  echo "$passed passed, $failed failed"
  [[ $failed -eq 0 ]]
}

work="$(mktemp -d)"
cleanup() {
  rm -rf "$work"
  if [[ "${KEEP:-0}" == 1 ]]; then
    echo "# KEEP=1: cluster left running; use it with:"
    echo "#   export AUTHPLANE_CLUSTER_DIR=$AUTHPLANE_CLUSTER_DIR; eval \"\$($here/cluster.sh env)\""
    echo "# stop it with: AUTHPLANE_CLUSTER_DIR=$AUTHPLANE_CLUSTER_DIR $here/cluster.sh down"
  else
    "$here/cluster.sh" down >/dev/null 2>&1 || true
    rm -f "$AUTHPLANE_CLUSTER_DIR.cluster-sh.lock" # ours alone: the dir name is per run
  fi
}
trap cleanup EXIT

k() { "$KUBECTL" --request-timeout=10s "$@"; }

# Poll (bounded) until a command succeeds.
eventually() { # timeout-seconds command...
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { "$@"; return 1; }
    sleep 1
  done
}
gone() { local out; ! out="$(k get "$@" -o name 2>&1)" && [[ "$out" == *NotFound* ]]; }

# ---------------------------------------------------------------- up
start=$SECONDS
if ! up_out="$("$here/cluster.sh" up)"; then
  bad "cluster.sh up"
  finish
  exit 1
fi
up_secs=$((SECONDS - start))
last="$(tail -n 1 <<<"$up_out")"
check "cluster.sh up (${up_secs}s) ends with 'export KUBECONFIG=<path>'" \
  test "$last" == "export KUBECONFIG=$AUTHPLANE_CLUSTER_DIR/kubeconfig"
eval "$last"
check "cluster.sh up again is a no-op printing the same line" \
  bash -c '[[ "$("$1" up 2>/dev/null | tail -n 1)" == "$2" ]]' _ "$here/cluster.sh" "$last"
check "cluster.sh status says up" bash -c '"$1" status | grep -q "^up"' _ "$here/cluster.sh"
env_out="$("$here/cluster.sh" env)"
check "cluster.sh env prints KUBECONFIG and a PATH with helm" \
  bash -c 'grep -qx "$1" <<<"$2" && eval "$2" && command -v helm' _ "$last" "$env_out"
eval "$env_out"

# ---------------------------------------------------------------- API basics
want_version="$("$here/tools/build.sh" --versions kube-apiserver | awk '{print $2}')"
check "kubectl from cluster.sh env is the pinned $want_version" \
  bash -c '[[ $("$1" version --client | head -n 1) == "Client Version: $2" ]]' _ "$KUBECTL" "$want_version"
check "server version is $want_version" \
  bash -c '"$1" version -o json 2>/dev/null | grep -q "\"gitVersion\": \"$2\""' _ "$KUBECTL" "$want_version"
check "kubectl get ns shows default, kube-system, kube-public, kube-node-lease" \
  bash -c '[[ $("$1" get ns -o name | grep -cE "^namespace/(default|kube-system|kube-public|kube-node-lease)$") == 4 ]]' _ "$KUBECTL"
check "controller manager made the default ServiceAccount" k -n default get serviceaccount default
check "controller manager published kube-root-ca.crt" \
  eventually 30 k -n default get configmap kube-root-ca.crt
check "create namespace $ns" k create namespace "$ns"
check "namespace $ns gets its default ServiceAccount" \
  eventually 30 k -n "$ns" get serviceaccount default

# ---------------------------------------------------------------- RBAC
sa="system:serviceaccount:$ns:default"
check "admin (system:masters) can do anything" bash -c '[[ $("$1" auth can-i "*" "*") == yes ]]' _ "$KUBECTL"
check "RBAC denies a ServiceAccount by default" \
  bash -c '[[ $("$1" auth can-i list secrets -n "$2" --as="$3") == no ]]' _ "$KUBECTL" "$ns" "$sa"
check "grant the ServiceAccount configmap reading with a Role and RoleBinding" bash -c '
  "$1" -n "$2" create role cm-reader --verb=get,list --resource=configmaps &&
  "$1" -n "$2" create rolebinding cm-reader --role=cm-reader --serviceaccount="$2:default"' _ "$KUBECTL" "$ns"
check "RBAC now allows it, and still nothing more" bash -c '
  [[ $("$1" auth can-i list configmaps -n "$2" --as="$3") == yes ]] &&
  [[ $("$1" auth can-i list configmaps -n default --as="$3") == no ]] &&
  [[ $("$1" auth can-i delete configmaps -n "$2" --as="$3") == no ]]' _ "$KUBECTL" "$ns" "$sa"

# ---------------------------------------------------------------- SA tokens
# A kubeconfig holding only the token, so no client certificate is sent.
token_kubeconfig() {
  local token server kcfg=("$KUBECTL" config --kubeconfig="$work/sa.kubeconfig")
  token="$(k -n "$ns" create token default --duration=10m)" && [[ -n "$token" ]] || return 1
  server="$(k config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
  "${kcfg[@]}" set-cluster smoke --server="$server" --embed-certs=true \
    --certificate-authority="$AUTHPLANE_CLUSTER_DIR/pki/ca.crt" >/dev/null &&
    "${kcfg[@]}" set-credentials sa --token="$token" >/dev/null &&
    "${kcfg[@]}" set-context smoke --cluster=smoke --user=sa >/dev/null &&
    "${kcfg[@]}" use-context smoke >/dev/null
}
check "TokenRequest issues a ServiceAccount token (kubectl create token)" token_kubeconfig
check "the apiserver authenticates the token as the ServiceAccount" bash -c '
  [[ $("$1" --kubeconfig="$2" auth whoami -o jsonpath="{.status.userInfo.username}") == "$3" ]]' \
  _ "$KUBECTL" "$work/sa.kubeconfig" "$sa"
check "the token's RBAC applies: list configmaps yes, secrets no" bash -c '
  "$1" --kubeconfig="$2" -n "$3" get configmaps >/dev/null &&
  ! "$1" --kubeconfig="$2" -n "$3" get secrets 2>/dev/null' _ "$KUBECTL" "$work/sa.kubeconfig" "$ns"

# ---------------------------------------------------------------- CRDs
check "apply a CustomResourceDefinition" k apply -f - <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.authplane.dev
spec:
  group: smoke.authplane.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
EOF
check "the CRD becomes Established" \
  k wait --for=condition=Established --timeout=60s crd/widgets.smoke.authplane.dev
printf 'apiVersion: smoke.authplane.dev/v1\nkind: Widget\nmetadata: {name: owner}\nspec: {size: 3}\n' >"$work/widget.yaml"
printf 'apiVersion: smoke.authplane.dev/v1\nkind: Widget\nmetadata: {name: invalid}\nspec: {size: 0}\n' >"$work/invalid.yaml"
# (kubectl's discovery may need a moment to see the new type)
check "create a custom object" eventually 30 k -n "$ns" apply -f "$work/widget.yaml"
check "the CRD schema rejects an invalid object" bash -c '
  out="$("$1" -n "$2" apply -f "$3" 2>&1)"; [[ $? -ne 0 && "$out" == *"should be greater than or equal to 1"* ]]' \
  _ "$KUBECTL" "$ns" "$work/invalid.yaml"

# ---------------------------------------------------------------- GC
# Dependents with an ownerReference must be deleted by the controller
# manager's garbage collector once the owner is gone.
make_dependent() { # name ownerApiVersion ownerKind ownerName
  local uid
  uid="$(k -n "$ns" get "$3/$4" -o jsonpath='{.metadata.uid}')" || return 1
  [[ -n "$uid" ]] || return 1
  k -n "$ns" apply -f - <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: $1
  ownerReferences:
  - {apiVersion: $2, kind: $3, name: $4, uid: $uid}
data: {owned: "yes"}
EOF
}
check "create an owner ConfigMap" k -n "$ns" create configmap owner-cm --from-literal=a=b
check "ConfigMap dependent has an ownerReference" make_dependent dep-of-cm v1 ConfigMap owner-cm
check "create a ConfigMap owned by the custom object" make_dependent dep-of-widget smoke.authplane.dev/v1 Widget owner
check "delete the owners" bash -c '"$1" -n "$2" delete configmap/owner-cm widget/owner --wait=true' _ "$KUBECTL" "$ns"
check "garbage collector deletes the ConfigMap's dependent" eventually "$GC_TIMEOUT" gone -n "$ns" configmap dep-of-cm
check "garbage collector deletes the custom object's dependent" eventually "$GC_TIMEOUT" gone -n "$ns" configmap dep-of-widget

# ---------------------------------------------------------------- ServiceMonitor CRD
check "server-side apply the ServiceMonitor CRD" \
  k apply --server-side -f "$AUTHPLANE_SERVICEMONITOR_CRD"
check "the ServiceMonitor CRD becomes Established" \
  k wait --for=condition=Established --timeout=60s crd/servicemonitors.monitoring.coreos.com
cat >"$work/servicemonitor.yaml" <<'EOF'
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: authplane}
spec:
  selector: {matchLabels: {app: authplane}}
  endpoints: [{port: metrics, interval: 30s}]
EOF
check "create a ServiceMonitor" eventually 30 k -n "$ns" apply -f "$work/servicemonitor.yaml"

# ---------------------------------------------------------------- helm
chart="$work/chart"
mkdir -p "$chart/templates"
printf 'apiVersion: v2\nname: smoke\nversion: 0.1.0\n' >"$chart/Chart.yaml"
printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\ndata:\n  v: {{ .Values.v | quote }}\n' \
  >"$chart/templates/cm.yaml"
printf 'v: hello\n' >"$chart/values.yaml"
export HELM_CACHE_HOME="$chart/.cache" HELM_CONFIG_HOME="$chart/.config" HELM_DATA_HOME="$chart/.data"
check "helm version is the pinned one" bash -c '
  [[ $(helm version --short) == "$1"* ]]' _ "$("$here/tools/build.sh" --versions helm | awk '{print $2}')"
check "helm install a chart" helm install smoke "$chart" -n "$ns" --wait --timeout 60s
check "the chart's ConfigMap exists" bash -c '
  [[ $("$1" -n "$2" get configmap smoke-cm -o jsonpath={.data.v}) == hello ]]' _ "$KUBECTL" "$ns"
check "helm uninstall" helm uninstall smoke -n "$ns" --wait

# ---------------------------------------------------------------- namespace deletion
# The namespace controller must empty the namespace (custom objects included)
# before it can go.
check "delete namespace $ns (with a ServiceMonitor still in it)" k delete namespace "$ns" --wait=false
check "namespace controller finishes deleting it" eventually 90 gone namespace "$ns"

# ---------------------------------------------------------------- down
if [[ "${KEEP:-0}" != 1 ]]; then
  pids="$(cat "$AUTHPLANE_CLUSTER_DIR"/pids/*.pid 2>/dev/null)"
  check "cluster.sh down" "$here/cluster.sh" down
  check "all cluster processes are gone and the state dir is removed" bash -c '
    for p in $1; do ! kill -0 "$p" 2>/dev/null || exit 1; done; [[ ! -e "$2" ]]' _ "$pids" "$AUTHPLANE_CLUSTER_DIR"
  check "cluster.sh status says down" bash -c '! "$1" status | grep -q "^up"' _ "$here/cluster.sh"
  check "cluster.sh down again is a no-op" "$here/cluster.sh" down
fi

finish
