"""Shared by the Python tests: the server e2e/oauth/run.sh started (E2E_*
variables) and a browser-less walk through the login and consent forms with
requests (its cookie jar honours Path and HttpOnly like a browser's)."""

import base64
import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urljoin, urlparse, parse_qs

# authlib refuses http:// endpoints unless told; the AS runs on loopback http.
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

import pytest  # noqa: E402
import requests  # noqa: E402


def _need(name: str) -> str:
    v = os.environ.get(name)
    if not v:
        raise RuntimeError(f"{name} is not set: run the tests through e2e/oauth/run.sh")
    return v


@dataclass(frozen=True)
class Env:
    issuer: str
    admin_url: str
    user: str
    password: str
    resource: str
    resource2: str
    public_client: str
    conf_client: str
    conf_secret: str
    cc_client: str
    cc_secret: str
    user_sub: str = "user-e2e-alice"


@pytest.fixture(scope="session")
def env() -> Env:
    return Env(
        issuer=_need("E2E_ISSUER"),
        admin_url=_need("E2E_ADMIN_URL"),
        user=_need("E2E_USER"),
        password=_need("E2E_PASSWORD"),
        resource=_need("E2E_RESOURCE"),
        resource2=_need("E2E_RESOURCE2"),
        public_client=_need("E2E_PUBLIC_CLIENT"),
        conf_client=_need("E2E_CONF_CLIENT"),
        conf_secret=_need("E2E_CONF_SECRET"),
        cc_client=_need("E2E_CC_CLIENT"),
        cc_secret=_need("E2E_CC_SECRET"),
    )


@pytest.fixture(scope="session")
def metadata(env):
    r = requests.get(f"{env.issuer}/.well-known/oauth-authorization-server", timeout=10)
    r.raise_for_status()
    return r.json()


@pytest.fixture(scope="session")
def jwks(metadata):
    r = requests.get(metadata["jwks_uri"], timeout=10)
    r.raise_for_status()
    return r.json()


def pkce_pair():
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class _FormParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.action = None
        self.method = None
        self.hidden = {}
        self.buttons = []
        self.labels = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and self.action is None:
            self.action, self.method = a.get("action"), (a.get("method") or "get").lower()
        elif tag == "input" and a.get("type") == "hidden":
            self.hidden[a.get("name")] = a.get("value", "")
        elif tag == "button":
            self.buttons.append((a.get("name"), a.get("value")))
        elif tag == "label":
            self.labels.append(a.get("for"))


def parse_form(html: str) -> _FormParser:
    p = _FormParser()
    p.feed(html)
    assert p.action, f"no form on the page:\n{html[:2000]}"
    return p


@dataclass
class FlowResult:
    location: str | None
    session: requests.Session
    pages: dict
    status: int = 303
    html: str = ""

    def params(self):
        q = parse_qs(urlparse(self.location).query)
        return {k: v[0] for k, v in q.items()}


def through_forms(env: Env, auth_url: str, *, session: requests.Session | None = None, password: str | None = None, decision: str = "approve") -> FlowResult:
    """Follows an authorization URL through login and consent, as a browser would."""
    s = session or requests.Session()
    pages = {}
    r = s.get(auth_url, allow_redirects=False, timeout=10)
    assert r.status_code == 303, f"authorize: {r.status_code} {r.text[:500]}"
    loc = urljoin(env.issuer, r.headers["location"])
    if loc.startswith(f"{env.issuer}/ui/login"):
        r = s.get(loc, allow_redirects=False, timeout=10)
        assert r.status_code == 200
        pages["login"] = r
        f = parse_form(r.text)
        assert f.method == "post"
        assert {"username", "password"} <= set(f.labels), "labelled username and password inputs"
        data = dict(f.hidden, username=env.user, password=password if password is not None else env.password)
        r = s.post(urljoin(loc, f.action), data=data, allow_redirects=False, timeout=10)
        if r.status_code != 303:
            return FlowResult(None, s, pages, r.status_code, r.text)
        loc = urljoin(env.issuer, r.headers["location"])
    if loc.startswith(f"{env.issuer}/ui/consent"):
        r = s.get(loc, allow_redirects=False, timeout=10)
        if r.status_code == 200:
            pages["consent"] = r
            f = parse_form(r.text)
            assert sorted(v for n, v in f.buttons if n == "decision") == ["approve", "deny"]
            r = s.post(urljoin(loc, f.action), data=dict(f.hidden, decision=decision), allow_redirects=False, timeout=10)
        assert r.status_code == 303, f"consent: {r.status_code} {r.text[:500]}"
        loc = urljoin(env.issuer, r.headers["location"])
    return FlowResult(loc, s, pages)


def metric(env: Env, name: str, **labels) -> float:
    text = requests.get(f"{env.admin_url}/metrics", timeout=10).text
    want = [f'{k}="{v}"' for k, v in labels.items()]
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:]+)(?:\{([^}]*)\})? (\S+)$", line)
        if m and m.group(1) == name and all(w in (m.group(2) or "").split(",") for w in want):
            return float(m.group(3))
    return 0.0
