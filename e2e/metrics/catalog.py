"""The metrics catalog, docs/reference/metrics.md, read from its table.

Each row: | `name` | type | labels | what it counts | a rising value means |.
Label names are the backticked words of the Labels cell outside parentheses;
the backticked words inside the parentheses after a label are its documented
values ("—" = no labels). The same reading as server/tests/api/metrics.rs.

Used by e2e/metrics/check.py (the live exposition) and
e2e/helm/check-dashboard.py (the Grafana dashboard's queries). Standard
library only.
"""
import pathlib
import re
from typing import NamedTuple

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "reference" / "metrics.md"
TYPES = {"counter", "gauge", "histogram"}


class Metric(NamedTuple):
    name: str
    type: str
    # label name -> documented values, in order (empty: values not enumerated)
    labels: dict


def parse_labels(cell):
    labels = {}
    depth = 0
    current = None
    for tok in re.finditer(r"`([^`]*)`|\(|\)", cell):
        t = tok.group(0)
        if t == "(":
            depth += 1
        elif t == ")":
            depth -= 1
        elif depth == 0:
            current = tok.group(1)
            labels[current] = []
        elif current is not None:
            labels[current].append(tok.group(1))
    return labels


def load(path=DOC):
    """Metric name (as in the table, counters with _total) -> Metric."""
    out = {}
    for line in pathlib.Path(path).read_text().splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        name = cells[0].strip("`")
        typ = cells[1]
        if typ not in TYPES:
            raise ValueError(f"{path}: {name}: unknown type {typ!r}")
        if name in out:
            raise ValueError(f"{path}: {name} listed twice")
        if typ == "counter" and not name.endswith("_total"):
            raise ValueError(f"{path}: counter {name} does not end in _total")
        out[name] = Metric(name, typ, parse_labels(cells[2]))
    if not out:
        raise ValueError(f"{path}: no metric rows found")
    return out


def series_names(m):
    """Sample names a metric may expose (OpenMetrics)."""
    if m.type == "counter":
        return {m.name, m.name[: -len("_total")] + "_created"}
    if m.type == "histogram":
        return {m.name + s for s in ("_bucket", "_sum", "_count", "_created")}
    return {m.name}


def family_name(m):
    """The OpenMetrics family (a counter's name without _total)."""
    return m.name[: -len("_total")] if m.type == "counter" else m.name
