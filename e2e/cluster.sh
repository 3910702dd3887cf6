#!/usr/bin/env bash
# A real Kubernetes control plane on this machine: etcd, kube-apiserver and
# kube-controller-manager built from pinned Go modules (e2e/tools/build.sh),
# listening on 127.0.0.1 only. No kubelet, so pods never run; everything the
# operator does through the API (CRDs, RBAC, owner references + garbage
# collection, ServiceAccounts and their tokens) works.
#
#   e2e/cluster.sh up       start (or reuse) the cluster; the last line of
#                           stdout is `export KUBECONFIG=<path>`, so
#                           eval "$(e2e/cluster.sh up | tail -1)" works
#   e2e/cluster.sh env      print export lines (KUBECONFIG, PATH with helm,
#                           etcd, kube-*) for a running cluster
#   e2e/cluster.sh status   print up/down (exit 0 if up, 1 if down)
#   e2e/cluster.sh down     stop the processes and remove the state dir
#
# State (certificates, etcd data, kubeconfig, logs/*.log, pids) lives in
# ${AUTHPLANE_CLUSTER_DIR:-${TMPDIR:-/tmp}/authplane-cluster}.
# Tools come from ${AUTHPLANE_TOOLS_DIR:-$HOME/.cache/authplane/tools}.
# Timeouts: AUTHPLANE_CLUSTER_TIMEOUT (seconds, default 120) bounds each wait.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${AUTHPLANE_CLUSTER_DIR:-${TMPDIR:-/tmp}/authplane-cluster}"
TIMEOUT="${AUTHPLANE_CLUSTER_TIMEOUT:-120}"
# kubectl: $KUBECTL, else the one built with the cluster (same version as
# the server), else whatever is on PATH.
KUBECTL_FROM_ENV="${KUBECTL:-}"
KUBECTL="${KUBECTL:-$("$here/tools/build.sh" --path kubectl)}"
[[ -x "$KUBECTL" ]] || command -v "$KUBECTL" >/dev/null || KUBECTL=kubectl
SERVICE_CIDR=10.0.0.0/24 # never routed: there is no kube-proxy; API objects only
SERVICE_IP=10.0.0.1      # first address of SERVICE_CIDR: the `kubernetes` Service
CLUSTER_NAME=authplane-e2e
COMPONENTS=(etcd kube-apiserver kube-controller-manager) # start order

say() { echo "cluster.sh: $*" >&2; }
die() { echo "cluster.sh: error: $*" >&2; exit 1; }

kubeconfig="$STATE/kubeconfig"
pidfile() { echo "$STATE/pids/$1.pid"; }
logfile() { echo "$STATE/logs/$1.log"; }

# A pid file names a live process that is ours: same pid, and its executable
# is the binary we started (guards against pid reuse after a reboot).
alive() {
  local pf pid exe
  pf="$(pidfile "$1")"
  [[ -f "$pf" ]] || return 1
  pid="$(<"$pf")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  exe="$(readlink "/proc/$pid/exe" 2>/dev/null)" || return 1
  [[ "$(basename "${exe% (deleted)}")" == "$1" ]]
}

kc() { "$KUBECTL" --kubeconfig="$kubeconfig" --request-timeout=5s "$@"; }

healthy() {
  [[ -f "$kubeconfig" ]] || return 1
  local c
  for c in "${COMPONENTS[@]}"; do alive "$c" || return 1; done
  kc get --raw /readyz >/dev/null 2>&1
}

export_line() { echo "export KUBECONFIG=$kubeconfig"; }

# ---------------------------------------------------------------- down

stop_one() {
  local c="$1" pid i
  alive "$c" || { rm -f "$(pidfile "$c")"; return 0; }
  pid="$(<"$(pidfile "$c")")"
  # Each component runs in its own session (setsid), so its pid is also its
  # process-group id: signal the group.
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$c (pid $pid) ignored SIGTERM for 10s; sending SIGKILL"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$(pidfile "$c")"
}

cmd_down() {
  local i
  if [[ -d "$STATE" ]]; then
    for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do stop_one "${COMPONENTS[i]}"; done
    rm -rf "$STATE"
    say "stopped; removed $STATE"
  else
    say "not running (no $STATE)"
  fi
}

# ---------------------------------------------------------------- status/env

cmd_status() {
  if healthy; then
    echo "up: $(sed -n 's/^ *server: //p' "$kubeconfig") (state $STATE)"
    return 0
  fi
  if [[ -d "$STATE" ]]; then
    local c s=""
    for c in "${COMPONENTS[@]}"; do
      if alive "$c"; then s+=" $c=running"; else s+=" $c=stopped"; fi
    done
    echo "down: unhealthy cluster state in $STATE:$s (run: $0 down)"
  else
    echo "down"
  fi
  return 1
}

cmd_env() {
  healthy || die "no healthy cluster in $STATE (run: $0 up)"
  cat "$STATE/env"
}

# ---------------------------------------------------------------- up

# Free TCP ports on loopback, below the ephemeral range so outgoing
# connections do not take them between our choice and the bind.
pick_ports() { # count
  local used want="$1" p chosen=()
  used=" $(ss -Htan 2>/dev/null | awk '{n=split($4, a, ":"); print a[n]}' | sort -u | tr '\n' ' ') "
  while ((${#chosen[@]} < want)); do
    p=$((20000 + RANDOM % 12000))
    [[ "$used" == *" $p "* ]] && continue
    used+="$p "
    chosen+=("$p")
  done
  echo "${chosen[@]}"
}

gen_pki() {
  local d="$STATE/pki"
  mkdir -p "$d"
  (
    cd "$d"
    umask 077
    # openssl chatters on stderr; show it only when it fails.
    openssl_q() { openssl "$@" 2>openssl.err || { cat openssl.err >&2; exit 1; }; }
    cat >openssl.cnf <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
authorityKeyIdentifier = keyid
subjectAltName = DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local, IP:127.0.0.1, IP:$SERVICE_IP
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
EOF
    # Cluster CA (also signs CSRs through the controller manager).
    openssl_q req -x509 -new -config openssl.cnf -extensions ca -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
      -nodes -keyout ca.key -out ca.crt -days 365 -subj "/CN=$CLUSTER_NAME-ca"
    issue() { # name subject extensions
      openssl_q req -new -config openssl.cnf -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$1.key" -out "$1.csr" -subj "$2"
      openssl_q x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
        -extfile openssl.cnf -extensions "$3" -out "$1.crt"
      rm -f "$1.csr"
    }
    issue apiserver "/CN=kube-apiserver" server
    issue admin "/O=system:masters/CN=authplane-e2e-admin" client
    issue kube-controller-manager "/CN=system:kube-controller-manager" client
    issue kube-controller-manager-serving "/CN=kube-controller-manager" server
    # Front-proxy (request-header) CA and the apiserver's proxy client cert,
    # as kubeadm sets up: needed by the aggregation layer, and by components
    # doing delegated authentication (the controller manager's own
    # endpoints), which otherwise log errors about the missing CA forever.
    openssl_q req -x509 -new -config openssl.cnf -extensions ca -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
      -nodes -keyout front-proxy-ca.key -out front-proxy-ca.crt -days 365 -subj "/CN=$CLUSTER_NAME-front-proxy-ca"
    openssl_q req -new -config openssl.cnf -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -keyout front-proxy-client.key -out front-proxy-client.csr -subj "/CN=front-proxy-client"
    openssl_q x509 -req -in front-proxy-client.csr -CA front-proxy-ca.crt -CAkey front-proxy-ca.key \
      -CAcreateserial -days 365 -extfile openssl.cnf -extensions client -out front-proxy-client.crt
    rm -f front-proxy-client.csr front-proxy-ca.srl
    # ServiceAccount token signing key pair (RS256, what most JWT consumers expect).
    openssl_q genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
    openssl_q pkey -in sa.key -pubout -out sa.pub
    rm -f openssl.err ca.srl
  )
}

write_kubeconfig() { # file user server
  local f="$1" user="$2" server="$3" b64="base64 -w0"
  cat >"$f" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $CLUSTER_NAME
  cluster:
    server: $server
    certificate-authority-data: $($b64 <"$STATE/pki/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $($b64 <"$STATE/pki/$user.crt")
    client-key-data: $($b64 <"$STATE/pki/$user.key")
contexts:
- name: $CLUSTER_NAME
  context:
    cluster: $CLUSTER_NAME
    user: $user
current-context: $CLUSTER_NAME
EOF
  chmod 600 "$f"
}

# Start a component detached from the calling shell: its own session
# (survives the caller's terminal and job control), stdin from /dev/null,
# output to logs/<name>.log, and no other inherited file descriptors (a
# caller's pipe held open by a daemon would make the caller wait for EOF
# until `down`; our lock fd would stay locked). The child writes its own pid
# before exec'ing so the pid file is right even if setsid had to fork.
start() { # name binary args...
  local name="$1"
  shift
  : >"$(logfile "$name")"
  # shellcheck disable=SC2016 # expanded by the child shell
  setsid bash -c '
    for fd in /proc/$$/fd/*; do
      fd="${fd##*/}"
      if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null; fi
    done
    echo $$ >"$1"; shift; exec "$@"' _ "$(pidfile "$name")" "$@" \
    </dev/null >>"$(logfile "$name")" 2>&1 8>&- &
  local i
  for ((i = 0; i < 100; i++)); do alive "$name" && break; sleep 0.1; done
  alive "$name" || fail_with_logs "$name did not start" "$name"
  say "started $name (pid $(<"$(pidfile "$name")"), log $(logfile "$name"))"
}

# A failed `up` stops whatever it started (no stray processes) but keeps the
# state dir, logs included, for inspection.
fail_with_logs() { # message component...
  local msg="$1" c i
  shift
  echo "cluster.sh: error: $msg" >&2
  for c in "$@"; do
    echo "---- last 40 lines of $(logfile "$c") ----" >&2
    tail -n 40 "$(logfile "$c")" >&2 2>/dev/null || true
  done
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do stop_one "${COMPONENTS[i]}"; done
  echo "---- processes stopped; logs kept in $STATE/logs; remove with: $0 down ----" >&2
  exit 1
}

# wait_for <description> <components whose logs to show> -- <command...>
wait_for() {
  local what="$1" logs="$2" deadline=$((SECONDS + TIMEOUT)) c
  shift 3
  until "$@" >/dev/null 2>&1; do
    for c in "${COMPONENTS[@]}"; do
      if [[ -f "$(pidfile "$c")" ]] && ! alive "$c"; then
        fail_with_logs "$c exited while waiting for $what" "$c"
      fi
    done
    # shellcheck disable=SC2086 # $logs is a list of component names
    ((SECONDS < deadline)) || fail_with_logs "timed out after ${TIMEOUT}s waiting for $what" $logs
    sleep 0.5
  done
}

etcd_healthy() { curl -fsS --max-time 2 "http://127.0.0.1:$1/health" | grep -q '"health":"true"'; }
kcm_healthy() { curl -fsS --max-time 2 --cacert "$STATE/pki/ca.crt" "https://127.0.0.1:$1/healthz" | grep -qx ok; }
default_sa_exists() { kc -n default get serviceaccount default; }

cmd_up() {
  local t0=$SECONDS
  if healthy; then
    say "already up ($STATE)"
    export_line
    return 0
  fi
  if [[ -d "$STATE" ]]; then
    say "found an unhealthy cluster in $STATE; recreating it"
    cmd_down
  fi
  command -v openssl >/dev/null || die "openssl not found (apt-get install -y openssl)"
  command -v curl >/dev/null || die "curl not found (apt-get install -y curl)"

  # Tools: build once into the cache (prints 'cached' when nothing to do).
  local tools_env
  tools_env="$("$here/tools/build.sh" --env)" || die "building tools failed"
  eval "$tools_env"
  [[ -n "${KUBECTL_FROM_ENV:-}" ]] || KUBECTL="$AUTHPLANE_KUBECTL"
  local bindir
  bindir="$("$here/tools/build.sh" --print-bin-dir 2>/dev/null)"

  mkdir -p "$STATE"/{logs,pids,etcd}
  chmod 700 "$STATE" "$STATE/etcd"
  gen_pki

  local etcd_port etcd_peer_port api_port kcm_port
  read -r etcd_port etcd_peer_port api_port kcm_port <<<"$(pick_ports 4)"
  local server="https://127.0.0.1:$api_port"
  write_kubeconfig "$kubeconfig" admin "$server"
  write_kubeconfig "$STATE/kube-controller-manager.kubeconfig" kube-controller-manager "$server"
  cat >"$STATE/ports" <<EOF
ETCD_PORT=$etcd_port
ETCD_PEER_PORT=$etcd_peer_port
APISERVER_PORT=$api_port
CONTROLLER_MANAGER_PORT=$kcm_port
EOF
  {
    echo "export KUBECONFIG=$kubeconfig"
    echo "export PATH=\"$bindir:\$PATH\""
    echo "export AUTHPLANE_SERVICEMONITOR_CRD=$AUTHPLANE_SERVICEMONITOR_CRD"
  } >"$STATE/env"

  local pki="$STATE/pki"
  # etcd: loopback only, plain HTTP (nothing else on the machine can reach
  # it). fsync is off: this is a throwaway test cluster, and fsync latency
  # dominates start-up on slow disks.
  start etcd "$AUTHPLANE_ETCD" \
    --name=authplane-e2e \
    --data-dir="$STATE/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" \
    --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster="authplane-e2e=http://127.0.0.1:$etcd_peer_port" \
    --unsafe-no-fsync
  wait_for "etcd /health" etcd -- etcd_healthy "$etcd_port"

  # --endpoint-reconciler-type=none: the apiserver would otherwise publish
  # 127.0.0.1 as the endpoint of the `kubernetes` Service, which endpoint
  # validation rejects; no pod runs here to use it anyway.
  start kube-apiserver "$AUTHPLANE_KUBE_APISERVER" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --secure-port="$api_port" \
    --tls-cert-file="$pki/apiserver.crt" \
    --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" \
    --service-account-signing-key-file="$pki/sa.key" \
    --authorization-mode=Node,RBAC \
    --requestheader-client-ca-file="$pki/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$pki/front-proxy-client.crt" \
    --proxy-client-key-file="$pki/front-proxy-client.key" \
    --allow-privileged=true \
    --endpoint-reconciler-type=none \
    --cert-dir="$STATE/apiserver-certs" \
    --profiling=false
  wait_for "kube-apiserver /readyz" "kube-apiserver etcd" -- kc get --raw /readyz

  # --use-service-account-credentials: each controller acts as its own
  # ServiceAccount with the bootstrap RBAC roles (the garbage collector needs
  # them to delete dependents), as on a kubeadm cluster.
  start kube-controller-manager "$AUTHPLANE_KUBE_CONTROLLER_MANAGER" \
    --kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 \
    --secure-port="$kcm_port" \
    --tls-cert-file="$pki/kube-controller-manager-serving.crt" \
    --tls-private-key-file="$pki/kube-controller-manager-serving.key" \
    --leader-elect=false \
    --controllers='*' \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$pki/sa.key" \
    --root-ca-file="$pki/ca.crt" \
    --cluster-signing-cert-file="$pki/ca.crt" \
    --cluster-signing-key-file="$pki/ca.key" \
    --cluster-name="$CLUSTER_NAME" \
    --profiling=false
  wait_for "kube-controller-manager /healthz" kube-controller-manager -- kcm_healthy "$kcm_port"
  # The `default` ServiceAccount is made by the controller manager's
  # serviceaccount controller: proof that it works and talks to the API.
  wait_for "the default/default ServiceAccount" "kube-controller-manager kube-apiserver" -- default_sa_exists

  say "up in $((SECONDS - t0))s: $server (logs in $STATE/logs)"
  export_line
}

# up and down for one state dir never run at the same time (two test suites
# calling `up` together would otherwise both start a cluster).
# The lock fd is closed in the cluster processes (see start), or they would
# hold the lock for as long as they run.
lock() {
  mkdir -p "$(dirname "$STATE")"
  exec 8>"$STATE.cluster-sh.lock"
  flock -w "$((TIMEOUT * 4))" 8 || die "another cluster.sh up/down on $STATE has held the lock for $((TIMEOUT * 4))s"
}

case "${1:-}" in
  up) lock; cmd_up ;;
  down) lock; cmd_down ;;
  env) cmd_env ;;
  status) cmd_status ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
