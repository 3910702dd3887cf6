"""Drives one authserver for e2e/otel/run.sh and records what check.py needs.

Run with the e2e/oauth venv (requests, pytest for its conftest) while the
server that e2e/oauth/lib/authserver.sh started is up (E2E_* variables).
Reuses e2e/oauth/py/conftest.py to walk the login and consent forms without
a browser.

    python drive.py SCENARIO OUT_JSONL SECRETS_JSON

SCENARIO:
  sampled    sample ratio 1.0: (a) client_credentials with a confidential
             client (client_secret_post), (b) an authorization_code flow
             through login and consent whose token request sends a wrong
             code_verifier (client_secret_basic; must be 400 invalid_grant),
             (c) client_credentials carrying a sampled incoming traceparent,
             (d) one carrying a not-sampled incoming traceparent.
  ratio0     sample ratio 0: two requests without a traceparent (nothing may
             be exported) and, last, one with a sampled incoming traceparent
             (parent-based: it must be exported; it also shows the export
             path works and everything before it has been flushed).

Appends one JSON object per HTTP request to OUT_JSONL (label, method, path,
status, the response's traceparent and X-Request-Id, the incoming
traceparent if any, whether its trace must be exported, and the layers and
service attributes check.py must find) and writes every secret value the
requests involved to SECRETS_JSON (the client secrets, the Authorization
header, the password, the code, both verifiers, the access token, the
session cookies).
"""

import base64
import json
import os
import secrets
import sys
from urllib.parse import urlencode, urlparse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "oauth", "py"))

import requests  # noqa: E402
from conftest import Env, pkce_pair, through_forms  # noqa: E402

REDIRECT = "http://127.0.0.1/callback"  # registered for E2E_CONF_CLIENT


def need(name):
    v = os.environ.get(name)
    if not v:
        sys.exit(f"drive.py: {name} is not set: run through e2e/otel/run.sh")
    return v


def env_from_environ():
    return Env(
        issuer=need("E2E_ISSUER"),
        admin_url=need("E2E_ADMIN_URL"),
        user=need("E2E_USER"),
        password=need("E2E_PASSWORD"),
        resource=need("E2E_RESOURCE"),
        resource2=need("E2E_RESOURCE2"),
        public_client=need("E2E_PUBLIC_CLIENT"),
        conf_client=need("E2E_CONF_CLIENT"),
        conf_secret=need("E2E_CONF_SECRET"),
        cc_client=need("E2E_CC_CLIENT"),
        cc_secret=need("E2E_CC_SECRET"),
    )


class Recorder:
    def __init__(self, out_path):
        self.out = open(out_path, "a", encoding="utf-8")
        self.secrets = {}
        self.count = 0

    def secret(self, name, value):
        if value:
            self.secrets[name] = value

    def record(self, label, r, *, exported, incoming=None, expect=None):
        req = r.request
        rec = {
            "label": label,
            "method": req.method,
            "path": urlparse(req.url).path,
            "status": r.status_code,
            "traceparent": r.headers.get("traceparent"),
            "request_id": r.headers.get("x-request-id"),
            "incoming_traceparent": incoming,
            "exported": exported,
            "expect": expect or {},
        }
        self.out.write(json.dumps(rec) + "\n")
        self.out.flush()
        self.count += 1
        for c in r.cookies:
            self.secret(f"cookie {c.name} ({label})", c.value)
        return rec


def new_traceparent(sampled):
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-{'01' if sampled else '00'}"


_metadata = {}


def metadata(env):
    if not _metadata:
        r = requests.get(f"{env.issuer}/.well-known/oauth-authorization-server", timeout=10)
        r.raise_for_status()
        _metadata.update(r.json())
    return _metadata


def token_endpoint(env):
    return metadata(env)["token_endpoint"]


def client_credentials(env, rec, label, *, exported, traceparent=None):
    headers = {"traceparent": traceparent} if traceparent else {}
    r = requests.post(
        token_endpoint(env),
        data={
            "grant_type": "client_credentials",
            "client_id": env.cc_client,
            "client_secret": env.cc_secret,
            "resource": env.resource,
        },
        headers=headers,
        timeout=10,
    )
    assert r.status_code == 200, f"{label}: client_credentials: {r.status_code} {r.text[:300]}"
    rec.secret(f"access token ({label})", r.json()["access_token"])
    rec.secret(f"access token signature ({label})", r.json()["access_token"].rsplit(".", 1)[-1])
    rec.record(
        label,
        r,
        exported=exported,
        incoming=traceparent,
        # No storage layer required: the server may answer from its client
        # cache and writes the audit row outside the request.
        expect={
            "layers": ["http", "service", "crypto"],
            "crypto_names": ["crypto.sign"],
            "service": {"grant_type": "client_credentials", "client_id": env.cc_client, "resource": env.resource},
        },
    )


def code_flow_wrong_verifier(env, rec, *, exported):
    verifier, challenge = pkce_pair()
    wrong, _ = pkce_pair()
    rec.secret("code_verifier", verifier)
    rec.secret("wrong code_verifier sent", wrong)
    s = requests.Session()
    flow_records = []

    def hook(r, *args, **kwargs):
        flow_records.append(r)

    s.hooks["response"].append(hook)
    state = secrets.token_urlsafe(16)
    auth_url = metadata(env)["authorization_endpoint"] + "?" + urlencode(
        {
            "response_type": "code",
            "client_id": env.conf_client,
            "redirect_uri": REDIRECT,
            "scope": "tools/read",
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "resource": env.resource,
        }
    )
    flow = through_forms(env, auth_url, session=s)
    params = flow.params()
    assert flow.location.startswith(REDIRECT + "?"), f"code flow ended at {flow.location}"
    assert params.get("state") == state
    code = params["code"]
    rec.secret("authorization code", code)
    for i, r in enumerate(flow_records):
        path = urlparse(r.request.url).path
        # A form post does its work in a service span that reads and writes
        # the database.
        expect = {"layers": ["http", "service", "storage"]} if r.request.method == "POST" else {}
        rec.record(f"code flow step {i + 1}: {r.request.method} {path}", r, exported=exported, expect=expect)
    basic = base64.b64encode(f"{env.conf_client}:{env.conf_secret}".encode()).decode()
    rec.secret("Authorization: Basic value", basic)
    r = s.post(
        token_endpoint(env),
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": wrong, "resource": env.resource},
        headers={"authorization": f"Basic {basic}"},
        timeout=10,
    )
    assert r.status_code == 400, f"token with a wrong verifier: {r.status_code} {r.text[:300]}"
    assert r.json().get("error") == "invalid_grant", r.text[:300]
    rec.record(
        "authorization_code token request with a wrong code_verifier",
        r,
        exported=exported,
        # The code is looked up (storage) and the verifier hashed (PKCE S256).
        expect={
            "layers": ["http", "service", "storage", "crypto"],
            "crypto_names": ["crypto.hash"],
            "service": {"grant_type": "authorization_code", "client_id": env.conf_client, "resource": env.resource},
        },
    )


def main():
    scenario, out_path, secrets_path = sys.argv[1:4]
    env = env_from_environ()
    rec = Recorder(out_path)
    rec.secret("confidential client secret", env.conf_secret)
    rec.secret("machine client secret", env.cc_secret)
    rec.secret("user password", env.password)
    if scenario == "sampled":
        client_credentials(env, rec, "(a) client_credentials", exported=True)
        code_flow_wrong_verifier(env, rec, exported=True)
        client_credentials(env, rec, "(c) client_credentials with a sampled incoming traceparent", exported=True, traceparent=new_traceparent(True))
        client_credentials(env, rec, "(d) client_credentials with a not-sampled incoming traceparent", exported=False, traceparent=new_traceparent(False))
    elif scenario == "ratio0":
        client_credentials(env, rec, "ratio 0: client_credentials", exported=False)
        r = requests.get(f"{env.issuer}/.well-known/oauth-authorization-server", timeout=10)
        assert r.status_code == 200
        rec.record("ratio 0: GET metadata", r, exported=False)
        client_credentials(env, rec, "ratio 0: client_credentials with a sampled incoming traceparent", exported=True, traceparent=new_traceparent(True))
    else:
        sys.exit(f"drive.py: unknown scenario {scenario}")
    with open(secrets_path, "w", encoding="utf-8") as f:
        json.dump(rec.secrets, f)
    print(f"drive.py: {scenario}: {rec.count} requests, {len(rec.secrets)} secret values recorded")


if __name__ == "__main__":
    main()
