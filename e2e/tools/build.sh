#!/usr/bin/env bash
# Build the pinned test tools (the Kubernetes control plane used by
# e2e/cluster.sh, helm, and the OpenTelemetry Collector used by e2e/otel) into
# a cache outside the clone.
#
#   e2e/tools/build.sh [tool...]        build (or reuse) and print where each is
#                                       (default: all tools)
#   e2e/tools/build.sh --env [tool...]  same, then print sourceable
#                                       `export AUTHPLANE_<TOOL>=<path>` lines
#                                       and AUTHPLANE_TOOLS_PATH (progress on
#                                       stderr; default: the cluster tools)
#   e2e/tools/build.sh --print-bin-dir  same, then print one directory holding
#                                       symlinks to every cluster-tool binary
#                                       (for PATH)
#   e2e/tools/build.sh --versions       print tool versions, build nothing
#   e2e/tools/build.sh --path tool...   print where a tool is (or would be),
#                                       build nothing
#
# Cluster tools: etcd kube-apiserver kube-controller-manager kubectl helm
# servicemonitor-crd. Node tools (e2e/cluster.sh up --node): kubelet
# kube-scheduler kube-proxy pause. Other tools: otelcol. --env and
# --print-bin-dir default to the cluster tools only (what cluster.sh and
# helm-test.sh consume), so bringing up a cluster never waits for a collector
# or node build.
#
# Each tool goes to ${AUTHPLANE_TOOLS_DIR:-$HOME/.cache/authplane/tools}/<tool>-<version>/.
# The version is read from the committed wrapper go.mod files (or pinned below),
# so a bump builds into a new directory and an unchanged version is never
# rebuilt. A build happens in a temporary directory that is renamed into place
# only once the binary has built and answered --version, so an interrupted
# build never leaves a half binary behind.
#
# Reproducibility: go.sum files are committed and the build runs with
# GOFLAGS=-mod=readonly (a missing go.sum entry fails loudly), -trimpath,
# -buildvcs=false, CGO_ENABLED=0 and GOTOOLCHAIN=local.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLS_DIR="${AUTHPLANE_TOOLS_DIR:-$HOME/.cache/authplane/tools}"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"

# The ServiceMonitor CRD comes from this prometheus-operator module version;
# the h1: sum is the Go checksum-database hash of the module zip, checked on
# every download.
PROM_OPERATOR_MODULE=github.com/prometheus-operator/prometheus-operator
PROM_OPERATOR_VERSION=v0.85.0
PROM_OPERATOR_SUM='h1:M5xLCLEoaW2IJfnuCwFzzpL+jSVQu3KGT84Pye+fW8s='
SERVICEMONITOR_CRD_PATH=example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml

# The pod sandbox program (e2e/tools/pause/main.go, standard library only):
# bump with any change to it, so the cache keeps one build per version.
PAUSE_VERSION=v1

CLUSTER_TOOLS=(etcd kube-apiserver kube-controller-manager kubectl helm servicemonitor-crd)
NODE_TOOLS=(kubelet kube-scheduler kube-proxy pause)
ALL_TOOLS=("${CLUSTER_TOOLS[@]}" "${NODE_TOOLS[@]}" otelcol)

log() { echo "$@" >&"$out_fd"; }
die() { echo "build.sh: error: $*" >&2; exit 1; }

# Version of a module as required by a committed wrapper go.mod.
gomod_version() { # dir module
  local v
  v="$(awk -v m="$2" '($1 == m && $2 ~ /^v/) {print $2; exit} ($1 == "require" && $2 == m) {print $3; exit}' "$here/$1/go.mod")"
  [[ -n "$v" ]] || die "$2 not found in $here/$1/go.mod"
  echo "$v"
}

tool_version() {
  case "$1" in
    etcd) gomod_version etcd go.etcd.io/etcd/server/v3 ;;
    kube-apiserver | kube-controller-manager | kubectl | kubelet | kube-scheduler | kube-proxy)
      gomod_version kubernetes k8s.io/kubernetes ;;
    pause) echo "$PAUSE_VERSION" ;;
    helm) gomod_version helm helm.sh/helm/v3 ;;
    otelcol) gomod_version otelcol go.opentelemetry.io/collector/otelcol ;;
    servicemonitor-crd) echo "$PROM_OPERATOR_VERSION" ;;
    *) die "unknown tool '$1' (known: ${ALL_TOOLS[*]})" ;;
  esac
}

tool_file() {
  case "$1" in
    servicemonitor-crd) echo monitoring.coreos.com_servicemonitors.yaml ;;
    *) echo "$1" ;;
  esac
}

tool_path() { echo "$TOOLS_DIR/$1-$(tool_version "$1")/$(tool_file "$1")"; }

# Go's build cache goes to a temporary directory removed on exit: the built
# binaries are cached by version above, and the ~5 GB of compiler output
# behind them would only fill the disk (the three Kubernetes tools still share
# it within one run).
# ensure_gocache runs in the main shell (not in a $(...) subshell) so the EXIT
# trap sees the directory.
gocache=""
ensure_gocache() {
  if [[ -z "$gocache" ]]; then
    gocache="$(mktemp -d "$TOOLS_DIR/.gocache.XXXXXX")"
    tmp_dirs+=("$gocache")
  fi
}
go_env() {
  env GOCACHE="${AUTHPLANE_GOCACHE:-${gocache:?}}" CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" "$@"
}

# The `-X` flags the upstream release builds set, so --version reports the
# real version instead of a v0.0.0 placeholder.
ldflags_for() { # tool version
  local tool="$1" v="$2" ld="-s -w" pkg k date minor
  case "$tool" in
    kube-apiserver | kube-controller-manager | kubectl | kubelet | kube-scheduler | kube-proxy)
      minor="${v#v1.}"; minor="${minor%%.*}"
      # Build date = the release's publication time, so rebuilds are identical.
      date="$(cd "$here/kubernetes" && go_env "$GO" list -m -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes)"
      for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        for k in "gitVersion=$v" gitMajor=1 "gitMinor=$minor" gitTreeState=clean "buildDate=$date"; do
          ld+=" -X $pkg.$k"
        done
      done
      ;;
    helm)
      local cg major cgminor
      cg="$(gomod_version helm k8s.io/client-go)" # v0.37.0 -> Kubernetes 1.37
      major=1; cgminor="${cg#v0.}"; cgminor="${cgminor%%.*}"
      ld+=" -X helm.sh/helm/v3/internal/version.version=$v -X helm.sh/helm/v3/internal/version.metadata="
      ld+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
      for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
        ld+=" -X $pkg.k8sVersionMajor=$major -X $pkg.k8sVersionMinor=$cgminor"
      done
      ;;
    otelcol)
      # e2e/tools/otelcol/main.go puts it in BuildInfo.Version.
      ld+=" -X main.version=$v"
      ;;
  esac
  echo "$ld"
}

# Check a freshly built binary reports the pinned version before caching it.
check_version() { # tool path version
  local got
  case "$1" in
    kube-apiserver | kube-controller-manager | kubelet | kube-scheduler | kube-proxy)
      got="$("$2" --version 2>&1)"; [[ "$got" == "Kubernetes $3" ]] ;;
    pause) got="$("$2" --version 2>&1)"; [[ "$got" == "authplane-pause $3" ]] ;;
    kubectl) got="$("$2" version --client 2>&1 | head -n 1)"; [[ "$got" == "Client Version: $3" ]] ;;
    etcd) got="$("$2" --version 2>&1)"; grep -qx "etcd Version: ${3#v}" <<<"$got" ;;
    helm) got="$("$2" version --short 2>&1)"; [[ "$got" == "$3"* ]] ;;
    otelcol) got="$("$2" --version 2>&1)"; [[ "$got" == "otelcol version $3" ]] ;;
    servicemonitor-crd) got="$(head -c 4096 "$2")"; grep -q 'name: servicemonitors.monitoring.coreos.com' <<<"$got" ;;
  esac || die "$1 built at $2 but reports '$got', expected $3"
}

tmp_dirs=()
cleanup() { local d; for d in "${tmp_dirs[@]}"; do rm -rf "$d"; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM

build_one() {
  local tool="$1" v final file tmp start
  v="$(tool_version "$tool")"
  file="$(tool_file "$tool")"
  final="$TOOLS_DIR/$tool-$v"
  if [[ -f "$final/$file" ]]; then
    log "$tool $v: cached: $final/$file"
    return
  fi
  ensure_gocache
  tmp="$(mktemp -d "$TOOLS_DIR/.$tool-$v.tmp.XXXXXX")"
  chmod 0755 "$tmp"
  tmp_dirs+=("$tmp")
  start=$SECONDS
  log "$tool $v: building into $final ..."
  case "$tool" in
    servicemonitor-crd)
      local json dir sum
      # Outside any module: `go mod download m@v` verifies the zip against the
      # checksum database; we also pin the sum here.
      json="$(cd "$tmp" && GOFLAGS=-mod=mod GOTOOLCHAIN=local "$GO" mod download -json "$PROM_OPERATOR_MODULE@$v")"
      dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$json")"
      sum="$(sed -n 's/^[[:space:]]*"Sum": "\(.*\)",$/\1/p' <<<"$json")"
      [[ "$sum" == "$PROM_OPERATOR_SUM" ]] || die "$PROM_OPERATOR_MODULE@$v has sum '$sum', pinned '$PROM_OPERATOR_SUM'"
      cp "$dir/$SERVICEMONITOR_CRD_PATH" "$tmp/$file"
      chmod 0644 "$tmp/$file"
      ;;
    *)
      local moddir pkg ld
      case "$tool" in
        etcd) moddir=etcd; pkg=. ;;
        kube-apiserver | kube-controller-manager | kubectl | kubelet | kube-scheduler | kube-proxy)
          moddir=kubernetes; pkg="k8s.io/kubernetes/cmd/$tool" ;;
        pause) moddir=pause; pkg=. ;;
        helm) moddir=helm; pkg=helm.sh/helm/v3/cmd/helm ;;
        otelcol) moddir=otelcol; pkg=. ;;
      esac
      ld="$(ldflags_for "$tool" "$v")"
      (cd "$here/$moddir" && go_env nice -n 10 "$GO" build -trimpath -ldflags "$ld" -o "$tmp/$file" "$pkg") >&2 ||
        die "building $tool failed (see above)"
      {
        echo "tool: $tool $v"
        echo "package: $pkg (wrapper module e2e/tools/$moddir)"
        echo "go: $("$GO" env GOVERSION) $("$GO" env GOOS)/$("$GO" env GOARCH) CGO_ENABLED=0 -trimpath -mod=readonly"
        echo "ldflags: $ld"
        echo "go.mod sha256: $(sha256sum <"$here/$moddir/go.mod" | cut -d' ' -f1)"
        [[ ! -f "$here/$moddir/go.sum" ]] || echo "go.sum sha256: $(sha256sum <"$here/$moddir/go.sum" | cut -d' ' -f1)"
      } >"$tmp/BUILDINFO"
      if [[ "$tool" == pause ]]; then
        # The pod sandbox image cluster.sh imports into containerd, written
        # like the AuthPlane images (scripts/oci-image.py, reproducible).
        SOURCE_DATE_EPOCH=0 python3 "$here/../../scripts/oci-image.py" --binary "$tmp/pause" --name pause \
          --ref "authplane.local/pause:$v" --out "$tmp/pause.tar" >&2 || die "writing the pause image failed"
      fi
      ;;
  esac
  check_version "$tool" "$tmp/$file" "$v"
  # Atomic publish: rename the complete directory. If another build won the
  # race, keep its result.
  if ! mv -T "$tmp" "$final" 2>/dev/null; then
    [[ -f "$final/$file" ]] || die "could not move $tmp to $final"
  fi
  log "$tool $v: built in $((SECONDS - start))s: $final/$file"
}

# One directory of symlinks for the current cluster-tool pins, for PATH.
bin_dir_key() { local t; for t in "${CLUSTER_TOOLS[@]}"; do printf '%s' "${t}-$(tool_version "$t")_"; done; }
bin_dir_path() { echo "$TOOLS_DIR/bin/$(sha256sum <<<"$(bin_dir_key)" | cut -c1-12)"; }
bin_dir() {
  local key t d tmp
  key="$(bin_dir_key)"
  d="$(bin_dir_path)"
  if [[ ! -d "$d" ]]; then
    mkdir -p "$TOOLS_DIR/bin"
    tmp="$(mktemp -d "$TOOLS_DIR/bin/.tmp.XXXXXX")"
    chmod 0755 "$tmp"
    tmp_dirs+=("$tmp")
    for t in "${CLUSTER_TOOLS[@]}"; do
      [[ "$t" == servicemonitor-crd ]] || ln -s "$(tool_path "$t")" "$tmp/$t"
    done
    echo "$key" >"$tmp/VERSIONS"
    mv -T "$tmp" "$d" 2>/dev/null || [[ -d "$d" ]]
  fi
  echo "$d"
}

mode=build
case "${1:-}" in
  --env) mode="env"; shift ;;
  --print-bin-dir) mode=bin-dir; shift ;;
  --versions) mode=versions; shift ;;
  --path) mode=path; shift ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  -*) die "unknown option $1" ;;
esac
tools=("$@")
if [[ ${#tools[@]} -eq 0 ]]; then
  case "$mode" in
    env) tools=("${CLUSTER_TOOLS[@]}") ;;
    *) tools=("${ALL_TOOLS[@]}") ;;
  esac
fi
[[ "$mode" == bin-dir ]] && tools=("${CLUSTER_TOOLS[@]}")
for t in "${tools[@]}"; do tool_version "$t" >/dev/null; done

if [[ "$mode" == versions ]]; then
  for t in "${tools[@]}"; do echo "$t $(tool_version "$t")"; done
  exit 0
fi
if [[ "$mode" == path ]]; then
  for t in "${tools[@]}"; do tool_path "$t"; done
  exit 0
fi

[[ -x "$GO" ]] || die "go not found (set GO=/path/to/go)"
# Machine-readable modes keep stdout for their result.
if [[ "$mode" == build ]]; then out_fd=1; else out_fd=2; fi

mkdir -p "$TOOLS_DIR"
all_cached=1
for t in "${tools[@]}"; do [[ -f "$(tool_path "$t")" ]] || all_cached=""; done
[[ "$mode" != bin-dir || -d "$(bin_dir_path)" ]] || all_cached=""
# Nothing to build: skip the lock. A published tool is complete (it got there
# by rename), so this never sees half a build, and it doesn't wait minutes for
# another run that is building some other tool.
if [[ -z "$all_cached" ]]; then
  # Serialise concurrent builds (e.g. two test suites calling cluster.sh up).
  exec 9>"$TOOLS_DIR/.build.lock"
  flock 9
  # Holding the lock, no other build is running: temp dirs left by a killed
  # (SIGKILL, power loss) build are garbage.
  rm -rf "$TOOLS_DIR"/.*.tmp.* "$TOOLS_DIR"/bin/.tmp.*
fi

for t in "${tools[@]}"; do build_one "$t"; done

case "$mode" in
  env)
    path=""
    for t in "${tools[@]}"; do
      var="AUTHPLANE_$(tr 'a-z-' 'A-Z_' <<<"$t")"
      echo "export $var=$(printf '%q' "$(tool_path "$t")")"
      [[ "$t" == servicemonitor-crd ]] || path+="${path:+:}$(dirname "$(tool_path "$t")")"
    done
    echo "export AUTHPLANE_TOOLS_PATH=$(printf '%q' "$path")"
    ;;
  bin-dir) bin_dir ;;
esac
