#!/usr/bin/env python3
"""The fault suite's load and checks (driven by e2e/faults/run.sh, which makes
the faults). Uses the flows of e2e/soak/load.py against the E2E_* server.

    faults.py load SECONDS OUT [--rate R] [--tolerate 503] [--base URL,URL]
        runs the mix in the background of a fault; writes what was answered
        (tokens issued, refresh tokens held, statuses) to OUT
    faults.py verify OUT [OUT...]
        after the fault: every 200 has its audit row (by X-Request-Id) and
        every refresh token a client holds still refreshes (its family is
        intact, nothing half-rotated)
    faults.py expect OUT KEY=VALUE...
        checks counters of a load run (n_5xx=0, n_conn_errors=0, ...)
    faults.py sdk SECONDS OUT MCP_URL [--rate R]
        client_credentials tokens, each sent at once to the example MCP
        server (the SDK verifier): counts verifications that failed
    faults.py race-codes N URL1 URL2 / race-refresh N URL1 URL2
        the same code or refresh token at two servers at once: one 200 each

Every check prints `ok` or `FAIL`; the last line is "N passed, M failed".
"""

import json
import os
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "soak"))
import db  # noqa: E402
import load  # noqa: E402

passed = 0
failed = 0


def check(cond, what, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok   {what}" + (f" ({detail})" if detail else ""), flush=True)
    else:
        failed += 1
        print(f"FAIL {what} {detail}", flush=True)


def opt(args, name, default=None):
    if name in args:
        i = args.index(name)
        v = args[i + 1]
        del args[i:i + 2]
        return v
    return default


def cmd_load(args):
    rate = float(opt(args, "--rate", "120"))
    tolerate = {int(s) for s in opt(args, "--tolerate", "").split(",") if s}
    bases = [b for b in opt(args, "--base", "").split(",") if b]
    threads = int(opt(args, "--threads", "6"))
    seconds, out = float(args[0]), args[1]
    stats = load.Stats()
    groups = bases or [load.ISSUER]

    def group(i, base):
        """Workers on one server (with --base, the threads are split evenly)."""
        ws = []
        for j in range(threads // len(groups) or 1):
            w = load.Worker(stats, i * 100 + j, tolerate)
            u = urllib.parse.urlsplit(base)
            w.host, w.port = u.hostname, u.port
            ws.append(w)
        return ws

    all_workers = [w for i, b in enumerate(groups) for w in group(i, b)]
    deadline = time.monotonic() + seconds
    n = len(all_workers)

    def loop(w):
        w.one("login")
        interval = n / rate if rate > 0 else 0
        next_at = time.monotonic()
        while time.monotonic() < deadline:
            w.one(w.pick())
            next_at += interval
            lag = next_at - time.monotonic()
            if lag > 0:
                time.sleep(lag)
            elif lag < -1:
                next_at = time.monotonic()

    ts = [threading.Thread(target=loop, args=(w,)) for w in all_workers]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    d = stats.as_dict()
    d["held"] = [rt for w in all_workers for rt in w.refresh_tokens]
    d.pop("latencies")
    with open(out, "w") as f:
        json.dump(d, f)
    ok = sum(v for m in d["by_flow"].values() for s, v in m.items() if s.startswith("2") or s.startswith("3"))
    print(f"     load {seconds:.0f} s: {ok} answered as expected, {len(d['issued'])} tokens, 5xx {d['n_5xx']}, "
          f"other {d['n_unexpected']}, connection errors {d['n_conn_errors']}; by flow {json.dumps(d['by_flow'])}",
          flush=True)


def cmd_verify(args):
    runs = [json.load(open(p)) for p in args]
    issued = [i for r in runs for i in r["issued"]]
    held = [rt for r in runs for rt in r["held"]]
    audit = db.token_audit()
    missing = [rid for rid, _, _, _ in issued if rid not in audit]
    check(not missing, f"every one of {len(issued)} answered tokens has its audit row", f"{len(missing)} missing: {missing[:3]}")
    hashes = db.refresh_hashes()
    import hashlib
    lost = [rt for _, _, _, rt in issued if rt and hashlib.sha256(rt.encode()).hexdigest() not in hashes]
    check(not lost, "every refresh token answered is stored", f"{len(lost)} missing")
    # Each held token is the newest of its family the client was answered:
    # it must rotate now, and exactly once.
    w = load.Worker(load.Stats(), 9999)
    bad = []
    for rt in held:
        s, _, d, _ = w.post_form("/oauth/token", {"grant_type": "refresh_token", "refresh_token": rt, "client_id": load.PUBLIC})
        if s != 200:
            bad.append((s, d[:120]))
    check(not bad, f"every one of {len(held)} refresh tokens the clients hold still rotates (families intact)",
          f"{len(bad)} refused: {bad[:3]}")


def cmd_expect(args):
    d = json.load(open(args[0]))
    for kv in args[1:]:
        k, _, v = kv.partition("=")
        if k.startswith("min_"):
            got = len(d["issued"]) if k == "min_issued" else d[k[4:]]
            check(got >= int(v), f"{k[4:]} >= {v}", f"{got}")
        else:
            check(d[k] == int(v), f"{k} = {v}", f"{d[k]}; {d['errors'][:3]}")


def cmd_sdk(args):
    """Tokens straight from the AS to the SDK: every fresh token must verify."""
    rate = float(opt(args, "--rate", "60"))
    seconds, out, mcp = float(args[0]), args[1], args[2]
    u = urllib.parse.urlsplit(mcp)
    counts = {"verified": 0, "refused": 0, "issue_failed": 0}
    kids = {}  # kid -> tokens verified
    refusals = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def loop(i):
        w = load.Worker(load.Stats(), 5000 + i)
        m = load.Worker(load.Stats(), 6000 + i)
        m.host, m.port = u.hostname, u.port
        interval = 4 / rate
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                s, _, d, _ = w.post_form("/oauth/token", {"grant_type": "client_credentials", "scope": "tools/read",
                                                          "resource": load.RESOURCE}, load.basic(load.CONF, load.CONF_SECRET))
                if s != 200:
                    with lock:
                        counts["issue_failed"] += 1
                    continue
                tok = json.loads(d)["access_token"]
                kid = json.loads(load.base64.urlsafe_b64decode(tok.split(".")[0] + "==="))["kid"]
                body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "faults", "version": "1"}}})
                s, r, d, _ = m.request("POST", u.path, body, {
                    "authorization": f"Bearer {tok}", "content-type": "application/json",
                    "accept": "application/json, text/event-stream"})
                with lock:
                    if s == 401 or s == 403:
                        counts["refused"] += 1
                        refusals.append((s, r.getheader("www-authenticate", "")[:160]))
                    else:
                        counts["verified"] += 1
                        kids[kid] = kids.get(kid, 0) + 1
            except Exception as e:
                with lock:
                    counts["issue_failed"] += 1
                    refusals.append(("exception", str(e)[:120]))
            lag = interval - (time.monotonic() - t0)
            if lag > 0:
                time.sleep(lag)

    with ThreadPoolExecutor(4) as ex:
        list(ex.map(loop, range(4)))
    counts["refusals"] = refusals[:5]
    counts["kids"] = sorted(kids.values(), reverse=True)
    with open(out, "w") as f:
        json.dump(counts, f)
    print(f"     SDK: {counts['verified']} fresh tokens verified, {counts['refused']} refused, "
          f"{counts['issue_failed']} not issued; verified per signing key: {counts['kids']}", flush=True)


def race(kind, n, a, b):
    ua, ub = urllib.parse.urlsplit(a), urllib.parse.urlsplit(b)
    w = load.Worker(load.Stats(), 7000)
    w.host, w.port = ua.hostname, ua.port
    w.one("login")
    outcomes = []
    for i in range(n):
        if kind == "code":
            got = w.authorize("code")
            if not got:
                check(False, "an authorization code for the race")
                return
            code, verifier = got
            fields = {"grant_type": "authorization_code", "code": code, "redirect_uri": load.REDIRECT,
                      "code_verifier": verifier, "client_id": load.PUBLIC, "resource": load.RESOURCE}
        else:
            w.code()
            if not w.refresh_tokens:
                check(False, "a refresh token for the race")
                return
            fields = {"grant_type": "refresh_token", "refresh_token": w.refresh_tokens.pop(), "client_id": load.PUBLIC}
        ws = []
        for j, u in enumerate((ua, ub)):
            x = load.Worker(load.Stats(), 7100 + 2 * i + j)
            x.host, x.port = u.hostname, u.port
            ws.append(x)
        barrier = threading.Barrier(2)

        def send(x):
            barrier.wait()
            s, _, d, _ = x.post_form("/oauth/token", fields)
            return s, (json.loads(d).get("error") if s != 200 else None)

        with ThreadPoolExecutor(2) as ex:
            outcomes.append(list(ex.map(send, ws)))
    wins = [sum(1 for s, _ in o if s == 200) for o in outcomes]
    errors = sorted({e for o in outcomes for s, e in o if s != 200})
    statuses = sorted({s for o in outcomes for s, _ in o})
    check(all(x == 1 for x in wins), f"{kind}: each of {n} sent to both servers at once is honoured exactly once",
          f"wins per pair {wins}, refusals {errors}")
    check(all(s in (200, 400) for s in statuses), f"{kind}: the loser gets a 400 (invalid_grant), never a 5xx",
          f"statuses {statuses}")


def main():
    args = sys.argv[1:]
    cmd = args.pop(0)
    if cmd == "load":
        cmd_load(args)
        return 0
    if cmd == "sdk":
        cmd_sdk(args)
        return 0
    if cmd == "verify":
        cmd_verify(args)
    elif cmd == "expect":
        cmd_expect(args)
    elif cmd in ("race-codes", "race-refresh"):
        race("code" if cmd == "race-codes" else "refresh", int(args[0]), args[1], args[2])
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
