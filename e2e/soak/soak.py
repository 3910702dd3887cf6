#!/usr/bin/env python3
"""`make soak`: hours of real flows, nothing lost, nothing leaked.

Run by e2e/soak/run.sh against a running authserver (E2E_* variables from
e2e/oauth/lib/authserver.sh; SOAK_PG_URL when it runs on Postgres).

1. Measure: the mix of e2e/soak/load.py, closed loop (every worker sends its
   next flow as soon as the last one is answered) for SOAK_MEASURE_SECONDS:
   the most flows per second this machine gets through the server.
2. Soak: SOAK_LOAD_PERCENT (80) % of that rate, open loop, for SOAK_SECONDS,
   sampling the server every SOAK_SAMPLE_SECONDS: RSS, open fds, database
   connections and pool gauges, database size and row counts.
3. Assert, at the end:
   - zero 5xx, zero unexpected statuses, zero connection errors;
   - every token the driver was issued (a 200 from /oauth/token) has its audit
     row (token_issued / token_refreshed with the request's X-Request-Id) and
     its access_tokens row, and every such audit row written during the soak
     was answered to the driver, counted per grant type, and equal to
     authserver_tokens_issued_total;
   - RSS after warm-up grows by at most SOAK_RSS_BOUND_MB;
   - open fds other than database connections back to their idle level once
     the load stops, database connections within the pool's size, no pooled
     connection held (no leak), and the pool never over its maximum;
   - database bytes per retained row within SOAK_BYTES_PER_ROW (retention
     purges run hourly (and at start) and remove nothing younger than a day, so in
     a soak every row is one retention keeps: size may grow by the rows and
     no more).
Prints one JSON summary line (`SOAK {...}`) and exits 1 on any failure.
"""

import hashlib
import json
import multiprocessing
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import db  # noqa: E402
import load  # noqa: E402

PID = int(os.environ["E2E_SERVER_PID"])
ADMIN = os.environ["E2E_ADMIN_URL"]
SECONDS = int(os.environ.get("SOAK_SECONDS", "120"))
MEASURE = int(os.environ.get("SOAK_MEASURE_SECONDS", "20"))
PERCENT = float(os.environ.get("SOAK_LOAD_PERCENT", "80"))
PROCS = int(os.environ.get("SOAK_PROCESSES", "2"))
THREADS = int(os.environ.get("SOAK_THREADS", "8"))
SAMPLE = float(os.environ.get("SOAK_SAMPLE_SECONDS", "5"))
RSS_BOUND_MB = float(os.environ.get("SOAK_RSS_BOUND_MB", "16"))
BYTES_PER_ROW = float(os.environ.get("SOAK_BYTES_PER_ROW", "2048"))
FD_SLACK = int(os.environ.get("SOAK_FD_SLACK", "4"))

failures = []


def check(cond, what, detail=""):
    print(("ok   " if cond else "FAIL ") + what + (f" ({detail})" if detail else ""), flush=True)
    if not cond:
        failures.append(what)


def run_load(seconds, rate):
    """PROCS processes of THREADS workers; merged stats."""
    per = rate / PROCS if rate else 0
    args = [(THREADS, seconds, per, p * 1000) for p in range(PROCS)]
    with multiprocessing.Pool(PROCS) as pool:
        return load.merge(pool.map(load.process_main, args))


def flows(stats):
    return sum(sum(v for s, v in d.items()) for d in stats["by_flow"].values())


def sample():
    m = db.metrics(ADMIN)
    return {
        "t": time.monotonic(),
        "rss_kb": db.proc_rss_kb(PID),
        "fds": db.proc_fds(PID),
        "db_conns": db.connections() if db.PG_URL else db.proc_sqlite_fds(PID),
        "pool_in_use": int(m.get('authplane_db_pool_connections{state="in_use"}', 0)),
        "pool_idle": int(m.get('authplane_db_pool_connections{state="idle"}', 0)),
        "pool_max": int(m.get('authplane_db_pool_connections{state="max"}', 0)),
        "db_bytes": db.size_bytes(),
        "rows": sum(db.counts().values()),
    }


def main():
    idle0 = sample()
    print(f"soak: server pid {PID}, {'Postgres' if db.PG_URL else 'SQLite'}, idle: RSS {idle0['rss_kb'] / 1024:.1f} MB, "
          f"{idle0['fds']} fds, {idle0['db_conns']} db connections", flush=True)

    # 1. measure
    t0 = time.monotonic()
    m_stats = run_load(MEASURE, 0)
    took = time.monotonic() - t0
    max_rate = flows(m_stats) / took
    rate = max_rate * PERCENT / 100
    print(f"soak: measured max {max_rate:.0f} flows/s ({PROCS}x{THREADS} workers, closed loop, {took:.0f} s); "
          f"soaking at {PERCENT:.0f}% = {rate:.0f} flows/s for {SECONDS} s", flush=True)
    check(m_stats["n_5xx"] == 0 and m_stats["n_unexpected"] == 0 and m_stats["n_conn_errors"] == 0,
          "no failed request while measuring", m_stats["errors"][:3])

    before_audit = set(db.token_audit())
    before_metric = db.issued_metric(db.metrics(ADMIN))
    before_rows = db.counts()

    # 2. soak, with a sampler
    samples = []
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            try:
                samples.append(sample())
            except Exception as e:  # a sample is best effort; the checks below need enough of them
                print(f"soak: sample failed: {e}", flush=True)
            stop.wait(SAMPLE)

    th = threading.Thread(target=sampler)
    th.start()
    t0 = time.monotonic()
    stats = run_load(SECONDS, rate)
    elapsed = time.monotonic() - t0
    stop.set()
    th.join()
    time.sleep(2)  # keep-alive connections closed, the pool settles
    idle1 = sample()

    # 3. checks
    done = flows(stats)
    lat = sorted(stats["latencies"])
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else 0  # noqa: E731
    print(f"soak: {done} flows in {elapsed:.0f} s = {done / elapsed:.0f}/s; request p50 {p(0.5):.1f} ms, "
          f"p99 {p(0.99):.1f} ms; by flow {json.dumps(stats['by_flow'])}", flush=True)
    check(stats["n_5xx"] == 0, "zero 5xx", f"{stats['n_5xx']}: {stats['errors'][:3]}")
    check(stats["n_unexpected"] == 0, "zero unexpected statuses", f"{stats['n_unexpected']}: {stats['errors'][:3]}")
    check(stats["n_conn_errors"] == 0, "zero connection errors", f"{stats['n_conn_errors']}: {stats['errors'][:3]}")

    audit = {k: v for k, v in db.token_audit().items() if k not in before_audit and k.startswith("soak-")}
    issued = {rid: grant for rid, grant, _, _ in stats["issued"]}
    by_grant = {}
    for g in issued.values():
        by_grant[g] = by_grant.get(g, 0) + 1
    audit_by = {}
    for rid, ev in audit.items():
        audit_by[ev] = audit_by.get(ev, 0) + 1
    missing = [r for r in issued if r not in audit]
    extra = [r for r in audit if r not in issued]
    check(not missing, "every token issued has its audit row", f"{len(missing)} missing, e.g. {missing[:3]}")
    check(not extra, "every audit row was a token answered", f"{len(extra)} extra, e.g. {extra[:3]}")
    n_refresh = by_grant.get("refresh_token", 0)
    check(audit_by.get("token_refreshed", 0) == n_refresh
          and audit_by.get("token_issued", 0) == len(issued) - n_refresh,
          "audit rows count by count", f"driver {by_grant}, audit {audit_by}")
    after_metric = db.issued_metric(db.metrics(ADMIN))
    metric_delta = {g: after_metric[g] - before_metric[g] for g in after_metric}
    check(all(metric_delta[g] == by_grant.get(g, 0) for g in metric_delta),
          "authserver_tokens_issued_total by grant type = tokens answered", f"metric {metric_delta}, driver {by_grant}")
    # Access tokens of a grant with a refresh family are recorded (revocation
    # of the family reaches them); client_credentials tokens are recorded only
    # when revoked. Every refresh token answered is stored, hashed.
    known = db.jtis()
    lost = [j for _, g, j, _ in stats["issued"] if g != "client_credentials" and j not in known]
    check(not lost, "every access token of a refresh family has its access_tokens row", f"{len(lost)} missing")
    hashes = db.refresh_hashes()
    lost_rt = [rt for _, _, _, rt in stats["issued"] if rt and hashlib.sha256(rt.encode()).hexdigest() not in hashes]
    check(not lost_rt, "every refresh token answered has its refresh_tokens row", f"{len(lost_rt)} missing")

    warm = [s for s in samples if s["t"] - t0 >= min(60, SECONDS * 0.2)] or samples[-1:]
    rss = [s["rss_kb"] / 1024 for s in warm]
    growth = max(rss) - rss[0]
    check(growth <= RSS_BOUND_MB, f"RSS flat after warm-up (growth <= {RSS_BOUND_MB:.0f} MB)",
          f"first {rss[0]:.1f} MB, max {max(rss):.1f} MB, last {rss[-1]:.1f} MB")
    peak_fds = max(s["fds"] for s in samples) if samples else 0
    # The pool may keep idle database connections after the load (Postgres:
    # up to its size); those are counted by the DB check below. Every other
    # descriptor (client sockets, files) must be back to the idle level.
    other0, other1 = idle0["fds"] - idle0["db_conns"], idle1["fds"] - idle1["db_conns"]
    check(other1 <= other0 + FD_SLACK, "no fd leak: non-database fds after the load back to the idle level",
          f"before {idle0['fds']} ({idle0['db_conns']} database), during max {peak_fds}, "
          f"after {idle1['fds']} ({idle1['db_conns']} database)")
    pool_max = max((s["pool_max"] for s in samples), default=0)
    over = [s for s in samples if s["pool_in_use"] + s["pool_idle"] > max(pool_max, 1)]
    check(not over, "pool never over its maximum", f"max {pool_max}")
    check(idle1["pool_in_use"] == 0, "no pool connection held after the load", f"in use {idle1['pool_in_use']}")
    if db.PG_URL:
        peak_conns = max(s["db_conns"] for s in samples) if samples else 0
        check(idle1["db_conns"] <= max(pool_max, idle0["db_conns"]),
              "no DB connection leak: backends after the load within the pool size",
              f"before {idle0['db_conns']}, during max {peak_conns}, after {idle1['db_conns']}, pool max {pool_max}")
    else:
        check(idle1["db_conns"] <= max(pool_max, 1) * 3,
              "no DB connection leak: SQLite file handles within the pool size (db, -wal, -shm each)",
              f"before {idle0['db_conns']}, after {idle1['db_conns']}, pool max {pool_max}")
    after_rows = db.counts()
    added = sum(after_rows.values()) - sum(before_rows.values())
    grown = idle1["db_bytes"] - (warm[0]["db_bytes"] if warm else idle0["db_bytes"])
    rows_since_warm = idle1["rows"] - (warm[0]["rows"] if warm else idle0["rows"])
    per_row = grown / max(rows_since_warm, 1)
    check(per_row <= BYTES_PER_ROW, f"DB size grows only with retained rows (<= {BYTES_PER_ROW:.0f} bytes/row)",
          f"{grown / 1e6:+.1f} MB for {rows_since_warm} rows = {per_row:.0f} bytes/row")

    summary = {
        "db": "postgres" if db.PG_URL else "sqlite", "seconds": round(elapsed), "max_flows_per_s": round(max_rate),
        "load_flows_per_s": round(done / elapsed), "flows": done, "requests_p50_ms": round(p(0.5), 1),
        "requests_p99_ms": round(p(0.99), 1), "tokens": len(issued), "by_grant": by_grant, "audit": audit_by,
        "n_5xx": stats["n_5xx"], "rss_mb_first": round(rss[0], 1), "rss_mb_max": round(max(rss), 1),
        "rss_mb_last": round(rss[-1], 1), "fds_idle_before": idle0["fds"], "fds_max": peak_fds,
        "fds_idle_after": idle1["fds"], "db_conns_after": idle1["db_conns"], "pool_max": pool_max,
        "db_mb_before": round(idle0["db_bytes"] / 1e6, 1), "db_mb_after": round(idle1["db_bytes"] / 1e6, 1),
        "rows_added": added, "bytes_per_row": round(per_row), "by_flow": stats["by_flow"],
    }
    print("SOAK " + json.dumps(summary), flush=True)
    print(f"{'FAILED: ' + ', '.join(failures) if failures else 'soak passed'}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
