#!/usr/bin/env python3
"""The chart's Grafana dashboard, as `helm template` renders it.

Reads rendered manifests on stdin (with grafanaDashboard.enabled=true) and
checks:

  - exactly one ConfigMap carries the sidecar label (LABEL=VALUE, default
    grafana_dashboard=1) and its one data key is the dashboard JSON, equal to
    charts/authplane/dashboards/authplane.json;
  - the dashboard is a Grafana dashboard: title "AuthPlane", uid, a
    schemaVersion Grafana 10/11 reads, a `datasource` variable of type
    datasource for prometheus, panels with unique ids, known types and
    non-overlapping places in the 24-column grid, and every panel and query on
    ${datasource};
  - every PromQL query names only metrics of docs/reference/metrics.md (a
    histogram through its _bucket/_sum/_count series), filters and groups only
    by their documented labels (or job/instance, which Prometheus adds), uses
    documented label values where the catalog lists them, and its legend only
    labels it groups by;
  - the panels the chart README promises are there.

Prints one line per problem and "N passed, M failed"; exit 1 on a problem.
"""
import argparse
import json
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "e2e" / "metrics"))
import catalog  # noqa: E402

DASHBOARD = ROOT / "charts" / "authplane" / "dashboards" / "authplane.json"
TARGET_LABELS = {"job", "instance"}  # added by Prometheus to every series
PANEL_TYPES = {"timeseries", "stat", "gauge", "bargauge", "table", "text", "row", "heatmap", "piechart"}
FUNCTIONS = {
    "sum", "min", "max", "avg", "count", "topk", "bottomk", "quantile", "stddev", "group",
    "rate", "irate", "increase", "delta", "idelta", "deriv", "resets", "changes",
    "histogram_quantile", "abs", "clamp_min", "clamp_max", "vector", "scalar", "time",
    "max_over_time", "min_over_time", "avg_over_time", "sum_over_time", "last_over_time",
    "label_replace", "absent", "absent_over_time", "round", "sort", "sort_desc",
}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
GROUPING = r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)"

passed = 0
failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL - {what}")
    return ok


def metric_labels(name, cat):
    """(documented metric, label names) for a series name, or (None, None)."""
    if name in cat and cat[name].type != "histogram":
        return cat[name], set(cat[name].labels)
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)] if name.endswith(suffix) else None
        if base in cat and cat[base].type == "histogram":
            extra = {"le"} if suffix == "_bucket" else set()
            return cat[base], set(cat[base].labels) | extra
    return None, None


def check_promql(where, expr, cat, legend=""):
    """Metric names, label names and values in one query."""
    used = set()
    text = expr
    allowed_group = set(TARGET_LABELS) | {"le"}
    selectors = list(re.finditer(r"([A-Za-z_:][\w:]*)?\s*\{([^}]*)\}", text))
    for sel in selectors:
        name, body = sel.group(1), sel.group(2)
        if not check(name is not None, f"{where}: selector without a metric name: {{{body}}}"):
            continue
        m, labels = metric_labels(name, cat)
        if not check(m is not None, f"{where}: {name} is not in docs/reference/metrics.md"):
            continue
        used.add(name)
        allowed_group |= labels
        for lname, op, value in re.findall(r'([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:\\.|[^"\\])*)"', body):
            check(lname in labels | TARGET_LABELS, f"{where}: {name} has no label {lname!r} in the catalog")
            documented = m.labels.get(lname) or []
            if op == "=" and documented and lname != "route":
                check(value in documented, f"{where}: {name}{{{lname}={value!r}}}: not a documented value {documented}")
    # What is left once selectors, ranges and grouping clauses are gone:
    # function names (before "("), keywords, and bare metric names.
    rest = re.sub(r"([A-Za-z_:][\w:]*)?\s*\{[^}]*\}", " SELECTOR ", text)
    rest = re.sub(r"\[[^\]]*\]", " ", rest)
    grouped = set()
    for _, names in re.findall(GROUPING, rest):
        grouped |= {n.strip() for n in names.split(",") if n.strip()}
    rest = re.sub(GROUPING, " ", rest)
    for tok in re.finditer(r"(?<![\w.$])[A-Za-z_:][\w:]*", rest):
        word = tok.group(0)
        after = rest[tok.end():].lstrip()
        if word == "SELECTOR" or word in KEYWORDS:
            continue
        if after.startswith("("):
            check(word in FUNCTIONS, f"{where}: unknown function {word}()")
            continue
        m, labels = metric_labels(word, cat)
        if check(m is not None, f"{where}: {word} is not in docs/reference/metrics.md"):
            used.add(word)
            allowed_group |= labels
    for g in grouped:
        check(g in allowed_group, f"{where}: groups by {g!r}, a label none of its metrics has")
    for lname in re.findall(r"\{\{\s*([\w]+)\s*\}\}", legend):
        check(lname in grouped, f"{where}: legend {{{{{lname}}}}} is not a label the query keeps (by ...)")
    return used


def overlaps(a, b):
    return a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]


def check_dashboard(d, cat):
    used = set()
    check(d.get("title") == "AuthPlane", f"title is {d.get('title')!r}, want 'AuthPlane'")
    check(isinstance(d.get("uid"), str) and 0 < len(d["uid"]) <= 40, "uid: 1-40 characters")
    check(isinstance(d.get("schemaVersion"), int) and 36 <= d["schemaVersion"] <= 41,
          f"schemaVersion {d.get('schemaVersion')!r}: want 36..41 (Grafana 10/11)")
    check(d.get("id") is None, "id is null (Grafana assigns it on import)")
    for key, typ in (("panels", list), ("templating", dict), ("time", dict), ("tags", list), ("annotations", dict)):
        check(isinstance(d.get(key), typ), f"{key}: want a {typ.__name__}")
    variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    ds = variables.get("datasource", {})
    check(ds.get("type") == "datasource" and ds.get("query") == "prometheus",
          "a variable 'datasource' of type datasource with query prometheus")
    want_ds = {"type": "prometheus", "uid": "${datasource}"}
    for name, v in variables.items():
        if v.get("type") != "query":
            continue
        check(v.get("datasource") == want_ds, f"variable {name}: datasource ${{datasource}}")
        q = v.get("query", {})
        q = q.get("query", "") if isinstance(q, dict) else q
        m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", q or "")
        if check(m is not None, f"variable {name}: label_values(<selector>, <label>), got {q!r}"):
            used |= check_promql(f"variable {name}", m.group(1), cat)
            check(m.group(2) in TARGET_LABELS or any(m.group(2) in catalog_labels for catalog_labels in
                  (set(x.labels) for x in cat.values())), f"variable {name}: label {m.group(2)}")
    ids = set()
    places = []
    for p in d.get("panels", []):
        where = f"panel {p.get('id')} {p.get('title')!r}"
        check(isinstance(p.get("id"), int) and p["id"] not in ids, f"{where}: unique integer id")
        ids.add(p.get("id"))
        check(p.get("type") in PANEL_TYPES, f"{where}: panel type {p.get('type')!r}")
        check(bool(p.get("title")), f"{where}: a title")
        g = p.get("gridPos", {})
        if check(all(isinstance(g.get(k), int) for k in "hwxy") and g["x"] + g["w"] <= 24 and g["w"] > 0 and g["h"] > 0,
                 f"{where}: gridPos within 24 columns: {g}"):
            for other_where, other in places:
                check(not overlaps(g, other), f"{where} overlaps {other_where}")
            places.append((where, g))
        if p.get("type") == "row":
            continue
        check(p.get("datasource") == want_ds, f"{where}: datasource {want_ds}")
        targets = p.get("targets", [])
        check(len(targets) > 0, f"{where}: at least one query")
        refs = [t.get("refId") for t in targets]
        check(len(set(refs)) == len(refs) and all(refs), f"{where}: unique refIds {refs}")
        for t in targets:
            check(t.get("datasource") == want_ds, f"{where} {t.get('refId')}: datasource {want_ds}")
            if check(bool(t.get("expr")), f"{where} {t.get('refId')}: an expr"):
                used |= check_promql(f"{where} {t.get('refId')}", t["expr"], cat, t.get("legendFormat", ""))
    exprs = " ".join(t.get("expr", "") for p in d.get("panels", []) for t in p.get("targets", []))
    promised = {
        "tokens by grant type": r"sum by \(grant_type\) \(rate\(authserver_tokens_issued_total\{",
        "denials by reason": r"sum by \(reason\) \(rate\(authserver_auth_denied_total\{",
        "token latency p50": r'histogram_quantile\(0\.5, [^"]*authplane_http_request_duration_seconds_bucket\{[^}]*route="/oauth/token"',
        "token latency p95": r'histogram_quantile\(0\.95, [^"]*authplane_http_request_duration_seconds_bucket\{[^}]*route="/oauth/token"',
        "token latency p99": r'histogram_quantile\(0\.99, [^"]*authplane_http_request_duration_seconds_bucket\{[^}]*route="/oauth/token"',
        "5xx rate": r'authplane_http_requests_total\{status=~"5\.\."',
        "database up": r"authplane_db_up\{",
        "signing key age": r"authplane_signing_key_age_seconds\{",
    }
    for what, pattern in promised.items():
        check(re.search(pattern, exprs) is not None, f"a panel for {what} (/{pattern}/)")
    return used


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--label", default="grafana_dashboard=1", help="the sidecar label, KEY=VALUE")
    ap.add_argument("--namespace", help="the namespace the ConfigMap must be in")
    ap.add_argument("--meta-label", action="append", default=[], metavar="KEY=VALUE", help="another label the ConfigMap must carry")
    ap.add_argument("--annotation", action="append", default=[], metavar="KEY=VALUE", help="an annotation the ConfigMap must carry")
    ap.add_argument("--file", action="store_true", help="check charts/authplane/dashboards/authplane.json only (no stdin)")
    args = ap.parse_args()
    cat = catalog.load()
    want = json.loads(DASHBOARD.read_text())
    if args.file:
        d = want
    else:
        key, value = args.label.split("=", 1)
        docs = [o for o in yaml.safe_load_all(sys.stdin) if o]
        cms = [o for o in docs if o.get("kind") == "ConfigMap"
               and (o["metadata"].get("labels") or {}).get(key) == value]
        if not check(len(cms) == 1, f"one ConfigMap labelled {key}={value!r}, found {len(cms)}"):
            return finish()
        cm = cms[0]
        if args.namespace:
            check(cm["metadata"].get("namespace") == args.namespace,
                  f"ConfigMap in namespace {args.namespace}, got {cm['metadata'].get('namespace')}")
        for kv in args.meta_label:
            k, v = kv.split("=", 1)
            check((cm["metadata"].get("labels") or {}).get(k) == v, f"ConfigMap label {k}={v!r}")
        for kv in args.annotation:
            k, v = kv.split("=", 1)
            check((cm["metadata"].get("annotations") or {}).get(k) == v, f"ConfigMap annotation {k}={v!r}")
        data = cm.get("data") or {}
        if not check(list(data) == ["authplane.json"], f"ConfigMap data keys {list(data)}, want ['authplane.json']"):
            return finish()
        try:
            d = json.loads(data["authplane.json"])
        except ValueError as e:
            check(False, f"the dashboard JSON does not parse: {e}")
            return finish()
        check(d == want, "the ConfigMap holds charts/authplane/dashboards/authplane.json unchanged")
    used = check_dashboard(d, cat)
    print(f"# metrics charted: {', '.join(sorted(used))}")
    return finish()


def finish():
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
