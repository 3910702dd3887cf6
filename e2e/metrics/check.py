#!/usr/bin/env python3
"""/metrics of a running authserver through the Prometheus parsers.

Run by e2e/metrics/run.sh with the E2E_* variables of e2e/oauth/lib/authserver.sh
(a fresh server: no request but /health before this). It

  1. scrapes the admin listener's /metrics and parses it with the parser of
     the Content-Type the server sends (prometheus_client's OpenMetrics parser
     for application/openmetrics-text, its text-format parser for text/plain);
  2. drives traffic: a client_credentials token, a token request with a wrong
     client secret (denied: invalid_client), a GET of a page that does not
     exist (404);
  3. scrapes and parses again, and checks: metric names, types and label names
     equal docs/reference/metrics.md's table both ways; the five seed metrics
     exist under their exact names; every documented value of a one-label
     metric exists from the first scrape (and no other value); the traffic
     moved exactly the counters it should, by exactly one, and nothing else;
     the histogram's buckets are the documented ones; gauges are sane;
  4. runs `promtool check metrics` on the second exposition ($PROMTOOL).

Prints "ok"/"FAIL" per check and a closing "N passed, M failed"; exit 1 if any
check failed. The expositions are saved in $METRICS_ARTIFACTS.
"""
import math
import os
import pathlib
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

import catalog

# The names the product and its docs promised first: renaming one breaks
# dashboards and alerts, so they are pinned here, not read from the doc.
SEED = {
    "authserver_tokens_issued_total": None,
    "authserver_auth_denied_total": {"reason"},
    "authplane_dpop_proofs_validated_total": None,
    "authplane_dpop_proofs_rejected_total": {"reason"},
    "authplane_upstream_token_refresh_total": {"outcome"},
}
OPENMETRICS = "application/openmetrics-text"
TEXT = "text/plain"

env = os.environ
ISSUER = env["E2E_ISSUER"]
ADMIN = env["E2E_ADMIN_URL"]
ARTIFACTS = pathlib.Path(env.get("METRICS_ARTIFACTS", "."))

passed = 0
failed = 0


def check(ok, what, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   - {what}")
    else:
        failed += 1
        print(f"FAIL - {what}")
        for line in str(detail).splitlines()[:40]:
            print(f"    {line}")
    return ok


def http(method, url, data=None, headers=None):
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    if body is not None:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, res.headers, res.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


class Scrape:
    """One /metrics response, parsed: families by name and sample values."""

    def __init__(self, name, headers=None):
        status, hdrs, self.text = http("GET", f"{ADMIN}/metrics", headers=headers)
        self.status = status
        self.content_type = hdrs.get("Content-Type", "")
        (ARTIFACTS / f"{name}.txt").write_text(self.text)
        self.format = OPENMETRICS if self.content_type.startswith(OPENMETRICS) else (
            TEXT if self.content_type.startswith(TEXT) else None)
        self.error = None
        self.families = {}
        if self.format is None:
            self.error = f"unknown Content-Type {self.content_type!r}"
            return
        parse = parse_openmetrics if self.format == OPENMETRICS else parse_text
        try:
            for fam in parse(self.text):
                if fam.name in self.families:
                    raise ValueError(f"family {fam.name} appears twice")
                self.families[fam.name] = fam
        except Exception as e:  # the parsers raise ValueError, and worse on garbage
            self.error = f"{type(e).__name__}: {e}"

    def samples(self):
        for fam in self.families.values():
            for s in fam.samples:
                yield fam, s

    def value(self, name, **labels):
        """Sum of the samples called name whose labels include these."""
        total = None
        for _, s in self.samples():
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total = (total or 0) + s.value
        return total

    def series(self, name):
        return {frozenset(s.labels.items()): s.value for _, s in self.samples() if s.name == name}


def as_text_format(sc):
    """The parsed families in the Prometheus text format (0.0.4)."""

    class Replay:
        def collect(self):
            return iter(sc.families.values())

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Replay())
    return generate_latest(registry).decode()


def compare_with_catalog(sc, cat):
    exposed = {}  # family -> (type, label names)
    for fam in sc.families.values():
        labels = set()
        for s in fam.samples:
            labels |= set(s.labels) - {"le", "quantile"}
        exposed[fam.name] = (fam.type, labels)
    # Both parsers name a counter's family without _total.
    documented = {catalog.family_name(m): m for m in cat.values()}
    missing = sorted(documented.keys() - exposed.keys())
    extra = sorted(exposed.keys() - documented.keys())
    check(not missing, "every metric of docs/reference/metrics.md is exposed",
          "documented, not exposed: " + ", ".join(documented[f].name for f in missing))
    check(not extra, "every exposed metric is in docs/reference/metrics.md",
          "exposed, not documented (families): " + ", ".join(extra))
    bad_types, bad_labels, bad_names = [], [], []
    for fam_name, m in sorted(documented.items()):
        if fam_name not in exposed:
            continue
        typ, labels = exposed[fam_name]
        if typ != m.type:
            bad_types.append(f"{m.name}: documented {m.type}, exposed {typ}")
        if labels != set(m.labels):
            bad_labels.append(f"{m.name}: documented {sorted(m.labels)}, exposed {sorted(labels)}")
        names = {s.name for s in sc.families[fam_name].samples}
        allowed = catalog.series_names(m)
        if not names <= allowed:
            bad_names.append(f"{m.name}: samples {sorted(names - allowed)} (allowed {sorted(allowed)})")
        if m.type != "histogram" and m.name not in names:
            bad_names.append(f"{m.name}: no sample of that exact name (samples: {sorted(names)})")
    check(not bad_types, "metric types equal the catalog's", "\n".join(bad_types))
    check(not bad_labels, "label names equal the catalog's, metric by metric", "\n".join(bad_labels))
    check(not bad_names, "sample names are the catalog's names (counters with _total)", "\n".join(bad_names))


def main():
    cat = catalog.load()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    # -- 1. first scrape, before any traffic
    s1 = Scrape("metrics-1")
    check(s1.status == 200, f"GET {ADMIN}/metrics: 200", f"status {s1.status}")
    check(s1.format is not None, f"Content-Type is a Prometheus exposition format: {s1.content_type}")
    fmt_name = {OPENMETRICS: "OpenMetrics", TEXT: "Prometheus text"}.get(s1.format, "?")
    check(s1.error is None and s1.families,
          f"first scrape parses with the {fmt_name} parser ({len(s1.families)} families)", s1.error)
    if s1.format == OPENMETRICS:
        check(s1.text.endswith("# EOF\n"), "OpenMetrics exposition ends with '# EOF' and a newline")
        check("; version=1.0.0" in s1.content_type, "Content-Type names OpenMetrics version 1.0.0",
              s1.content_type)

    # -- 2. traffic
    cc = {"grant_type": "client_credentials", "client_id": env["E2E_CC_CLIENT"],
          "client_secret": env["E2E_CC_SECRET"], "resource": env["E2E_RESOURCE"]}
    st, _, body = http("POST", f"{ISSUER}/oauth/token", cc)
    check(st == 200 and '"access_token"' in body, "client_credentials token issued (200)", f"{st} {body}")
    st, _, body = http("POST", f"{ISSUER}/oauth/token", {**cc, "client_secret": "wrong-" + cc["client_secret"]})
    check(st == 401 and '"invalid_client"' in body, "token request with a wrong secret denied (401 invalid_client)",
          f"{st} {body}")
    st, _, _ = http("GET", f"{ISSUER}/no-such-page")
    check(st == 404, "GET /no-such-page: 404", st)

    # -- 3. second scrape
    s2 = Scrape("metrics-2")
    check(s2.error is None and s2.families and s2.content_type == s1.content_type,
          f"second scrape parses with the {fmt_name} parser ({len(s2.families)} families)", s2.error)
    if s1.error or s2.error:
        return finish()

    compare_with_catalog(s2, cat)

    for name, labels in SEED.items():
        fam = s2.families.get(catalog.family_name(catalog.Metric(name, "counter", {})))
        names = {s.name for s in fam.samples} if fam else set()
        have = {k for s in fam.samples for k in s.labels} if fam else set()
        check(name in names and (labels is None or have == labels),
              f"seed metric {name}{'{' + ','.join(sorted(labels)) + '}' if labels else ''} exposed under that exact name",
              f"samples {sorted(names)}, labels {sorted(have)}")

    helpless = sorted(f.name for f in s2.families.values() if not f.documentation.strip())
    check(not helpless, "every family has a HELP text", ", ".join(helpless))

    # Documented label values of one-label metrics: there from the first
    # scrape (at 0 for the seed counters), and no undocumented value ever.
    for m in cat.values():
        if len(m.labels) != 1:
            continue
        (label, values), = m.labels.items()
        if not values:
            continue
        series = m.name + "_count" if m.type == "histogram" else m.name
        for sc, when in ((s1, "first scrape"), (s2, "second scrape")):
            seen = {dict(k)[label] for k in sc.series(series)}
            check(seen == set(values), f"{m.name}: {label} values are the documented ones ({when})",
                  f"missing {sorted(set(values) - seen)}, undocumented {sorted(seen - set(values))}")
        if m.name in SEED:
            nonzero = {dict(k)[label]: v for k, v in s1.series(m.name).items() if v != 0}
            check(not nonzero, f"{m.name}: every series at 0 before any traffic", nonzero)

    # -- counters the traffic moved, by exactly what it did
    def delta(name, **labels):
        a, b = s1.value(name, **labels), s2.value(name, **labels)
        return None if b is None else b - (a or 0)

    def moved(name, want, **labels):
        d = delta(name, **labels)
        sel = ",".join(f'{k}="{v}"' for k, v in labels.items())
        check(d == want, f"{name}{{{sel}}} moved by {want}", f"moved by {d}")

    tok = "authserver_tokens_issued_total"
    moved(tok, 1, grant_type="client_credentials")
    moved(tok, 0, grant_type="authorization_code")
    moved(tok, 0, grant_type="refresh_token")
    den = "authserver_auth_denied_total"
    moved(den, 1, reason="invalid_client")
    moved(den, 1)  # over every reason: only that one
    for name in ("authplane_dpop_proofs_validated_total", "authplane_dpop_proofs_rejected_total",
                 "authplane_upstream_token_refresh_total"):
        moved(name, 0)
    req = "authplane_http_requests_total"
    moved(req, 1, listener="public", method="POST", route="/oauth/token", status="200")
    moved(req, 1, listener="public", method="POST", route="/oauth/token", status="401")
    moved(req, 1, listener="public", method="GET", route="unmatched", status="404")
    moved(req, 3, listener="public")  # and no other public request
    moved(req, 1, listener="admin")  # the first scrape
    dur = "authplane_http_request_duration_seconds"
    for status, route, method in (("200", "/oauth/token", "POST"), ("401", "/oauth/token", "POST"),
                                  ("404", "unmatched", "GET")):
        sel = dict(listener="public", method=method, route=route, status=status)
        moved(dur + "_count", 1, **sel)
        moved(dur + "_bucket", 1, le="+Inf", **sel)
        d = delta(dur + "_sum", **sel)
        check(d is not None and 0 < d < 10, f"{dur}_sum{{status=\"{status}\"}} grew by the request's time",
              f"grew by {d}")

    # -- the histogram's buckets are the documented ones
    doc_row = next(line for line in catalog.DOC.read_text().splitlines() if f"`{dur}`" in line)
    bounds = re.search(r"([\d.]+) ms … ([\d.]+) s buckets", doc_row)
    les = sorted({float(s.labels["le"]) for _, s in s2.samples() if s.name == dur + "_bucket"})
    finite = [x for x in les if not math.isinf(x)]
    if check(bounds is not None, f"{dur}: the catalog gives its bucket range ('X ms … Y s buckets')", doc_row):
        lo, hi = float(bounds.group(1)) / 1000, float(bounds.group(2))
        # The catalog rounds (4.096 s is "4 s"): within 5 %.
        check(finite and math.isclose(finite[0], lo, rel_tol=0.05) and math.isclose(finite[-1], hi, rel_tol=0.05)
              and math.isinf(les[-1]), f"{dur}: buckets from {lo} s to about {hi} s, then +Inf", les)

    # -- gauges
    now = time.time()
    check(s2.value("authplane_db_up") == 1, "authplane_db_up is 1", s2.value("authplane_db_up"))
    info = s2.series("authplane_build_info")
    check(len(info) == 1 and list(info.values()) == [1] and all(v for _, v in next(iter(info))),
          "authplane_build_info: one series, value 1, version and commit set", info)
    start = s2.value("process_start_time_seconds")
    check(start is not None and now - 600 < start <= now + 1, "process_start_time_seconds: this process, seconds",
          f"{start} (now {now})")
    age = s2.value("authplane_signing_key_age_seconds")
    check(age is not None and start is not None and 0 <= age <= now - start + 5,
          "authplane_signing_key_age_seconds: the key made at start, in seconds", f"age {age}, up {now - (start or 0)}")
    rss, vms = s2.value("process_resident_memory_bytes"), s2.value("process_virtual_memory_bytes")
    check(rss and vms and 1 << 20 < rss <= vms, "process memory: 1 MiB < resident <= virtual", f"{rss} {vms}")
    check((s2.value("process_open_fds") or 0) > 0, "process_open_fds > 0")
    cpu1, cpu2 = s1.value("process_cpu_seconds_total"), s2.value("process_cpu_seconds_total")
    check(cpu1 is not None and cpu2 is not None and 0 <= cpu1 <= cpu2, "process_cpu_seconds_total: counts up",
          f"{cpu1} -> {cpu2}")

    # -- content negotiation (a note, not a check): what a scraper that only
    # reads the text format gets, and what it makes of it.
    st, hdrs, body = http("GET", f"{ADMIN}/metrics", headers={"Accept": "text/plain; version=0.0.4"})
    got = hdrs.get("Content-Type", "")
    print(f"# note: Accept: text/plain; version=0.0.4 -> {st} {got}")
    if got.startswith(OPENMETRICS):
        try:
            fams = list(parse_text(body))
            untyped = sum(1 for f in fams if f.type == "unknown")
            stamped = sum(1 for f in fams for s in f.samples if s.timestamp is not None)
            print(f"# note: the text-format parser reads that OpenMetrics body as {len(fams)} families, "
                  f"{untyped} untyped" + (f", {stamped} sample(s) with a timestamp (exemplars misread)" if stamped else ""))
        except Exception as e:
            print(f"# note: the text-format parser rejects that OpenMetrics body: {type(e).__name__}: {e}")

    # -- 4. promtool. It lints the Prometheus text format (0.0.4) only: fed
    # OpenMetrics it takes every counter for an untyped series without HELP
    # (the HELP is on the family name, the sample ends in _total) and an
    # exemplar for a syntax error. So it lints the same families and samples
    # as prometheus_client renders them in the text format (what a client
    # library serves a scraper that asks for text/plain).
    promtool = env.get("PROMTOOL", "")
    # run.sh installs it; a run without it is a failed check, not a skipped one.
    if check(bool(promtool), "promtool is available ($PROMTOOL)", "set PROMTOOL or install Debian's prometheus"):
        text = s2.text
        if s2.format == OPENMETRICS:
            text = as_text_format(s2)
            (ARTIFACTS / "metrics-2.text-0.0.4.txt").write_text(text)
            raw = subprocess.run([promtool, "check", "metrics"], input=s2.text, capture_output=True, text=True)
            print(f"# note: promtool on the OpenMetrics bytes as they are (a text-format linter; exit {raw.returncode}): "
                  f"{len((raw.stdout + raw.stderr).strip().splitlines())} complaint(s)")
        p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        out = (p.stdout + p.stderr).strip()
        check(p.returncode == 0 and not out,
              f"promtool check metrics: no error, no lint problem ({len(s2.families)} families in the text format)",
              f"exit {p.returncode}\n{out}")
    return finish()


def finish():
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
