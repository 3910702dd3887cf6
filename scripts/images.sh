#!/usr/bin/env bash
# make images: the two OCI image archives, without a container engine.
#
#   target/images/authserver.tar          ghcr.io/authplane/authserver:<version>
#   target/images/authplane-operator.tar  ghcr.io/authplane/authplane-operator:<version>
#
# Each is the release binary, exactly the shared libraries it links, CA
# certificates and a non-root user (scripts/oci-image.py). Reproducible:
# SOURCE_DATE_EPOCH defaults to the last commit's time, so the same commit
# gives the same digests. Load one with `ctr -n k8s.io images import
# target/images/authserver.tar`, `skopeo copy oci-archive:… docker://…` or
# `podman load -i …`. The Dockerfile builds the same layout with Docker.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
# One release build of the workspace's binaries (the same feature
# resolution as make bench and bench-operator).
cargo build --locked -q --release --workspace --bins
for name in authserver authplane-operator; do
  scripts/oci-image.py --binary "target/release/$name" --name "$name" \
    --ref "ghcr.io/authplane/$name:$version" --out "target/images/$name.tar"
  printf '%s: %.1f MB (target < 30 MB)\n' "target/images/$name.tar" "$(stat -c %s "target/images/$name.tar" | awk '{print $1 / 1e6}')"
done
