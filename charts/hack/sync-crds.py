#!/usr/bin/env python3
"""Keeps the chart in step with crds/yaml/ (run by `make crds`).

1. Copies crds/yaml/*.yaml into charts/authplane/crds/ byte for byte (Helm
   installs that directory before the templates).
2. Writes the three CRDs' spec schemas into values.schema.json
   (definitions.authServerSpec, protectedResourceSpec, oauthClientSpec), so
   that authServer.spec, protectedResources[].spec and oauthClients[].spec are
   checked at `helm template`/`install` with the API server's own rules,
   minus CEL, which only the API server runs. Conversion from OpenAPI v3 (the
   CRD dialect) to JSON Schema draft-07: `nullable` and `x-kubernetes-*` are
   dropped, int-or-string becomes ["integer", "string"], `format` is dropped
   (int32 and friends are not JSON Schema formats), and every object with
   `properties` gets `additionalProperties: false` (the API server would prune
   an unknown field silently; here a typo fails with its path).
   `authServerRef` is not required: the chart defaults it.

With --check, changes nothing and exits 1 (naming the files) when either is
stale. Needs python3 with PyYAML (Debian: python3-yaml).
"""
import json
import pathlib
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
SRC = ROOT / "crds" / "yaml"
CHART = ROOT / "charts" / "authplane"
DST = CHART / "crds"
SCHEMA = CHART / "values.schema.json"
DEFS = {
    "authservers.authplane.io.yaml": "authServerSpec",
    "protectedresources.authplane.io.yaml": "protectedResourceSpec",
    "oauthclients.authplane.io.yaml": "oauthClientSpec",
}


def convert(schema):
    """One OpenAPI v3 schema node to JSON Schema (see the module docstring)."""
    out = {}
    for key, value in schema.items():
        if key in ("nullable", "format", "default") or key.startswith("x-kubernetes-"):
            continue
        if key == "properties":
            out[key] = {name: convert(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = convert(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [convert(sub) for sub in value]
        elif key == "enum":
            out[key] = [v for v in value if v is not None]
        elif key in ("minimum", "maximum") and isinstance(value, float) and value.is_integer():
            out[key] = int(value)
        else:
            out[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if "properties" in out and "additionalProperties" not in out and not schema.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def spec_schema(path):
    crd = yaml.safe_load(path.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    spec = convert(version["schema"]["openAPIV3Schema"]["properties"]["spec"])
    if "required" in spec:
        spec["required"] = [r for r in spec["required"] if r != "authServerRef"] or None
        if spec["required"] is None:
            del spec["required"]
    spec["description"] = (
        f"{crd['spec']['names']['kind']} spec, from the CRD {path.name} "
        f"(`kubectl explain {crd['spec']['names']['singular']}.spec`). {spec.get('description', '')}"
    ).strip()
    return spec


def main():
    check = "--check" in sys.argv[1:]
    stale = []

    sources = sorted(SRC.glob("*.yaml"))
    wanted = {p.name: p.read_bytes() for p in sources}
    for name, data in wanted.items():
        target = DST / name
        if not target.exists() or target.read_bytes() != data:
            stale.append(str(target.relative_to(ROOT)))
            if not check:
                DST.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
    for extra in sorted(DST.glob("*")):
        if extra.name not in wanted:
            stale.append(f"{extra.relative_to(ROOT)} (not in crds/yaml/)")
            if not check:
                extra.unlink()

    schema = json.loads(SCHEMA.read_text())
    defs = schema.setdefault("definitions", {})
    for file, key in DEFS.items():
        defs[key] = spec_schema(SRC / file)
    text = json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
    if SCHEMA.read_text() != text:
        stale.append(str(SCHEMA.relative_to(ROOT)))
        if not check:
            SCHEMA.write_text(text)

    if check and stale:
        print("charts/authplane is out of step with crds/yaml/ (run `make crds`): " + ", ".join(stale), file=sys.stderr)
        return 1
    for s in stale:
        print(f"wrote {s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
