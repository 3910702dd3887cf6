#!/usr/bin/env bash
# The container images (make images), checked without a container engine:
# the archives are valid OCI layouts named ghcr.io/authplane/<name>:<version>
# (e2e/images/check.py), a second build gives the same digests, and each root
# filesystem runs its binary as the non-root user under chroot — the
# authserver serving /health on loopback from SQLite in the image's /tmp,
# which proves the libraries, CA bundle and user in the image are complete.
# The images in real pods are issue 12's node work (docs/install/images.md).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
as_pid=""
cleanup() {
  if [ -n "$as_pid" ]; then
    kill "$as_pid" 2>/dev/null || true
    wait "$as_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
failed=0
ok() { echo "ok   - $*"; }
bad() { echo "FAIL - $*"; failed=1; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
scripts/images.sh
declare -A first
for name in authserver authplane-operator; do
  first[$name]=$(sha256sum "target/images/$name.tar" | cut -d' ' -f1)
  echo "# $name"
  python3 e2e/images/check.py "target/images/$name.tar" "ghcr.io/authplane/$name:$version" "$work/$name" || failed=1
done
scripts/images.sh >/dev/null
for name in authserver authplane-operator; do
  [ "$(sha256sum "target/images/$name.tar" | cut -d' ' -f1)" = "${first[$name]}" ] &&
    ok "$name: a second build is byte-identical (reproducible)" || bad "$name: a second build differs"
done

run() { chroot --userspec=65532:65532 "$work/$1" "/usr/local/bin/$1" "${@:2}"; }
[ "$(run authplane-operator --version)" = "authplane-operator $version" ] &&
  ok "authplane-operator --version in its image as 65532" || bad "authplane-operator --version in its image"
# Captured first: grep -q would close the pipe early and the operator's
# print would fail with EPIPE (a race, not a finding).
crds_out=$(run authplane-operator crds)
grep -q 'kind: CustomResourceDefinition' <<<"$crds_out" &&
  ok "authplane-operator crds in its image" || bad "authplane-operator crds in its image"
run authserver version | grep -q "^authserver $version" &&
  ok "authserver version in its image as 65532" || bad "authserver version in its image"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/authserver/tmp/config.yaml" <<YAML
server:
  issuer: http://127.0.0.1:$port
  listen: 127.0.0.1:$port
admin:
  listen: 127.0.0.1:0
database:
  url: sqlite:///tmp/authplane.db?mode=rwc
signing:
  key_dir: /tmp/keys
YAML
chmod 0644 "$work/authserver/tmp/config.yaml"
# chroot execs the server, so $! is the server itself (what cleanup stops).
chroot --userspec=65532:65532 "$work/authserver" /usr/local/bin/authserver --config /tmp/config.yaml serve \
  >"$work/authserver.log" 2>&1 &
as_pid=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done
if curl -fsS "http://127.0.0.1:$port/health" | grep -q '"ok"'; then
  ok "authserver serves /health from its image's root filesystem as 65532 (SQLite in /tmp)"
else
  bad "authserver in its image: no healthy /health"; tail -5 "$work/authserver.log"
fi
curl -fsS "http://127.0.0.1:$port/.well-known/oauth-authorization-server" | grep -q "\"issuer\":\"http://127.0.0.1:$port\"" &&
  ok "discovery from the image answers with its issuer" || bad "discovery from the image"
[ "$(stat -c %u "$work/authserver/tmp/authplane.db")" = 65532 ] &&
  ok "the database file belongs to 65532" || bad "database file owner"
kill "$as_pid" && wait "$as_pid" || true
as_pid=""
pgrep -u 65532 -f '/usr/local/bin/authserver --config /tmp/config.yaml' >/dev/null &&
  bad "the authserver from the image is still running after SIGTERM" || ok "the authserver from the image stopped on SIGTERM"
exit $failed
