#!/usr/bin/env bash
# A real Kubernetes control plane on this machine: etcd, kube-apiserver and
# kube-controller-manager built from pinned Go modules (e2e/tools/build.sh),
# listening on 127.0.0.1 only. No kubelet, so pods never run; everything the
# operator does through the API (CRDs, RBAC, owner references + garbage
# collection, ServiceAccounts and their tokens) works.
#
# With --node, also a node that runs pods: containerd, runc and the CNI
# plugins (bridge, host-local, portmap) from Debian packages, and kubelet,
# kube-scheduler and kube-proxy from the same pinned module as the API
# server. The API server then listens on the node address (a dummy
# interface) where pods reach it through the `kubernetes` Service. Every
# host change the node makes is recorded before it starts and undone by
# `down` (docs/install/node.md lists them; e2e/pods-test.sh checks it).
#
#   e2e/cluster.sh up [--node]  start (or reuse) the cluster; the last line
#                           of stdout is `export KUBECONFIG=<path>`, so
#                           eval "$(e2e/cluster.sh up | tail -1)" works.
#                           --node imports target/images/*.tar (and the
#                           pause image) into containerd.
#   e2e/cluster.sh env      print export lines (KUBECONFIG, PATH with helm,
#                           etcd, kube-*) for a running cluster
#   e2e/cluster.sh status   print up/down (exit 0 if up, 1 if down)
#   e2e/cluster.sh down     stop the processes, undo the node's host changes
#                           and remove the state dir
#   e2e/cluster.sh host-state  print the host state a node changes (sysctls,
#                           links, routes, netfilter, mounts, cgroups, paths):
#                           equal before `up --node` and after `down`
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

# The node's addresses, all in 198.18.0.0/15 (RFC 2544, benchmarking: no real
# network uses it) and all on this machine; the host gets an `unreachable`
# route for the whole /15, so nothing in it is ever sent off the machine.
# This is the one place they are written down (docs/install/node.md copies).
NODE_NET=198.18.0.0/15
NODE_IP=198.18.0.1            # /32 on the dummy interface NODE_LINK: API server, kubelet, host services for pods
NODE_LINK=authplane0          # a dummy (or ifb) interface
POD_CIDR=198.18.1.0/24        # pods, on the bridge POD_BRIDGE (gateway .1)
POD_GATEWAY=198.18.1.1
POD_BRIDGE=authplane-cni0
NODE_SERVICE_CIDR=198.18.2.0/24 # Services (kube-proxy, iptables mode)
NODE_SERVICE_IP=198.18.2.1      # the `kubernetes` Service
NODE_COMPONENTS=(containerd kube-scheduler kubelet kube-proxy) # start order, after COMPONENTS
# Sysctls the kubelet, kube-proxy or the bridge plugin may set; saved before
# the node starts and written back by `down`.
NODE_SYSCTLS=(vm.overcommit_memory kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys
  kernel.keys.root_maxbytes net.ipv4.ip_forward net.ipv4.conf.all.forwarding net.ipv6.conf.all.forwarding
  net.ipv4.conf.all.route_localnet net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
  net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_tcp_timeout_established
  net.netfilter.nf_conntrack_tcp_timeout_close_wait)
# Host paths the node's programs create at fixed places (containerd's shim
# sockets and runc state, the CRI's network namespaces, the kubelet's
# container-log symlinks); removed by `down` when they did not exist before.
NODE_HOST_PATHS=(/run/containerd /var/run/netns /var/lib/cni /var/lib/kubelet /var/log/pods
  /var/log/containers /etc/kubernetes /etc/cni /opt/cni /run/runc)
NODE_PACKAGES=(containerd runc containernetworking-plugins iptables nftables conntrack)
CNI_BIN_DIR=/usr/lib/cni

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
    if node_mode; then
      stop_one kube-proxy
      stop_one kubelet
      stop_one kube-scheduler
      node_pods_down
    fi
    for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do stop_one "${COMPONENTS[i]}"; done
    if node_mode; then node_restore; fi
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

# In the PKI directory (gen_pki, node_certs): openssl chatters on stderr;
# show it only when it fails.
openssl_q() { openssl "$@" 2>openssl.err || { cat openssl.err >&2; exit 1; }; }
# A key and a certificate signed by the cluster CA: name subject extensions
# (a section of openssl.cnf).
issue() {
  openssl_q req -new -config openssl.cnf -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$1.key" -out "$1.csr" -subj "$2"
  openssl_q x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
    -extfile openssl.cnf -extensions "$3" -out "$1.crt"
  rm -f "$1.csr"
}

gen_pki() {
  local d="$STATE/pki"
  mkdir -p "$d"
  (
    cd "$d"
    umask 077
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
subjectAltName = DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local, IP:127.0.0.1, IP:$SERVICE_IP${NODE:+, IP:$NODE_IP}
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
EOF
    # Cluster CA (also signs CSRs through the controller manager).
    openssl_q req -x509 -new -config openssl.cnf -extensions ca -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
      -nodes -keyout ca.key -out ca.crt -days 365 -subj "/CN=$CLUSTER_NAME-ca"
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

# ---------------------------------------------------------------- node (--node)

node_mode() { [[ -f "$STATE/node.enabled" ]]; }
node_name() { hostname | tr '[:upper:]' '[:lower:]'; }
node_sock() { echo "$STATE/node/containerd.sock"; }
ctr_k8s() { ctr -a "$(node_sock)" -n k8s.io "$@"; }

# What a node changes on the host, one `key: value` line each, sorted where
# the order means nothing. Equal before `up --node` and after `down`.
cmd_host_state() {
  local k p h
  for k in "${NODE_SYSCTLS[@]}"; do echo "sysctl $k: $(sysctl -n "$k" 2>/dev/null || echo absent)"; done
  ip -o link show | awk '{sub(/@.*/, "", $2); print "link: " $2}' | sort
  ip -o addr show | awk '{print "addr: " $2, $3, $4}' | sort
  ip route show table all | sed 's/^/route: /' | sort
  if command -v nft >/dev/null; then nft list ruleset | sed 's/^/nft: /'; fi
  sed 's/^/ip_tables (legacy): /' /proc/net/ip_tables_names 2>/dev/null || true
  awk '{print "mount: " $5, $9, $4}' /proc/self/mountinfo | sort
  for h in /sys/fs/cgroup/*/; do
    find "$h" -mindepth 1 -maxdepth 1 -type d -printf 'cgroup: %p\n' 2>/dev/null || true
  done | sort
  for p in "${NODE_HOST_PATHS[@]}"; do
    if [[ -e "$p" ]]; then echo "path $p: present"; else echo "path $p: absent"; fi
  done
  { ls /var/run/netns 2>/dev/null || true; } | sed 's/^/netns: /'
  for p in /proc/[0-9]*; do
    k="$(readlink "$p/exe" 2>/dev/null)" || continue
    case "${k##*/}" in containerd | containerd-shim* | runc | kubelet | kube-proxy | kube-scheduler) echo "process: ${k##*/}" ;; esac
  done | sort | uniq -c | sed 's/^ *//'
}

# Debian packages the node needs, installed only when one is missing.
node_packages() {
  local p missing=()
  for p in "${NODE_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >"$STATE/logs/apt.log" 2>&1 ||
    { apt-get update >>"$STATE/logs/apt.log" 2>&1 && apt-get install -y --no-install-recommends "${missing[@]}" >>"$STATE/logs/apt.log" 2>&1; } ||
    { tail -20 "$STATE/logs/apt.log" >&2; die "apt-get install ${missing[*]} failed"; }
}

# Record what `down` must restore, before the node touches anything.
node_record() {
  local h="$STATE/host" k p
  mkdir -p "$h"
  for k in "${NODE_SYSCTLS[@]}"; do
    if sysctl -n "$k" >/dev/null 2>&1; then echo "$k=$(sysctl -n "$k")"; fi
  done >"$h/sysctls"
  nft list ruleset >"$h/nft.ruleset"
  for p in "${NODE_HOST_PATHS[@]}"; do [[ -e "$p" ]] || echo "$p"; done >"$h/absent-paths"
  ls /var/run/netns 2>/dev/null >"$h/netns" || true
  for p in /sys/fs/cgroup/*/kubepods*; do [[ -d "$p" ]] && echo "$p"; done >"$h/cgroups" || true
  cmd_host_state >"$h/state.before"
}

node_network_up() {
  if ip link show "$NODE_LINK" >/dev/null 2>&1; then
    die "interface $NODE_LINK exists: another node cluster is running (or was not taken down: $0 down with its AUTHPLANE_CLUSTER_DIR)"
  fi
  # A dummy interface, or where the kernel has no dummy driver (this
  # machine's), an ifb one: both hold addresses and drop what is sent
  # through them.
  ip link add "$NODE_LINK" type dummy 2>/dev/null || ip link add "$NODE_LINK" type ifb ||
    die "cannot create interface $NODE_LINK (neither dummy nor ifb)"
  ip addr add "$NODE_IP/32" dev "$NODE_LINK"
  ip link set "$NODE_LINK" up
  # Nothing in NODE_NET leaves the machine: more specific routes (the node
  # address, the pod bridge, the Service range) win over this one.
  ip route add unreachable "$NODE_NET"
  # Host → Service IPs: source the node address; kube-proxy's DNAT in OUTPUT
  # re-routes to the pod or the node.
  ip route add "$NODE_SERVICE_CIDR" dev "$NODE_LINK" src "$NODE_IP"
}

# Undo everything node_record saw missing or different. Safe to run twice.
node_restore() {
  local h="$STATE/host" m p k v f
  [[ -d "$h" ]] || return 0
  # Network namespaces the CRI made (their veths go with them).
  if [[ -d /var/run/netns ]]; then
    for f in /var/run/netns/*; do
      [[ -e "$f" ]] || continue
      grep -qxF "${f##*/}" "$h/netns" 2>/dev/null && continue
      umount "$f" 2>/dev/null || umount -l "$f" 2>/dev/null || true
      rm -f "$f"
    done
  fi
  # Mounts under the state dir (the kubelet's root dir and pod volumes,
  # containerd's snapshots), deepest first.
  while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || say "could not unmount $m"
  done < <(awk -v s="$STATE/" 'index($5, s) == 1 {print length($5), $5}' /proc/self/mountinfo | sort -rn | cut -d' ' -f2-)
  # kubepods cgroups (all processes in them are gone by now), leaves first.
  for p in /sys/fs/cgroup/*/kubepods*; do
    [[ -d "$p" ]] || continue
    grep -qxF "$p" "$h/cgroups" 2>/dev/null && continue
    find "$p" -depth -type d -exec rmdir {} + 2>/dev/null || find "$p" -depth -type d -exec rmdir {} \; 2>/dev/null ||
      say "could not remove cgroup $p"
  done
  ip link del "$POD_BRIDGE" 2>/dev/null || true
  ip link del "$NODE_LINK" 2>/dev/null || true
  ip route del unreachable "$NODE_NET" 2>/dev/null || true
  # Netfilter as it was: the kubelet's, kube-proxy's and portmap's chains go.
  if [[ -f "$h/nft.ruleset" ]]; then
    nft flush ruleset
    [[ ! -s "$h/nft.ruleset" ]] || nft -f "$h/nft.ruleset"
  fi
  while IFS='=' read -r k v; do
    [[ "$(sysctl -n "$k" 2>/dev/null)" == "$v" ]] || sysctl -q -w "$k=$v" >/dev/null || say "could not restore $k=$v"
  done <"$h/sysctls"
  while read -r p; do
    [[ -n "$p" && -e "$p" ]] || continue
    while read -r m; do umount -l "$m" 2>/dev/null || true; done < <(awk -v s="$p/" 'index($5, s) == 1 {print $5}' /proc/self/mountinfo | sort -r)
    rm -rf "$p"
  done <"$h/absent-paths"
  rm -rf "$h"
}

# Stop the pods' processes: the kubelet is stopped first, so nothing restarts
# them. Then containerd, and any shim of ours that outlived it.
node_pods_down() {
  local id p exe
  if alive containerd; then
    for id in $(ctr_k8s tasks ls -q 2>/dev/null); do ctr_k8s tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
    sleep 0.5
    for id in $(ctr_k8s tasks ls -q 2>/dev/null); do ctr_k8s tasks rm -f "$id" >/dev/null 2>&1 || true; done
    for id in $(ctr_k8s containers ls -q 2>/dev/null); do ctr_k8s containers rm "$id" >/dev/null 2>&1 || true; done
  fi
  stop_one containerd
  for p in /proc/[0-9]*; do
    exe="$(readlink "$p/exe" 2>/dev/null)" || continue
    [[ "${exe##*/}" == containerd-shim* ]] || continue
    tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "-address $(node_sock)" || continue
    kill -KILL "${p#/proc/}" 2>/dev/null || true
  done
}

node_certs() {
  local n
  n="$(node_name)"
  (
    cd "$STATE/pki"
    umask 077
    cat >>openssl.cnf <<EOF
[kubelet]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
authorityKeyIdentifier = keyid
subjectAltName = DNS:$n, IP:$NODE_IP
EOF
    issue kubelet "/O=system:nodes/CN=system:node:$n" client
    issue kubelet-serving "/CN=$n" kubelet
    issue kube-scheduler "/CN=system:kube-scheduler" client
    issue kube-proxy "/CN=system:kube-proxy" client
    issue apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" client
    rm -f openssl.err ca.srl
  )
}

node_ready() {
  [[ "$(kc get node "$(node_name)" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]
}
scheduler_healthy() { curl -fsSk --max-time 2 "https://127.0.0.1:$1/healthz" | grep -qx ok; }
proxy_healthy() { curl -fsS --max-time 2 "http://127.0.0.1:$1/healthz" >/dev/null; }
containerd_up() { ctr -a "$(node_sock)" version; }
kubernetes_service_synced() { # the `kubernetes` Service answers through kube-proxy
  curl -sk --max-time 2 -o /dev/null -w '%{http_code}' "https://$NODE_SERVICE_IP/readyz" | grep -qE '^[1-5][0-9][0-9]$'
}

# containerd, the images, kube-scheduler, kubelet and kube-proxy; the control
# plane is up.
node_up() { # server
  local server="$1" d="$STATE/node" n sched_port kubelet_port kubelet_healthz proxy_healthz proxy_metrics
  n="$(node_name)"
  mkdir -p "$d"/{containerd,cni/net.d,cni/ipam,kubelet,pod-logs}
  read -r sched_port kubelet_port kubelet_healthz proxy_healthz proxy_metrics <<<"$(pick_ports 5)"
  cat >>"$STATE/ports" <<EOF
KUBE_SCHEDULER_PORT=$sched_port
KUBELET_PORT=$kubelet_port
KUBELET_HEALTHZ_PORT=$kubelet_healthz
KUBE_PROXY_HEALTHZ_PORT=$proxy_healthz
KUBE_PROXY_METRICS_PORT=$proxy_metrics
EOF
  write_kubeconfig "$STATE/kubelet.kubeconfig" kubelet "$server"
  write_kubeconfig "$STATE/kube-scheduler.kubeconfig" kube-scheduler "$server"
  write_kubeconfig "$STATE/kube-proxy.kubeconfig" kube-proxy "$server"

  # CNI: one bridge, host-local addresses, portmap for hostPort. No
  # masquerade and no default route in the pods: they reach NODE_NET only.
  cat >"$d/cni/net.d/10-authplane.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "authplane",
  "plugins": [
    {
      "type": "bridge", "bridge": "$POD_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$d/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY"}]],
        "routes": [{"dst": "$NODE_NET"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  # containerd: its own root, state and socket. restrict_oom_score_adj: root
  # here lacks CAP_SYS_RESOURCE, and runc fails to lower oom_score_adj
  # without it (docs/install/node.md).
  cat >"$d/containerd/config.toml" <<EOF
version = 2
root = "$d/containerd/root"
state = "$d/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$(node_sock)"
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "authplane.local/pause:$(basename "$(dirname "$AUTHPLANE_PAUSE")" | sed 's/^pause-//')"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$d/cni/net.d"
EOF
  start containerd containerd --config "$d/containerd/config.toml"
  wait_for "containerd" containerd -- containerd_up

  # Images: the pause (sandbox) image, and whatever `make images` built.
  local img imported=()
  for img in "$(dirname "$AUTHPLANE_PAUSE")/pause.tar" "$here"/../target/images/*.tar; do
    [[ -f "$img" ]] || continue
    ctr_k8s images import "$img" >>"$(logfile containerd)" 2>&1 || fail_with_logs "importing $img into containerd failed" containerd
    imported+=("$(basename "$img")")
  done
  say "imported into containerd: ${imported[*]}"

  start kube-scheduler "$AUTHPLANE_KUBE_SCHEDULER" \
    --kubeconfig="$STATE/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig="$STATE/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig="$STATE/kube-scheduler.kubeconfig" \
    --bind-address=127.0.0.1 \
    --secure-port="$sched_port" \
    --cert-dir="$STATE/kube-scheduler-certs" \
    --leader-elect=false \
    --profiling=false
  wait_for "kube-scheduler /healthz" kube-scheduler -- scheduler_healthy "$sched_port"

  # syncFrequency 10s: how soon a changed Secret reaches a pod's volume
  # (the kubelet's default is 1m; e2e/pods-test.sh relies on this).
  cat >"$d/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
address: $NODE_IP
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $kubelet_healthz
tlsCertFile: $STATE/pki/kubelet-serving.crt
tlsPrivateKeyFile: $STATE/pki/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $STATE/pki/ca.crt}
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://$(node_sock)
podLogsDir: $d/pod-logs
syncFrequency: 10s
failSwapOn: false
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}
EOF
  start kubelet "$AUTHPLANE_KUBELET" \
    --config="$d/kubelet.yaml" \
    --kubeconfig="$STATE/kubelet.kubeconfig" \
    --root-dir="$d/kubelet" \
    --cert-dir="$d/kubelet-certs" \
    --hostname-override="$n" \
    --node-ip="$NODE_IP"
  wait_for "node $n Ready" "kubelet containerd" -- node_ready

  # iptables mode; NodePorts only on the node address, no conntrack sysctls
  # touched, no route_localnet (localhostNodePorts off).
  cat >"$d/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $STATE/kube-proxy.kubeconfig}
hostnameOverride: $n
mode: iptables
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:$proxy_healthz
metricsBindAddress: 127.0.0.1:$proxy_metrics
nodePortAddresses: [$NODE_IP/32]
iptables: {localhostNodePorts: false, syncPeriod: 30s, minSyncPeriod: 0s}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  start kube-proxy "$AUTHPLANE_KUBE_PROXY" --config="$d/kube-proxy.yaml"
  wait_for "kube-proxy /healthz" kube-proxy -- proxy_healthy "$proxy_healthz"
  wait_for "the kubernetes Service through kube-proxy" "kube-proxy" -- kubernetes_service_synced
}

cmd_up() {
  local t0=$SECONDS
  local have_node=""
  if node_mode; then have_node=1; fi
  if [[ "$have_node" == "$NODE" ]] && healthy; then
    say "already up ($STATE)"
    export_line
    return 0
  fi
  if [[ -d "$STATE" ]]; then
    if [[ "$have_node" != "$NODE" ]]; then
      say "found a cluster with${NODE:+out} a node in $STATE; recreating it"
    else
      say "found an unhealthy cluster in $STATE; recreating it"
    fi
    cmd_down
  fi
  COMPONENTS=(etcd kube-apiserver kube-controller-manager)
  if [[ -n "$NODE" ]]; then COMPONENTS+=("${NODE_COMPONENTS[@]}"); fi
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
  local bind_ip=127.0.0.1
  if [[ -n "$NODE" ]]; then
    node_packages
    tools_env="$("$here/tools/build.sh" --env kubelet kube-scheduler kube-proxy pause)" || die "building node tools failed"
    eval "$tools_env"
    # From here on `down` undoes what this does (see node_restore).
    touch "$STATE/node.enabled"
    node_record
    node_network_up
    SERVICE_CIDR="$NODE_SERVICE_CIDR"
    SERVICE_IP="$NODE_SERVICE_IP"
    bind_ip="$NODE_IP"
  fi
  gen_pki

  local etcd_port etcd_peer_port api_port kcm_port
  read -r etcd_port etcd_peer_port api_port kcm_port <<<"$(pick_ports 4)"
  local server="https://$bind_ip:$api_port"
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
  # validation rejects; no pod runs here to use it anyway. With a node, it
  # listens on the node address and publishes that (the default reconciler),
  # and reaches the kubelet (logs, exec, port-forward) with a client cert.
  local api_node_flags=(--endpoint-reconciler-type=none)
  if [[ -n "$NODE" ]]; then
    api_node_flags=(--kubelet-client-certificate="$pki/apiserver-kubelet-client.crt"
      --kubelet-client-key="$pki/apiserver-kubelet-client.key"
      --kubelet-preferred-address-types=InternalIP)
    node_certs
  fi
  start kube-apiserver "$AUTHPLANE_KUBE_APISERVER" \
    --bind-address="$bind_ip" \
    --advertise-address="$bind_ip" \
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
    "${api_node_flags[@]}" \
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
  if [[ -n "$NODE" ]]; then node_up "$server"; fi

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

NODE=""
if node_mode; then COMPONENTS+=("${NODE_COMPONENTS[@]}"); fi
case "${1:-}" in
  up)
    case "${2:-}" in
      --node) NODE=1 ;;
      "") ;;
      *) die "unknown option '$2' (up takes --node)" ;;
    esac
    lock; cmd_up ;;
  down) lock; cmd_down ;;
  env) cmd_env ;;
  status) cmd_status ;;
  host-state) cmd_host_state ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
