#!/usr/bin/env python3
"""Checks an OCI image archive written by scripts/oci-image.py, as a runtime
would read it: digests and sizes of every blob, the config's non-root user and
entrypoint, the layer's diff_id, no shell, the reference name, a size bound.
Extracts the root filesystem to DEST for the run checks in e2e/images-test.sh.

    check.py ARCHIVE REF DEST
"""
import gzip
import hashlib
import io
import json
import sys
import tarfile

archive, ref, dest = sys.argv[1:4]
failures = []


def check(ok, what):
    print(("ok   - " if ok else "FAIL - ") + what)
    if not ok:
        failures.append(what)


with tarfile.open(archive) as tar:
    members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
check(json.loads(members.get("oci-layout", b"{}")).get("imageLayoutVersion") == "1.0.0", "oci-layout 1.0.0")


def blob(desc):
    digest = desc["digest"]
    data = members.get("blobs/sha256/" + digest.split(":", 1)[1])
    check(data is not None and "sha256:" + hashlib.sha256(data).hexdigest() == digest and len(data) == desc["size"],
          f"blob {digest[:19]}… present, digest and size match")
    return data or b""


index = json.loads(members["index.json"])
(entry,) = index["manifests"]
check(entry["annotations"].get("org.opencontainers.image.ref.name") == ref, f"index names {ref}")
manifest = json.loads(blob(entry))
config = json.loads(blob(manifest["config"]))
cfg = config["config"]
check(cfg.get("User") == "65532:65532", f"runs as 65532:65532 (got {cfg.get('User')})")
check(len(cfg.get("Entrypoint", [])) == 1 and cfg["Entrypoint"][0].startswith("/usr/local/bin/"), "entrypoint is the binary")
check(config["os"] == "linux" and config["architecture"] == "amd64", "linux/amd64")
(layer_desc,) = manifest["layers"]
layer = blob(layer_desc)
raw = gzip.decompress(layer)
check(config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(raw).hexdigest()], "diff_id is the uncompressed layer's digest")
with tarfile.open(fileobj=io.BytesIO(raw)) as t:
    names = t.getnames()
    shells = [n for n in names if n.rsplit("/", 1)[-1] in ("sh", "bash", "dash", "busybox")]
    check(not shells, f"no shell in the image (found {shells})")
    check("etc/ssl/certs/ca-certificates.crt" in names, "CA certificates")
    check(all(m.uid == 0 or m.name == "home/nonroot" for m in t.getmembers()), "files owned by root (the user cannot rewrite them)")
    t.extractall(dest, filter="fully_trusted")
size = sum(len(d) for d in members.values())
check(size < 30e6, f"archive {size / 1e6:.1f} MB < 30 MB")
print(f"image {ref}: manifest {entry['digest']}, {size / 1e6:.1f} MB")
sys.exit(1 if failures else 0)
