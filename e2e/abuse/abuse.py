#!/usr/bin/env python3
"""The black-box probe of issue 11, repeated as checks with bounded load.

Run by e2e/abuse/run.sh against a running authserver (E2E_* variables from
e2e/oauth/lib/authserver.sh). Standard library only: raw sockets for the slow
bodies, http.client for the rest, /proc for the server's memory.

    python3 abuse.py memory        # 200 concurrent sign-ins: RSS stays bounded
    python3 abuse.py slow-body     # bodies that never finish are cut, connections bounded
    python3 abuse.py brute-force   # wrong passwords and client secrets are throttled
    python3 abuse.py registration  # registration is rate-limited and its input bounded
    python3 abuse.py connections   # server.max_connections holds (MAX_CONNECTIONS)

Each check prints `ok` or `FAIL` lines; the last line is "N passed, M failed".
Every loop is bounded in count and time; every address is loopback.
"""

import http.client
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

ISSUER = os.environ["E2E_ISSUER"]
HOST = urllib.parse.urlsplit(ISSUER).hostname
PORT = urllib.parse.urlsplit(ISSUER).port
PID = int(os.environ["E2E_SERVER_PID"])
RESOURCE = os.environ["E2E_RESOURCE"]
CLIENT = os.environ["E2E_PUBLIC_CLIENT"]
USER = os.environ["E2E_USER"]
PASSWORD = os.environ["E2E_PASSWORD"]

passed = 0
failed = 0


def check(cond, what, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok   {what}")
    else:
        failed += 1
        print(f"FAIL {what} {detail}")


def rss_kb(field="VmRSS"):
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def request(method, path, body=None, headers=None, timeout=30):
    c = http.client.HTTPConnection(HOST, PORT, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read().decode("utf-8", "replace")
    finally:
        c.close()


VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def login_form():
    """authorize -> the login page: (flow cookie, request id, csrf)."""
    q = urllib.parse.urlencode({
        "response_type": "code", "client_id": CLIENT, "redirect_uri": "http://127.0.0.1/callback",
        "code_challenge": CHALLENGE, "code_challenge_method": "S256", "state": "s", "resource": RESOURCE,
    })
    s, h, _ = request("GET", "/oauth/authorize?" + q)
    assert s == 303, s
    cookie = h["set-cookie"].split(";")[0]
    s, _, html = request("GET", h["location"], headers={"cookie": cookie})
    assert s == 200, s
    req = re.search(r'name="request" value="([^"]+)"', html).group(1)
    csrf = re.search(r'name="csrf" value="([^"]+)"', html).group(1)
    return cookie, req, csrf


def post_login(form, username, password, forwarded_for=None):
    cookie, req, csrf = form
    body = urllib.parse.urlencode({"request": req, "csrf": csrf, "username": username, "password": password})
    headers = {"cookie": cookie, "content-type": "application/x-www-form-urlencoded"}
    if forwarded_for:
        headers["x-forwarded-for"] = forwarded_for
    s, h, html = request("POST", "/ui/login", body=body, headers=headers, timeout=60)
    return s, h, html


def memory():
    n = 200
    forms = []
    with ThreadPoolExecutor(16) as ex:
        forms = list(ex.map(lambda _: login_form(), range(n)))
    base = rss_kb()
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kb())
            time.sleep(0.01)

    t = threading.Thread(target=sample)
    t.start()
    barrier = threading.Barrier(n)

    def one(i):
        barrier.wait(timeout=30)
        return post_login(forms[i], f"nobody{i}", "wrong-password")[0]

    started = time.time()
    with ThreadPoolExecutor(n) as ex:
        statuses = list(ex.map(one, range(n)))
    took = time.time() - started
    time.sleep(0.5)
    stop.set()
    t.join()
    after = rss_kb()
    counts = {s: statuses.count(s) for s in sorted(set(statuses))}
    print(f"     {n} concurrent wrong-password sign-ins in {took:.1f} s: statuses {counts}; "
          f"RSS before {base / 1024:.1f} MB, peak {peak[0] / 1024:.1f} MB, after {after / 1024:.1f} MB")
    check(set(statuses) <= {401, 503}, "every sign-in answered 401, or 503 when no hashing slot came free", counts)
    check(peak[0] < 100 * 1024, "peak RSS under 100 MB during 200 concurrent sign-ins", f"{peak[0] / 1024:.1f} MB")
    check(after < 100 * 1024, "RSS under 100 MB afterwards", f"{after / 1024:.1f} MB")


def slow_body(read_timeout):
    for path, ctype in [("/oauth/token", "application/x-www-form-urlencoded"),
                        ("/oauth/register", "application/json"),
                        ("/ui/login", "application/x-www-form-urlencoded"),
                        ("/oauth/introspect", "application/x-www-form-urlencoded")]:
        s = socket.create_connection((HOST, PORT), timeout=read_timeout + 10)
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nContent-Length: 1000\r\n\r\nabc".encode())
        started = time.time()
        data = b""
        try:
            # Drip a byte a second, as the probe did, until the server gives up.
            s.settimeout(1)
            while time.time() - started < read_timeout + 10:
                try:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                except socket.timeout:
                    try:
                        s.sendall(b"x")
                    except OSError:
                        break
        finally:
            s.close()
        took = time.time() - started
        check(data.startswith(b"HTTP/1.1 408") and took < read_timeout + 3,
              f"{path}: a body dripping a byte a second is cut with 408 after {took:.1f} s", data[:80])

    # Idle connections (no request at all) are answered 408 and closed too.
    socks = [socket.create_connection((HOST, PORT), timeout=read_timeout + 10) for _ in range(50)]
    started = time.time()
    closed = 0
    for s in socks:
        try:
            while time.time() - started < read_timeout + 5:
                s.settimeout(max(0.1, read_timeout + 5 - (time.time() - started)))
                if s.recv(4096) == b"":
                    closed += 1
                    break
        except (socket.timeout, OSError):
            pass
        finally:
            s.close()
    check(closed == 50, f"50 idle connections closed by the server within {read_timeout + 5} s", f"{closed} closed")
    s, _, _ = request("GET", "/health", timeout=10)
    check(s == 200, "the server answers normally afterwards", s)


def socket_fds():
    n = 0
    for fd in os.listdir(f"/proc/{PID}/fd"):
        try:
            if os.readlink(f"/proc/{PID}/fd/{fd}").startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


def connections(limit):
    """server.max_connections: the server holds at most `limit` client
    connections; the rest wait in the kernel's queue, and are served once
    idle ones are cut (request_read_timeout)."""
    base = socket_fds()
    socks = []
    try:
        for _ in range(40):
            socks.append(socket.create_connection((HOST, PORT), timeout=10))
        time.sleep(1.0)
        held = socket_fds() - base
        print(f"     40 idle connections opened; the server holds {held} (limit {limit})")
        check(held <= limit, f"at most {limit} connections held at once", held)
        # The new connection waits in the accept queue behind the idle ones,
        # which are cut `limit` at a time after the read timeout (5 s).
        bound = (40 // limit + 1) * 5 + 5
        started = time.time()
        s, _, _ = request("GET", "/health", timeout=bound + 5)
        took = time.time() - started
        check(s == 200 and took < bound, f"a new request is still served, after {took:.1f} s (bound {bound} s)", (s, took))
    finally:
        for s in socks:
            s.close()


def brute_force():
    statuses = []
    retry_after = None
    started = time.time()
    for _ in range(30):
        s, h, _ = post_login(login_form(), USER, "wrong-guess", forwarded_for="198.51.100.66")
        statuses.append(s)
        if s == 429 and retry_after is None:
            retry_after = h.get("retry-after")
    took = time.time() - started
    evaluated = statuses.count(401)
    print(f"     30 wrong passwords in {took:.1f} s from one address: {evaluated} evaluated, "
          f"{statuses.count(429)} throttled (first Retry-After {retry_after})")
    check(statuses[:5] == [401] * 5, "the first 5 failures are answered normally", statuses[:5])
    check(statuses.count(429) >= 20 and retry_after is not None, "the rest are 429 with Retry-After", statuses)
    s, _, _ = post_login(login_form(), USER, PASSWORD, forwarded_for="203.0.113.9")
    check(s == 303, "the real user signs in from another address meanwhile", s)

    # Client secrets at the token endpoint.
    cc, secret = os.environ["E2E_CC_CLIENT"], os.environ["E2E_CC_SECRET"]
    codes = []
    for _ in range(10):
        body = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": cc, "client_secret": "nope"})
        s, h, _ = request("POST", "/oauth/token", body=body,
                          headers={"content-type": "application/x-www-form-urlencoded"})
        codes.append(s)
    check(codes[:5] == [401] * 5 and 429 in codes, "wrong client secrets: 401 five times, then 429", codes)
    body = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": cc, "client_secret": secret,
                                   "resource": RESOURCE})
    deadline = time.time() + 20
    s = 0
    while time.time() < deadline:
        s, h, _ = request("POST", "/oauth/token", body=body, headers={"content-type": "application/x-www-form-urlencoded"})
        if s != 429:
            break
        time.sleep(min(5, int(h.get("retry-after", "1"))))
    check(s == 200, "the right secret works once the delay is over", s)


def registration():
    # Refused registrations count against the per-address rate too.
    big = json.dumps({"redirect_uris": ["http://127.0.0.1/cb"], "tos_uri": "https://a.example/" + "x" * 60000})
    s, _, body = request("POST", "/oauth/register", body=big, headers={"content-type": "application/json"})
    check(s == 400, "a 60 KiB registration is refused, not stored", (s, body[:100]))
    s, _, body = request("POST", "/oauth/register", body=json.dumps({"grant_types": ["client_credentials"]}),
                         headers={"content-type": "application/json"})
    check(s == 400 and "invalid_client_metadata" in body, "open registration never gives client_credentials",
          (s, body[:120]))
    codes = []
    for _ in range(15):
        s, h, _ = request("POST", "/oauth/register",
                          body=json.dumps({"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"}),
                          headers={"content-type": "application/json"})
        codes.append((s, "retry-after" in h))
    check(codes[:8] == [(201, False)] * 8 and codes[8:] == [(429, True)] * 7,
          "10 registration attempts a minute from one address, then 429 with Retry-After", codes)


def main():
    what = sys.argv[1]
    if what == "memory":
        memory()
    elif what == "slow-body":
        slow_body(int(os.environ.get("READ_TIMEOUT", "5")))
    elif what == "connections":
        connections(int(os.environ["MAX_CONNECTIONS"]))
    elif what == "brute-force":
        brute_force()
    elif what == "registration":
        registration()
    else:
        raise SystemExit(f"unknown check {what}")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
