"""A load driver of real OAuth flows against a running authserver, for the
soak (e2e/soak/soak.py) and the fault suite (e2e/faults/faults.py).

Standard library only. Every request goes over loopback to the E2E_* server
of e2e/oauth/lib/authserver.sh, with its own X-Request-Id so that each
answered request can be found again in audit_events. The mix:

    client_credentials  confidential client, client_secret_basic
    code                authorization code + PKCE through /oauth/authorize
                        (the signed-in session and remembered consent), then
                        the code at the token endpoint
    login               a new browser: the login form and the consent form
    refresh             rotate a refresh token the worker holds
    introspect          a token the worker was issued (must be active)
    revoke              an access token, or a refresh token's family
    register            dynamic client registration (RFC 7591)

Every answer is classified: expected (per flow), 5xx, other unexpected
status, or a connection error. Every 200 from the token endpoint is recorded
(request id, grant type, jti, refresh token) so callers can check the
database afterwards.
"""

import base64
import hashlib
import http.client
import json
import os
import random
import re
import threading
import time
import urllib.parse

ISSUER = os.environ.get("E2E_ISSUER", "http://127.0.0.1:9000")
RESOURCE = os.environ.get("E2E_RESOURCE", "")
PUBLIC = os.environ.get("E2E_PUBLIC_CLIENT", "")
CONF = os.environ.get("E2E_CONF_CLIENT", "")
CONF_SECRET = os.environ.get("E2E_CONF_SECRET", "")
USER = os.environ.get("E2E_USER", "")
PASSWORD = os.environ.get("E2E_PASSWORD", "")
REDIRECT = "http://127.0.0.1:1/callback"
FORM = "application/x-www-form-urlencoded"

# Weights of the mix: the flows a fleet of MCP clients produces.
MIX = [
    ("client_credentials", 28),
    ("refresh", 28),
    ("introspect", 16),
    ("code", 12),
    ("revoke", 10),
    ("register", 4),
    ("login", 2),
]


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt_claims(token):
    p = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))


def basic(user, secret):
    raw = f"{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(secret, safe='')}"
    return "Basic " + base64.b64encode(raw.encode()).decode()


class Stats:
    """Counters shared by the threads of one process (and merged across processes)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_flow = {}  # flow -> {status: n}
        self.errors = []  # (flow, status or exception, body excerpt), first 50 kept
        self.n_5xx = 0
        self.n_unexpected = 0
        self.n_conn_errors = 0
        self.issued = []  # (request_id, grant_type, jti, refresh_token or "")
        self.latencies = []  # seconds, sampled

    def count(self, flow, status):
        with self.lock:
            d = self.by_flow.setdefault(flow, {})
            d[status] = d.get(status, 0) + 1

    def error(self, flow, what, body=""):
        with self.lock:
            if isinstance(what, int) and what >= 500:
                self.n_5xx += 1
            elif isinstance(what, int):
                self.n_unexpected += 1
            else:
                self.n_conn_errors += 1
            if len(self.errors) < 50:
                self.errors.append((flow, str(what), body[:200]))

    def as_dict(self):
        with self.lock:
            return {
                "by_flow": {f: {str(s): n for s, n in d.items()} for f, d in self.by_flow.items()},
                "errors": self.errors,
                "n_5xx": self.n_5xx,
                "n_unexpected": self.n_unexpected,
                "n_conn_errors": self.n_conn_errors,
                "issued": self.issued,
                "latencies": self.latencies[-20000:],
            }


def merge(dicts):
    out = {"by_flow": {}, "errors": [], "n_5xx": 0, "n_unexpected": 0, "n_conn_errors": 0, "issued": [], "latencies": []}
    for d in dicts:
        for f, m in d["by_flow"].items():
            t = out["by_flow"].setdefault(f, {})
            for s, n in m.items():
                t[s] = t.get(s, 0) + n
        out["errors"] += d["errors"]
        for k in ("n_5xx", "n_unexpected", "n_conn_errors"):
            out[k] += d[k]
        out["issued"] += d["issued"]
        out["latencies"] += d["latencies"]
    return out


class Worker:
    """One client connection: a keep-alive HTTP connection, a browser session
    (cookies) and the refresh tokens and access tokens it was issued."""

    def __init__(self, stats, wid, tolerate=None):
        u = urllib.parse.urlsplit(ISSUER)
        self.host, self.port = u.hostname, u.port
        self.stats = stats
        self.wid = wid
        self.seq = 0
        self.conn = None
        self.cookies = {}
        self.refresh_tokens = []
        self.access_tokens = []
        # Statuses a fault test accepts as clean refusals (e.g. {503}).
        self.tolerate = tolerate or set()
        self.rng = random.Random(wid)

    # --- HTTP ---------------------------------------------------------------
    def request(self, method, path, body=None, headers=None):
        self.seq += 1
        rid = f"soak-{os.getpid()}-{self.wid}-{self.seq}"
        h = {"x-request-id": rid}
        if self.cookies:
            h["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        h.update(headers or {})
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                t0 = time.monotonic()
                self.conn.request(method, path, body=body, headers=h)
                r = self.conn.getresponse()
                data = r.read()
                dt = time.monotonic() - t0
                if self.seq % 16 == 0:
                    with self.stats.lock:
                        self.stats.latencies.append(dt)
                for k, v in r.getheaders():
                    if k.lower() == "set-cookie":
                        name, _, rest = v.partition("=")
                        self.cookies[name.strip()] = rest.split(";")[0]
                if r.getheader("connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return r.status, r, data.decode("utf-8", "replace"), rid
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                # A keep-alive connection the server closed between requests:
                # retry once on a new one (a real client does the same).
                self.conn.close()
                self.conn = None
                if attempt == 1 or self.seq == 0:
                    raise e
            except Exception:
                if self.conn:
                    self.conn.close()
                self.conn = None
                raise

    def post_form(self, path, fields, auth=None):
        headers = {"content-type": FORM}
        if auth:
            headers["authorization"] = auth
        return self.request("POST", path, urllib.parse.urlencode(fields, doseq=True), headers)

    def expect(self, flow, status, data, ok):
        self.stats.count(flow, status)
        if status in ok:
            return True
        if status in self.tolerate:
            return False
        self.stats.error(flow, status, data)
        return False

    # --- flows --------------------------------------------------------------
    def record(self, rid, grant, data):
        j = json.loads(data)
        jti = jwt_claims(j["access_token"])["jti"]
        rt = j.get("refresh_token", "")
        with self.stats.lock:
            self.stats.issued.append((rid, grant, jti, rt))
        self.access_tokens.append((j["access_token"], grant == "client_credentials"))
        if len(self.access_tokens) > 16:
            self.access_tokens.pop(0)
        if rt:
            self.refresh_tokens.append(rt)
        return j

    def client_credentials(self):
        s, _, d, rid = self.post_form(
            "/oauth/token",
            {"grant_type": "client_credentials", "scope": "tools/read", "resource": RESOURCE},
            basic(CONF, CONF_SECRET),
        )
        if self.expect("client_credentials", s, d, {200}):
            self.record(rid, "client_credentials", d)

    def authorize(self, flow):
        """authorize -> (login) -> (consent) -> code; None when refused."""
        verifier = b64url(os.urandom(32))
        challenge = b64url(hashlib.sha256(verifier.encode()).digest())
        q = urllib.parse.urlencode({
            "response_type": "code", "client_id": PUBLIC, "redirect_uri": REDIRECT, "scope": "tools/read",
            "state": f"s{self.seq}", "code_challenge": challenge, "code_challenge_method": "S256",
            "resource": RESOURCE,
        })
        s, r, d, _ = self.request("GET", "/oauth/authorize?" + q)
        if not self.expect(flow, s, d, {303}):
            return None
        loc = r.getheader("location", "")
        for _ in range(3):
            if loc.startswith(REDIRECT):
                code = urllib.parse.parse_qs(urllib.parse.urlsplit(loc).query).get("code", [None])[0]
                if not code:
                    self.stats.error(flow, "redirect without code", loc)
                return code, verifier
            path = urllib.parse.urlsplit(loc).path + ("?" + urllib.parse.urlsplit(loc).query if "?" in loc else "")
            s, r, d, _ = self.request("GET", path)
            if s == 303:
                loc = r.getheader("location", "")
                continue
            if not self.expect(flow, s, d, {200}):
                return None
            fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', d))
            import html as _html
            fields = {k: _html.unescape(v) for k, v in fields.items()}
            if "/ui/login" in path:
                fields.update({"username": USER, "password": PASSWORD})
                s, r, d, _ = self.post_form("/ui/login", fields)
            else:
                fields["decision"] = "approve"
                s, r, d, _ = self.post_form("/ui/consent", fields)
            if not self.expect(flow, s, d, {303}):
                return None
            loc = r.getheader("location", "")
        self.stats.error(flow, "too many redirects", loc)
        return None

    def code(self, flow="code"):
        got = self.authorize(flow)
        if not got:
            return
        code, verifier = got
        s, _, d, rid = self.post_form("/oauth/token", {
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "code_verifier": verifier, "client_id": PUBLIC, "resource": RESOURCE,
        })
        if self.expect(flow, s, d, {200}):
            self.record(rid, "authorization_code", d)

    def login(self):
        self.cookies = {}
        self.code("login")

    def refresh(self):
        if not self.refresh_tokens:
            return self.code()
        rt = self.refresh_tokens.pop(0)
        try:
            s, _, d, rid = self.post_form("/oauth/token", {"grant_type": "refresh_token", "refresh_token": rt, "client_id": PUBLIC})
        except ConnectionRefusedError:
            # Never sent (the server is down): the client still holds it. Any
            # other failure may have reached the server, and the token is dropped.
            self.refresh_tokens.insert(0, rt)
            raise
        if self.expect("refresh", s, d, {200}):
            self.record(rid, "refresh_token", d)
        elif s in self.tolerate:
            # Refused cleanly (the database is down): the token was not spent.
            self.refresh_tokens.insert(0, rt)

    def introspect(self):
        if not self.access_tokens:
            return self.client_credentials()
        tok = self.access_tokens[-1][0]
        s, _, d, _ = self.post_form("/oauth/introspect", {"token": tok}, basic(CONF, CONF_SECRET))
        if self.expect("introspect", s, d, {200}) and not json.loads(d).get("active"):
            self.stats.error("introspect", "inactive token", d)

    def revoke(self):
        # Mostly access tokens; one time in four a refresh token (ends its family).
        if self.refresh_tokens and self.rng.random() < 0.25 and len(self.refresh_tokens) > 1:
            tok, hint = self.refresh_tokens.pop(0), "refresh_token"
            s, _, d, _ = self.post_form("/oauth/revoke", {"token": tok, "token_type_hint": hint, "client_id": PUBLIC})
        elif self.access_tokens:
            # RFC 7009 §2.1: the client the token was issued to revokes it.
            tok, confidential = self.access_tokens.pop(0)
            if confidential:
                s, _, d, _ = self.post_form("/oauth/revoke", {"token": tok}, basic(CONF, CONF_SECRET))
            else:
                s, _, d, _ = self.post_form("/oauth/revoke", {"token": tok, "client_id": PUBLIC})
        else:
            return self.client_credentials()
        self.expect("revoke", s, d, {200})

    def register(self):
        body = json.dumps({
            "client_name": f"soak {self.wid}/{self.seq}", "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"],
        })
        s, _, d, _ = self.request("POST", "/oauth/register", body, {"content-type": "application/json"})
        if s == 429 and "most dynamically registered clients" in d:
            # oauth.registration_max_clients reached: the bound holding, as it
            # should once a long soak has registered that many clients.
            self.stats.count("register_at_cap", s)
            return
        self.expect("register", s, d, {201})

    def one(self, flow):
        try:
            getattr(self, flow)()
        except Exception as e:  # connection refused, timeout, bad JSON
            self.stats.error(flow, type(e).__name__ + ": " + str(e)[:100])
            if self.conn:
                self.conn.close()
            self.conn = None

    def pick(self):
        total = sum(w for _, w in MIX)
        x = self.rng.uniform(0, total)
        for f, w in MIX:
            x -= w
            if x <= 0:
                return f
        return MIX[0][0]


def run_threads(n, seconds, rate, stats, wid_base=0, stop=None, tolerate=None, warm=True):
    """n threads for `seconds`; `rate` requests-of-the-mix per second in total
    (0 = as fast as they go). Returns the workers."""
    workers = [Worker(stats, wid_base + i, tolerate) for i in range(n)]
    stop = stop or threading.Event()
    deadline = time.monotonic() + seconds

    def loop(w):
        if warm:
            w.one("login")  # a session with remembered consent
        interval = n / rate if rate > 0 else 0
        next_at = time.monotonic()
        while not stop.is_set() and time.monotonic() < deadline:
            w.one(w.pick())
            if interval:
                next_at += interval
                lag = next_at - time.monotonic()
                if lag > 0:
                    time.sleep(lag)
                elif lag < -1:
                    next_at = time.monotonic()  # no burst to catch up more than 1 s

    threads = [threading.Thread(target=loop, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return workers


def process_main(args):
    """Entry point of one load process (multiprocessing): returns its stats."""
    n, seconds, rate, wid_base = args
    stats = Stats()
    run_threads(n, seconds, rate, stats, wid_base)
    return stats.as_dict()
