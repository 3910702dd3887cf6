#!/usr/bin/env python3
"""Bounded client_credentials load for e2e/pods-test.sh step 6: WORKERS
threads, RATE requests per second in all, until STOP_FILE exists; every
request that is not a 200 with an access token is a failure, counted.

    load.py TOKEN_URL CLIENT_ID SECRET RESOURCE STOP_FILE OUT_JSON [RATE] [WORKERS]
"""
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402

token_url, client_id, secret, resource, stop_file, out = sys.argv[1:7]
rate = float(sys.argv[7]) if len(sys.argv) > 7 else 20
workers = int(sys.argv[8]) if len(sys.argv) > 8 else 4
counts = {"ok": 0, "failed": 0, "failures": []}
lock = threading.Lock()


def loop():
    interval = workers / rate
    while not os.path.exists(stop_file):
        t0 = time.monotonic()
        try:
            s, _, d = common.client_credentials(token_url, client_id, secret, resource)
            good = s == 200 and "access_token" in json.loads(d)
            why = f"HTTP {s}: {d[:120]!r}"
        except Exception as e:  # a refused or reset connection is a failed request
            good, why = False, f"{type(e).__name__}: {e}"[:160]
        with lock:
            if good:
                counts["ok"] += 1
            else:
                counts["failed"] += 1
                counts["failures"].append(f"{time.strftime('%H:%M:%S')} {why}")
        time.sleep(max(0.0, interval - (time.monotonic() - t0)))


threads = [threading.Thread(target=loop) for _ in range(workers)]
for t in threads:
    t.start()
for t in threads:
    t.join()
counts["failures"] = counts["failures"][:10]
with open(out, "w") as f:
    json.dump(counts, f)
