#!/usr/bin/env bash
# The Helm chart (charts/authplane) and the plain manifests (deploy/), tested
# on a real control plane (e2e/cluster.sh, in its own state dir):
#
#   1. drift: chart CRDs and values.schema.json vs crds/yaml/ (`make crds`),
#      deploy/authplane.yaml vs the chart (`make manifests`); every value is
#      documented, in the schema and set by a test values file;
#   2. `helm lint --strict`, and values that break the schema fail with a
#      readable message (`helm template` and `helm install`);
#   3. `helm template` with the defaults and every file in e2e/helm/values/,
#      each piped to `kubectl apply --dry-run=server` (ServiceMonitor CRD
#      installed), and deploy/authplane.yaml the same way;
#   4. `helm install` → `helm upgrade` (changed values) → `helm uninstall`:
#      objects appear, change and go; the CRDs stay;
#   5. RBAC: the operator binary, run locally with a token of the chart's
#      ServiceAccount and the flags of the chart's Deployment, reconciles
#      config/samples/ to Ready (cluster-wide, then with watchNamespace),
#      and what the chart does not grant is forbidden;
#   6. CRD upgrades: Helm leaves crds/ alone; crds.manage=true takes them over
#      (--take-ownership) and updates them; a fresh install with --skip-crds;
#      CRDs kept on uninstall;
#   7. the Grafana dashboard (grafanaDashboard.*): off by default; on, one
#      ConfigMap with the sidecar label holding dashboards/authplane.json, a
#      valid dashboard whose queries use only the metrics and labels of
#      docs/reference/metrics.md (e2e/helm/check-dashboard.py); created and
#      deleted by helm upgrade.
#
#   e2e/helm-test.sh            # prints "N passed, M failed"; exit 1 on failure
#   KEEP=1 e2e/helm-test.sh     # leave the cluster running
# Checks run `bash -c '...' _ args`: the single quotes are deliberate.
# shellcheck disable=SC2016,SC2001
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root" || exit 1
export AUTHPLANE_CLUSTER_DIR="${AUTHPLANE_HELM_E2E_DIR:-${TMPDIR:-/tmp}/authplane-helm-e2e-$$}"
chart=charts/authplane
ns=authplane-system
rel=authplane
sa="system:serviceaccount:$ns:authplane-operator"
samples_ns=apps
scoped_ns=authplane-scoped
team_ns=team-a
crds=(authservers.authplane.io protectedresources.authplane.io oauthclients.authplane.io)

# shellcheck source=lib/report.sh
source "$here/lib/report.sh"
# fails_with <description> <expected text> <command...>: pass if the command
# fails and its output contains the text; the message is shown either way.
fails_with() {
  local what="$1" want="$2" out
  shift 2
  if out="$("$@" 2>&1)"; then
    bad "$what (succeeded)"
  elif [[ "$out" == *"$want"* ]]; then
    ok "$what"
    grep -m1 -F -- "$want" <<<"$out" | sed 's/^/    → /'
  else
    bad "$what: no '$want' in:"
    sed 's/^/    /' <<<"$out" | tail -n 15
  fi
}
finish() {
  echo "$passed passed, $failed failed"
  [[ $failed -eq 0 ]]
}

work="$(mktemp -d)"
operator_pid=""
stop_operator() { # SIGTERM, as kubelet would; SIGKILL after 15 s
  [[ -n "$operator_pid" ]] || return 0
  kill "$operator_pid" 2>/dev/null
  local i
  for ((i = 0; i < 15; i++)); do
    kill -0 "$operator_pid" 2>/dev/null || break
    sleep 1
  done
  if kill -0 "$operator_pid" 2>/dev/null; then
    echo "# note: the operator did not exit within 15 s of SIGTERM; killed"
    kill -KILL "$operator_pid" 2>/dev/null
  fi
  wait "$operator_pid" 2>/dev/null
  operator_pid=""
}
cleanup() {
  stop_operator
  if [[ "${KEEP:-0}" == 1 ]]; then
    echo "# KEEP=1: cluster left running; use it with:"
    echo "#   export AUTHPLANE_CLUSTER_DIR=$AUTHPLANE_CLUSTER_DIR; eval \"\$($here/cluster.sh env)\""
    echo "# operator logs: $work; stop with: AUTHPLANE_CLUSTER_DIR=$AUTHPLANE_CLUSTER_DIR $here/cluster.sh down"
  else
    "$here/cluster.sh" down >/dev/null 2>&1 || true
    rm -f "$AUTHPLANE_CLUSTER_DIR.cluster-sh.lock"
    rm -rf "$work"
  fi
}
trap cleanup EXIT

k() { kubectl --request-timeout=20s "$@"; }
eventually() { # timeout-seconds command...
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { "$@"; return 1; }
    sleep 1
  done
}
gone() { local out; ! out="$(k get "$@" -o name 2>&1)" && [[ "$out" == *NotFound* ]]; }
jp() { k get "${@:2}" -o jsonpath="$1"; } # jp <jsonpath> <kubectl get args...>
equals() { [[ "$1" == "$2" ]] || { echo "got '$1', want '$2'"; return 1; }; }
contains() { [[ "$1" == *"$2"* ]] || { echo "'$2' not in: $1"; return 1; }; }
cannot() { # cannot <verb> <resource> [kubectl args...]: the ServiceAccount may not
  local out
  out="$(k auth can-i "$@" --as="$sa_as" 2>"$work/can-i.err")" && { echo "allowed: $*"; return 1; }
  [[ "$out" == no* ]] || { echo "$out"; cat "$work/can-i.err"; return 1; }
}
can() { k auth can-i "$@" --as="$sa_as"; }

# ---------------------------------------------------------------- offline
echo "# drift, docs and schema (no cluster)"
check "chart crds/ and values.schema.json match crds/yaml/ (make crds)" charts/hack/sync-crds.py --check
check "deploy/authplane.yaml matches the chart (make manifests)" charts/hack/render-manifests.sh --check
check "every value: README row, schema entry, set by a test values file" python3 e2e/helm/check-values.py

# The pinned helm and kubectl 1.37 (built into ~/.cache on first use).
if ! bin="$(e2e/tools/build.sh --print-bin-dir)"; then
  bad "e2e/tools/build.sh"
  finish
  exit 1
fi
export PATH="$bin:$PATH"
check "helm lint --strict (defaults)" helm lint --strict "$chart"
for f in e2e/helm/values/*.yaml; do
  check "helm lint --strict -f $f" helm lint --strict "$chart" -f "$f"
done

t() { helm template t "$chart" "$@"; }
fails_with "schema: replicaCount=0" "at '/replicaCount': minimum: got 0, want 1" t --set replicaCount=0
fails_with "schema: replicaCount=two" "at '/replicaCount': got string, want integer" t --set replicaCount=two
fails_with "schema: image.pullPolicy=Sometimes" "at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'" \
  t --set image.pullPolicy=Sometimes
fails_with "schema: log.format=xml" "at '/log/format': value must be one of 'logfmt', 'json'" t --set log.format=xml
fails_with "schema: watchNamespace=Team_A" "at '/watchNamespace'" t --set watchNamespace=Team_A
fails_with "schema: metrics.port=70000" "at '/metrics/port': maximum: got 70,000, want 65,535" t --set metrics.port=70000
fails_with "schema: misspelt rbac.serviceMonitor" "at '/rbac': additional properties 'serviceMonitor' not allowed" \
  t --set rbac.serviceMonitor=true
fails_with "schema: unknown top-level value" "additional properties 'replicas' not allowed" t --set replicas=2
fails_with "schema: authServer.create without an issuer" "at '/authServer/spec': missing property 'issuer'" \
  t --set authServer.create=true
fails_with "schema (from the CRD): misspelt authServer.spec.issur" "at '/authServer/spec': additional properties 'issur' not allowed" \
  t --set authServer.create=true --set authServer.spec.issuer=https://a.example.com --set authServer.spec.issur=x
fails_with "schema (from the CRD): authServer.spec.oauth.registration=sometimes" "at '/authServer/spec/oauth/registration': value must be one of 'open', 'token', 'off'" \
  t --set authServer.create=true --set authServer.spec.issuer=https://a.example.com --set authServer.spec.oauth.registration=sometimes
fails_with "schema (from the CRD): protectedResources[0] without scopes" "at '/protectedResources/0/spec': missing property 'scopes'" \
  t --set 'protectedResources[0].name=x' --set 'protectedResources[0].spec.resource=https://m.example.com/mcp'
fails_with "schema (from the CRD): oauthClients[0].spec.type=secret" "at '/oauthClients/0/spec/type': value must be one of 'public', 'confidential'" \
  t --set 'oauthClients[0].name=c' --set 'oauthClients[0].spec.type=secret'
fails_with "schema: oauthClients[0].name not a DNS label" "at '/oauthClients/0/name': 'Bad_Name' does not match pattern" \
  t --set 'oauthClients[0].name=Bad_Name' --set 'oauthClients[0].spec.type=public'
fails_with "template: replicaCount=2 without leader election" "replicaCount > 1 needs leaderElection.enabled=true" \
  t --set replicaCount=2 --set leaderElection.enabled=false
fails_with "template: operator ServiceMonitor without the metrics Service" "metrics.serviceMonitor.enabled=true needs metrics.service.enabled=true" \
  t --set metrics.serviceMonitor.enabled=true --set metrics.service.enabled=false
fails_with "template: serviceAccount.create=false without a name" "serviceAccount.name is required when serviceAccount.create is false" \
  t --set serviceAccount.create=false

echo "# registry shards (no cluster)"
check "defaults: --registry-shards=16 --max-shard-bytes=524288 (the operator's own defaults)" \
  bash -c 'helm template t "$1" | grep -qx -- "            - --registry-shards=16" && helm template t "$1" | grep -qx -- "            - --max-shard-bytes=524288"' _ "$chart"
check "all-options.yaml: --registry-shards=32 --max-shard-bytes=262144" \
  bash -c 'out=$(helm template t "$1" -f e2e/helm/values/all-options.yaml); grep -qx -- "            - --registry-shards=32" <<<"$out" && grep -qx -- "            - --max-shard-bytes=262144" <<<"$out"' _ "$chart"
fails_with "schema: registry.shards=65 (the operator allows 1–64)" "at '/registry/shards'" \
  t --set registry.shards=65
fails_with "schema: registry.maxShardBytes=1048576 (over the Secret limit)" "at '/registry/maxShardBytes'" \
  t --set registry.maxShardBytes=1048576

check "defaults: --probe-interval=60 (the operator's own default)" \
  bash -c 'helm template t "$1" | grep -qx -- "            - --probe-interval=60"' _ "$chart"
check "all-options.yaml: --probe-interval=30" \
  bash -c 'helm template t "$1" -f e2e/helm/values/all-options.yaml | grep -qx -- "            - --probe-interval=30"' _ "$chart"
fails_with "schema: diagnostics.probeIntervalSeconds=0 (the operator allows 1–86400)" "at '/diagnostics/probeIntervalSeconds'" \
  t --set diagnostics.probeIntervalSeconds=0

echo "# Grafana dashboard (no cluster)"
check "no dashboard ConfigMap by default" bash -c '! helm template t "$1" | grep -qx "kind: ConfigMap"' _ "$chart"
check "grafanaDashboard.enabled=true: one ConfigMap labelled grafana_dashboard=1 in the release namespace; its JSON parses, is the chart's dashboard, a valid Grafana dashboard, and queries only documented metrics and labels" \
  bash -c 'helm template t "$1" -n rel-ns --set grafanaDashboard.enabled=true | python3 e2e/helm/check-dashboard.py --namespace rel-ns' _ "$chart"
check "all-options.yaml: the dashboard's namespace, sidecar label and value, extra labels, annotations" \
  bash -c 'helm template t "$1" -f e2e/helm/values/all-options.yaml | python3 e2e/helm/check-dashboard.py \
    --label example.com/grafana-dashboard=true --namespace monitoring --meta-label team=platform --annotation grafana_folder=AuthPlane' _ "$chart"
fails_with "check-dashboard.py is not blind: a query naming an undocumented metric fails it" \
  "authplane_db_upp is not in docs/reference/metrics.md" \
  bash -c 'helm template t "$1" --set grafanaDashboard.enabled=true | sed "s/authplane_db_up{/authplane_db_upp{/" | python3 e2e/helm/check-dashboard.py' _ "$chart"
fails_with "schema: grafanaDashboard.sidecarLabelValue=1 (a number, not a string)" "at '/grafanaDashboard/sidecarLabelValue': got number, want string" \
  t --set grafanaDashboard.enabled=true --set grafanaDashboard.sidecarLabelValue=1
fails_with "schema: misspelt grafanaDashboard.enable" "at '/grafanaDashboard': additional properties 'enable' not allowed" \
  t --set grafanaDashboard.enable=true

# ---------------------------------------------------------------- cluster
echo "# control plane ($AUTHPLANE_CLUSTER_DIR)"
if [[ -z "${AUTHPLANE_OPERATOR_BIN:-}" ]]; then
  echo "# building authplane-operator" >&2
  if ! "$root/scripts/build-test-bins.sh" >&2; then
    bad "scripts/build-test-bins.sh"
    finish
    exit 1
  fi
  AUTHPLANE_OPERATOR_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/authplane-operator"
fi
if ! up_out="$("$here/cluster.sh" up)"; then
  bad "cluster.sh up"
  finish
  exit 1
fi
eval "$(tail -n 1 <<<"$up_out")"
eval "$("$here/cluster.sh" env)"
check "ServiceMonitor CRD installed" k apply --server-side -f "$AUTHPLANE_SERVICEMONITOR_CRD"
check "ServiceMonitor CRD established" k wait --for=condition=Established crd/servicemonitors.monitoring.coreos.com --timeout=60s
# monitoring: grafanaDashboard.namespace in all-options.yaml.
for n in "$ns" "$samples_ns" "$scoped_ns" "$team_ns" helm-dryrun monitoring; do k create namespace "$n" >/dev/null; done

# -- a values error at `helm install` stops everything before it is applied
fails_with "helm install with replicaCount=0 fails on the schema" "at '/replicaCount': minimum: got 0, want 1" \
  helm install bad "$chart" -n "$ns" --set replicaCount=0
# Helm itself installs crds/ before it validates values: only the CRDs may exist.
check "... and applied nothing of the release (no release, no Deployment)" \
  bash -c '! helm status bad -n "$1" >/dev/null 2>&1 && [[ -z "$(kubectl -n "$1" get deploy,sa,svc -l app.kubernetes.io/instance=bad -o name)" ]]' _ "$ns"

# -- the plain manifests, before any release owns these objects
check "deploy/authplane.yaml | kubectl apply --server-side --dry-run=server" \
  k apply --dry-run=server --server-side -f deploy/authplane.yaml

# -- install with the defaults
echo "# helm install (defaults)"
check "helm install $rel" helm install "$rel" "$chart" -n "$ns"
for c in "${crds[@]}"; do
  check "CRD $c installed from crds/ and Established" k wait --for=condition=Established "crd/$c" --timeout=60s
done
check "CRDs from crds/ are not release objects (Helm never upgrades or deletes them)" \
  bash -c '[[ -z "$(kubectl get crd authservers.authplane.io -o jsonpath="{.metadata.annotations.meta\.helm\.sh/release-name}")" ]]'
check "ServiceAccount, ClusterRole(Binding), leader-election Role(Binding), metrics Service, Deployment exist" \
  k -n "$ns" get sa/authplane-operator clusterrole/authplane-operator clusterrolebinding/authplane-operator \
  role/authplane-operator-leader-election rolebinding/authplane-operator-leader-election \
  svc/authplane-operator-metrics deploy/authplane-operator
check "no ServiceMonitor, no CRD-lookup rule, no AuthServer by default" \
  bash -c 'gone() { ! kubectl get "$@" >/dev/null 2>&1; }; gone -n "$1" servicemonitor/authplane-operator && gone -n "$1" authserver/authplane &&
    ! kubectl get clusterrole authplane-operator -o yaml | grep -q -e servicemonitors -e customresourcedefinitions' _ "$ns"
check "Deployment: image ghcr.io/authplane/authplane-operator:<appVersion>, 1 replica" bash -c '
  equals() { [[ "$1" == "$2" ]] || { echo "got $1 want $2"; return 1; }; }
  equals "$(kubectl -n "$1" get deploy authplane-operator -o jsonpath="{.spec.template.spec.containers[0].image} {.spec.replicas}")" \
    "ghcr.io/authplane/authplane-operator:$(sed -n "s/^appVersion: *\"\(.*\)\"/\1/p" "$2/Chart.yaml") 1"' _ "$ns" "$chart"
check "Deployment: non-root, read-only root FS, no privilege escalation, caps dropped, seccomp" bash -c '
  d=$(kubectl -n "$1" get deploy authplane-operator -o json)
  jq -e ".spec.template.spec.securityContext.runAsNonRoot == true and .spec.template.spec.securityContext.seccompProfile.type == \"RuntimeDefault\"
    and (.spec.template.spec.containers[0].securityContext | .readOnlyRootFilesystem == true and .allowPrivilegeEscalation == false and .capabilities.drop == [\"ALL\"])" <<<"$d"' _ "$ns"
check "Deployment: probes /healthz and /readyz on port metrics, leader-election flags, POD_NAMESPACE/POD_NAME" bash -c '
  c=$(kubectl -n "$1" get deploy authplane-operator -o json | jq ".spec.template.spec.containers[0]")
  jq -e ".livenessProbe.httpGet.path == \"/healthz\" and .readinessProbe.httpGet.path == \"/readyz\" and .readinessProbe.httpGet.port == \"metrics\"
    and (.args | index(\"--lease-name=authplane-operator\") != null and index(\"--metrics-addr=0.0.0.0:8080\") != null)
    and ([.env[].name] | index(\"POD_NAMESPACE\") != null and index(\"POD_NAME\") != null)" <<<"$c"' _ "$ns"
check "operator pods are not app=authplane (that label is the servers')" \
  bash -c '[[ -z "$(kubectl -n "$1" get deploy authplane-operator -o jsonpath="{.spec.template.metadata.labels.app}")" ]]' _ "$ns"
check "helm status: deployed, revision 1" bash -c 'helm status "$1" -n "$2" -o json | jq -e ".info.status == \"deployed\" and .version == 1"' _ "$rel" "$ns"
check "NOTES.txt names the debugging checklist" bash -c 'helm get notes "$1" -n "$2" | grep -q "docs/debugging-checklist.md"' _ "$rel" "$ns"

# -- every documented option through the API server's validation
echo "# helm template | kubectl apply --dry-run=server"
check "defaults" bash -c 'helm template t "$1" -n helm-dryrun | kubectl apply --dry-run=server -f -' _ "$chart"
for f in e2e/helm/values/*.yaml; do
  check "-f $f" bash -c 'helm template t "$1" -n helm-dryrun -f "$2" | kubectl apply --dry-run=server -f -' _ "$chart" "$f"
done
fails_with "a CEL rule of the CRD (replicas > 1 needs Postgres) fails at apply with its message" "more than one replica needs spec.database.postgres" \
  bash -c 'helm template t "$1" -n helm-dryrun --set authServer.create=true --set authServer.spec.issuer=https://auth.example.com \
    --set authServer.spec.replicas=2 | kubectl apply --dry-run=server -f -' _ "$chart"

# -- upgrade with changed values
echo "# helm upgrade (e2e/helm/values/upgrade.yaml)"
check "helm upgrade $rel -f upgrade.yaml" helm upgrade "$rel" "$chart" -n "$ns" -f e2e/helm/values/upgrade.yaml
check "Deployment: 2 replicas, log format json, pod annotation" bash -c '
  d=$(kubectl -n "$1" get deploy authplane-operator -o json)
  jq -e ".spec.replicas == 2 and .spec.template.metadata.annotations[\"example.com/upgraded\"] == \"yes\"
    and (.spec.template.spec.containers[0].env[] | select(.name == \"AUTHPLANE_OPERATOR_LOG_FORMAT\") | .value) == \"json\"" <<<"$d"' _ "$ns"
check "operator ServiceMonitor created, labelled release=prometheus, scraping port metrics" bash -c '
  kubectl -n "$1" get servicemonitor authplane-operator -o json | jq -e ".metadata.labels.release == \"prometheus\" and .spec.endpoints[0].port == \"metrics\""' _ "$ns"
check "ClusterRole now grants servicemonitors and get on the ServiceMonitor CRD only" bash -c '
  kubectl get clusterrole authplane-operator -o json | jq -e "
    any(.rules[]; .apiGroups == [\"monitoring.coreos.com\"] and .resources == [\"servicemonitors\"])
    and any(.rules[]; .apiGroups == [\"apiextensions.k8s.io\"] and .resourceNames == [\"servicemonitors.monitoring.coreos.com\"] and .verbs == [\"get\"])"'
check "AuthServer, ProtectedResource and two OAuthClients created from values" \
  k -n "$ns" get authserver/authplane protectedresource/mcp-tools oauthclient/cli oauthclient/backend
check "authServerRef defaulted to authServer.name" \
  bash -c '[[ "$(kubectl -n "$1" get oac backend -o jsonpath="{.spec.authServerRef.name}")" == authplane ]]' _ "$ns"
check "Grafana dashboard ConfigMap created, labelled grafana_dashboard=1, holding the dashboard JSON" bash -c '
  kubectl -n "$1" get configmap authplane-grafana-dashboard -o json |
    jq -e ".metadata.labels.grafana_dashboard == \"1\" and (.data[\"authplane.json\"] | fromjson | .uid == \"authplane\" and .title == \"AuthPlane\")"' _ "$ns"
check "helm status: revision 2" bash -c 'helm status "$1" -n "$2" -o json | jq -e ".version == 2"' _ "$rel" "$ns"

# -- RBAC proof, cluster-wide: the operator with the chart's ServiceAccount
# sa_kubeconfig <namespace> <serviceaccount> <file>: a kubeconfig that
# authenticates as the ServiceAccount (TokenRequest token).
sa_kubeconfig() {
  local token server ca
  token="$(k -n "$1" create token "$2" --duration=1h)" || return 1
  server="$(k config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
  ca="$work/ca.crt"
  k config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' | base64 -d >"$ca"
  KUBECONFIG="$3" kubectl config set-cluster e2e --server="$server" --certificate-authority="$ca" --embed-certs >/dev/null &&
    KUBECONFIG="$3" kubectl config set-credentials sa --token="$token" >/dev/null &&
    KUBECONFIG="$3" kubectl config set-context sa --cluster=e2e --user=sa >/dev/null &&
    KUBECONFIG="$3" kubectl config use-context sa >/dev/null
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# start_operator <release namespace> <deployment> <kubeconfig> <log>: runs the
# local binary with the args and literal env of the chart's Deployment
# (metrics on a free loopback port), as the pod would.
start_operator() {
  local d args=() envs=() a port
  d="$(k -n "$1" get deploy "$2" -o json)" || return 1
  port="$(free_port)"
  while IFS= read -r a; do
    [[ "$a" == --metrics-addr=* ]] && a="--metrics-addr=127.0.0.1:$port"
    args+=("$a")
  done < <(jq -r '.spec.template.spec.containers[0].args[]' <<<"$d")
  while IFS= read -r a; do envs+=("$a"); done < <(jq -r '.spec.template.spec.containers[0].env[] | select(.value != null) | "\(.name)=\(.value)"' <<<"$d")
  metrics_url="http://127.0.0.1:$port"
  operator_log="$4"
  env -u KUBECONFIG KUBECONFIG="$3" POD_NAMESPACE="$1" POD_NAME="helm-e2e-$2" "${envs[@]}" \
    "$AUTHPLANE_OPERATOR_BIN" "${args[@]}" >"$4" 2>&1 &
  operator_pid=$!
  echo "started ${AUTHPLANE_OPERATOR_BIN##*/} ${args[*]} (pid $operator_pid)"
}
samples_ready() { # samples_ready <namespace>: on failure, the objects and the operator's log
  k -n "$1" wait --for=condition=Ready --timeout=120s \
    authserver/authplane protectedresource/mcp-tools oauthclient/backend oauthclient/cli && return 0
  k -n "$1" get authplane -o wide
  echo "--- operator log (last 20 lines)"
  tail -n 20 "$operator_log"
  return 1
}
forbidden_count() { # reconcile failures the operator counted as api_forbidden
  curl -fsS "$metrics_url/metrics" | awk '/^authplane_operator_reconcile_failures_total\{.*api_forbidden/ {s += $NF} END {print s + 0}'
}

echo "# RBAC: the operator as system:serviceaccount:$ns:authplane-operator (all namespaces)"
sa_as="$sa"
check "kubeconfig with a token of the chart's ServiceAccount" sa_kubeconfig "$ns" authplane-operator "$work/sa.kubeconfig"
# Not through `check`: it must set operator_pid and metrics_url here.
if start_operator "$ns" authplane-operator "$work/sa.kubeconfig" "$work/operator.log"; then
  ok "operator started with the Deployment's args and env"
else bad "start the operator"; fi
check "kubectl apply -f config/samples/ -n $samples_ns (as admin)" k -n "$samples_ns" apply -f config/samples/
check "samples Ready in $samples_ns" samples_ready "$samples_ns"
check "the chart's own AuthServer, resource and clients Ready in $ns" samples_ready "$ns"
check "owned objects in $samples_ns: config and key Secrets, client Secret, Deployment, Service, ServiceMonitor" \
  k -n "$samples_ns" get secret/authplane-config secret/authplane-signing-keys secret/backend-oauth-client \
  deploy/authplane svc/authplane servicemonitor/authplane
check "the operator holds its Lease in $ns" \
  bash -c '[[ "$(kubectl -n "$1" get lease authplane-operator -o jsonpath="{.spec.holderIdentity}")" == helm-e2e-authplane-operator ]]' _ "$ns"
check "/readyz: ok: leading" bash -c 'curl -fsS "$1/readyz" | grep -q "ok: leading"' _ "$metrics_url"
check "repair: a deleted config Secret comes back" bash -c '
  kubectl -n "$1" delete secret authplane-config >/dev/null &&
  for i in $(seq 60); do kubectl -n "$1" get secret authplane-config >/dev/null 2>&1 && exit 0; sleep 1; done; exit 1' _ "$samples_ns"
check "no reconcile failed with api_forbidden" equals "$(forbidden_count)" 0
check "no 'forbidden' in the operator's log" bash -c '! grep -i forbidden "$1"' _ "$work/operator.log"
check "allowed: patch authservers/status" can patch authservers.authplane.io --subresource=status -n "$samples_ns"
check "allowed: update oauthclients/finalizers" can update oauthclients.authplane.io --subresource=finalizers -n "$samples_ns"
check "allowed: create secrets" can create secrets -n "$samples_ns"
check "allowed: patch deployments" can patch deployments.apps -n "$samples_ns"
check "allowed: create events.k8s.io events" can create events.events.k8s.io -n "$samples_ns"
check "allowed: delete servicemonitors (rbac.serviceMonitors)" can delete servicemonitors.monitoring.coreos.com -n "$samples_ns"
check "forbidden: delete secrets" cannot delete secrets -n "$samples_ns"
check "forbidden: delete deployments" cannot delete deployments.apps -n "$samples_ns"
check "allowed: update secrets (written whole, so stray or corrupt keys are removed)" can update secrets -n "$samples_ns"
check "forbidden: get pods" cannot get pods -n "$samples_ns"
check "forbidden: list configmaps" cannot list configmaps -n "$samples_ns"
check "forbidden: update authservers (spec is the user's)" cannot update authservers.authplane.io -n "$samples_ns"
check "forbidden: create clusterroles" cannot create clusterroles.rbac.authorization.k8s.io
check "forbidden: get other CRDs" cannot get customresourcedefinitions.apiextensions.k8s.io/authservers.authplane.io
check "forbidden: create leases outside $ns" cannot create leases.coordination.k8s.io -n "$samples_ns"
check "forbidden: update another Lease in $ns" cannot update leases.coordination.k8s.io/other -n "$ns"
check "forbidden: create core/v1 events (events.k8s.io only)" cannot create events -n "$samples_ns"
fails_with "with the token itself: kubectl get pods is Forbidden" "forbidden" \
  kubectl --kubeconfig "$work/sa.kubeconfig" -n "$samples_ns" get pods
stop_operator

# -- second upgrade: values removed and changed
echo "# helm upgrade (back to fewer objects)"
check "helm upgrade: one client removed, ServiceMonitor and dashboard off, 1 replica" \
  helm upgrade "$rel" "$chart" -n "$ns" -f e2e/helm/values/upgrade.yaml \
  --set replicaCount=1 --set metrics.serviceMonitor.enabled=false --set grafanaDashboard.enabled=false --set-json 'oauthClients=[{"name":"cli","spec":{"type":"public","redirectUris":["http://127.0.0.1/callback"],"allowedResources":["https://mcp.example.com/mcp"]}}]'
check "OAuthClient backend deleted, cli kept" bash -c '! kubectl -n "$1" get oac backend >/dev/null 2>&1 && kubectl -n "$1" get oac cli >/dev/null' _ "$ns"
check "operator ServiceMonitor deleted" eventually 10 gone -n "$ns" servicemonitor/authplane-operator
check "Grafana dashboard ConfigMap deleted" eventually 10 gone -n "$ns" configmap/authplane-grafana-dashboard
check "Deployment back to 1 replica" bash -c '[[ "$(kubectl -n "$1" get deploy authplane-operator -o jsonpath="{.spec.replicas}")" == 1 ]]' _ "$ns"

# -- RBAC proof, one namespace (watchNamespace)
echo "# RBAC: watchNamespace=$team_ns (release scoped in $scoped_ns)"
sa_as="system:serviceaccount:$scoped_ns:scoped-authplane-operator"
check "helm install scoped --set watchNamespace=$team_ns" helm install scoped "$chart" -n "$scoped_ns" --set watchNamespace="$team_ns"
check "a Role and RoleBinding in $team_ns, no ClusterRole" bash -c '
  kubectl -n "$1" get role/scoped-authplane-operator rolebinding/scoped-authplane-operator >/dev/null &&
  ! kubectl get clusterrole scoped-authplane-operator >/dev/null 2>&1' _ "$team_ns"
check "kubeconfig with a token of scoped-authplane-operator" sa_kubeconfig "$scoped_ns" scoped-authplane-operator "$work/scoped.kubeconfig"
if start_operator "$scoped_ns" scoped-authplane-operator "$work/scoped.kubeconfig" "$work/operator-scoped.log"; then
  ok "operator started with the scoped Deployment's args and env"
else bad "start the scoped operator"; fi
check "kubectl apply -f config/samples/ -n $team_ns" k -n "$team_ns" apply -f config/samples/
check "samples Ready in $team_ns" samples_ready "$team_ns"
check "AuthServer Ready despite monitoring without rbac.serviceMonitors (no ServiceMonitor made)" \
  bash -c '! kubectl -n "$1" get servicemonitor authplane >/dev/null 2>&1' _ "$team_ns"
check "no reconcile failed with api_forbidden" equals "$(forbidden_count)" 0
check "allowed: list secrets in $team_ns" can list secrets -n "$team_ns"
check "forbidden: list secrets in $samples_ns" cannot list secrets -n "$samples_ns"
check "forbidden: list authservers in all namespaces" cannot list authservers.authplane.io -A
check "forbidden: servicemonitors (rbac.serviceMonitors off)" cannot create servicemonitors.monitoring.coreos.com -n "$team_ns"
check "forbidden: get the ServiceMonitor CRD (rbac.serviceMonitors off)" \
  cannot get customresourcedefinitions.apiextensions.k8s.io/servicemonitors.monitoring.coreos.com
stop_operator
check "helm uninstall scoped" helm uninstall scoped -n "$scoped_ns"

# -- uninstall
echo "# helm uninstall"
check "helm uninstall $rel" helm uninstall "$rel" -n "$ns"
check "operator objects gone" bash -c 'for o in deploy/authplane-operator sa/authplane-operator svc/authplane-operator-metrics \
    role/authplane-operator-leader-election rolebinding/authplane-operator-leader-election; do
    ! kubectl -n "$1" get "$o" >/dev/null 2>&1 || { echo "still there: $o"; exit 1; }; done
    ! kubectl get clusterrole authplane-operator >/dev/null 2>&1 && ! kubectl get clusterrolebinding authplane-operator >/dev/null 2>&1' _ "$ns"
check "the chart's AuthServer, resource and client gone" bash -c '
  ! kubectl -n "$1" get authserver/authplane >/dev/null 2>&1 && [[ -z "$(kubectl -n "$1" get pres,oac -o name)" ]]' _ "$ns"
check "CRDs kept" k get crd "${crds[@]}"
check "custom resources not made by the chart kept ($samples_ns)" k -n "$samples_ns" get authserver/authplane oauthclient/backend

# ---------------------------------------------------------------- CRD upgrades
echo "# CRD upgrade path"
stale='[{"op":"replace","path":"/spec/versions/0/schema/openAPIV3Schema/description","value":"stale: an older chart"}]'
crd_desc() { jp '{.spec.versions[0].schema.openAPIV3Schema.description}' crd authservers.authplane.io; }
want_desc="$(python3 -c 'import sys,yaml; print(yaml.safe_load(open(sys.argv[1]))["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"])' \
  "$chart/crds/authservers.authplane.io.yaml")"
check "make the installed AuthServer CRD stale (as if from an older chart)" k patch crd authservers.authplane.io --type=json -p "$stale"
check "helm install (defaults) over existing CRDs" helm install "$rel" "$chart" -n "$ns"
check "Helm left the stale CRD alone (crds/ is install-only)" equals "$(crd_desc)" "stale: an older chart"
check "helm upgrade --take-ownership --set crds.manage=true" \
  helm upgrade "$rel" "$chart" -n "$ns" --reuse-values --set crds.manage=true --take-ownership
check "the CRD is the chart's again" equals "$(crd_desc)" "$want_desc"
check "CRDs now belong to the release, with helm.sh/resource-policy=keep" bash -c '
  for c in "$@"; do kubectl get crd "$c" -o json | jq -e ".metadata.annotations[\"meta.helm.sh/release-name\"] == \"authplane\"
    and .metadata.annotations[\"helm.sh/resource-policy\"] == \"keep\"" >/dev/null || { echo "not owned: $c"; exit 1; }; done' _ "${crds[@]}"
check "CRDs still Established, custom resources still served" k -n "$samples_ns" get authserver/authplane
check "stale again, then a plain helm upgrade (no flag) updates it" bash -c '
  kubectl patch crd authservers.authplane.io --type=json -p "$1" >/dev/null &&
  helm upgrade "$2" "$3" -n "$4" --reuse-values --set log.level=debug >/dev/null &&
  [[ "$(kubectl get crd authservers.authplane.io -o jsonpath="{.spec.versions[0].schema.openAPIV3Schema.description}")" == "$5" ]]' \
  _ "$stale" "$rel" "$chart" "$ns" "$want_desc"
check "helm uninstall" helm uninstall "$rel" -n "$ns"
check "CRDs kept (resource-policy keep)" k get crd "${crds[@]}"
check "custom resources kept" k -n "$samples_ns" get authserver/authplane

echo "# fresh install with crds.manage=true"
check "delete the CRDs (and with them every custom resource)" k delete crd "${crds[@]}" --wait=true --timeout=60s
check "helm install --skip-crds --set crds.manage=true" \
  helm install "$rel" "$chart" -n "$ns" --skip-crds --set crds.manage=true
for c in "${crds[@]}"; do
  check "CRD $c created by the templates and Established" k wait --for=condition=Established "crd/$c" --timeout=60s
done
check "helm uninstall" helm uninstall "$rel" -n "$ns"
check "CRDs kept" k get crd "${crds[@]}"

finish
