#!/usr/bin/env python3
"""Every value of charts/authplane is documented, schema-checked and tested.

For each value in values.yaml (a leaf; whole Kubernetes objects such as
`resources` count as one value): README.md has a table row for it,
values.schema.json has a property for it, and some file in e2e/helm/values/ (all-options.yaml
sets nearly all) sets it to something other than the default. Prints what is missing; exit 1
if anything is.
"""
import json
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "authplane"
# Values that are one Kubernetes object, set and documented as a whole.
OPAQUE = {"resources", "podSecurityContext", "securityContext"}


def leaves(node, prefix=""):
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in OPAQUE:
            yield from leaves(value, path + ".")
        else:
            yield path, value


def lookup(node, path):
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return KeyError
        node = node[part]
    return node


def schema_has(schema, path):
    node = schema
    for part in path.split("."):
        props = node.get("properties", {})
        if part not in props:
            return False
        node = props[part]
        if "$ref" in node:
            node = schema["definitions"][node["$ref"].split("/")[-1]]
    return True


def main():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    readme = (CHART / "README.md").read_text().split("\n## Values\n", 1)[-1]
    documented = set(re.findall(r"^\| `([^`]+)` \|", readme, re.M))
    tested = [yaml.safe_load(f.read_text()) for f in sorted((ROOT / "e2e/helm/values").glob("*.yaml"))]
    problems = []
    for path, default in leaves(values):
        if path not in documented:
            problems.append(f"{path}: no row in charts/authplane/README.md")
        if not schema_has(schema, path):
            problems.append(f"{path}: not in values.schema.json")
        if not any(lookup(t, path) not in (KeyError, default) for t in tested):
            problems.append(f"{path}: no file in e2e/helm/values/ sets it to a non-default value")
    known = {p for p, _ in leaves(values)}
    for path in sorted(documented - known):
        problems.append(f"{path}: documented in README.md but not in values.yaml")
    for p in problems:
        print(p)
    print(f"{len(known)} values; {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
