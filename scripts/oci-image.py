#!/usr/bin/env python3
"""Writes a minimal OCI image archive for one AuthPlane binary, without a
container engine: one layer holding the binary, exactly the shared libraries
`ldd` names for it, CA certificates, /etc/passwd and /etc/group with the
non-root user the Deployments run as (65532), /etc/nsswitch.conf and an
empty /tmp. No shell, no package manager.

Reproducible: entries sorted, owned by root, mtime = SOURCE_DATE_EPOCH (the
commit time by default, see scripts/images.sh), gzip without a timestamp;
the same inputs give the same digests.

    oci-image.py --binary target/release/authserver --name authserver \
        --ref ghcr.io/authplane/authserver:0.1.0 --out target/images/authserver.tar
"""
import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile

USER = 65532
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def shared_libraries(binary):
    """Absolute paths of what the dynamic loader maps for `binary`."""
    run = subprocess.run(["ldd", binary], capture_output=True, text=True)
    if run.returncode != 0 and "not a dynamic executable" in run.stdout + run.stderr:
        return []  # a static binary (the node's Go pause program)
    run.check_returncode()
    out = run.stdout
    libs = []
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("linux-vdso") or "statically linked" in line:
            continue
        m = re.match(r"\S+ => (/\S+) \(", line) or re.match(r"(/\S+) \(", line)
        if not m:
            sys.exit(f"oci-image: cannot read ldd line: {line!r}")
        libs.append(m.group(1))
    return libs


def layer(binary, name, mtime):
    """The uncompressed layer tar as bytes."""
    files = {}  # path in image -> (bytes, mode)
    with open(binary, "rb") as f:
        files[f"usr/local/bin/{name}"] = (f.read(), 0o755)
    for lib in shared_libraries(binary):
        # Keep the path the binary's loader and RUNPATH expect; store the
        # file the symlink points at under that name.
        with open(os.path.realpath(lib), "rb") as f:
            files[lib.lstrip("/")] = (f.read(), 0o755)
    with open(CA_BUNDLE, "rb") as f:
        files[CA_BUNDLE.lstrip("/")] = (f.read(), 0o644)
    files["etc/passwd"] = (f"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{USER}:{USER}:nonroot:/home/nonroot:/sbin/nologin\n".encode(), 0o644)
    files["etc/group"] = (f"root:x:0:\nnonroot:x:{USER}:\n".encode(), 0o644)
    files["etc/nsswitch.conf"] = (b"hosts: files dns\n", 0o644)

    dirs = {"tmp": 0o1777, "home/nonroot": 0o755}
    for path in files:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.setdefault("/".join(parts[:i]), 0o755)

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(set(dirs) | set(files)):
            info = tarfile.TarInfo(path)
            info.mtime = mtime
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if path in dirs and path not in files:
                info.type = tarfile.DIRTYPE
                info.mode = dirs[path]
                if path == "home/nonroot":
                    info.uid = info.gid = USER
                tar.addfile(info)
            else:
                data, mode = files[path]
                info.size = len(data)
                info.mode = mode
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def blob(data):
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--ref", required=True, help="image reference, e.g. ghcr.io/authplane/authserver:0.1.0")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))

    raw = layer(a.binary, a.name, mtime)
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, compresslevel=9, filename="") as g:
        g.write(raw)
    layer_digest, layer_data = blob(gz.getvalue())

    created = datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    version = a.ref.rsplit(":", 1)[-1]
    labels = {
        "org.opencontainers.image.title": a.name,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.source": "https://github.com/authplane/authserver",
        "org.opencontainers.image.licenses": "Apache-2.0",
    }
    config = {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": f"{USER}:{USER}",
            "Entrypoint": [f"/usr/local/bin/{a.name}"],
            "Env": ["PATH=/usr/local/bin", f"SSL_CERT_FILE=/{CA_BUNDLE.lstrip('/')}"],
            "WorkingDir": "/",
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": "scripts/oci-image.py (no shell, no package manager)"}],
    }
    config_digest, config_data = blob(json.dumps(config, sort_keys=True, separators=(",", ":")).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": len(config_data)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": len(layer_data)}],
        "annotations": labels,
    }
    manifest_digest, manifest_data = blob(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": len(manifest_data),
            "platform": {"architecture": "amd64", "os": "linux"},
            # containerd (`ctr images import`) and skopeo read the name from these.
            "annotations": {"org.opencontainers.image.ref.name": a.ref, "io.containerd.image.name": a.ref},
        }],
    }

    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = a.out + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(path, data):
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            tar.addfile(info, io.BytesIO(data))
        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("index.json", json.dumps(index, sort_keys=True, separators=(",", ":")).encode())
        for digest, data in sorted([(layer_digest, layer_data), (config_digest, config_data), (manifest_digest, manifest_data)]):
            add("blobs/sha256/" + digest.split(":", 1)[1], data)
    os.replace(tmp, a.out)
    print(f"{a.out}: {a.ref} manifest {manifest_digest} layer {len(layer_data) / 1e6:.1f} MB compressed, {len(raw) / 1e6:.1f} MB unpacked")


if __name__ == "__main__":
    main()
