#!/usr/bin/env python3
"""Signing-key rotation seen from outside the cluster (e2e/pods-test.sh
step 5). Mints a token before the rotation (OLD), then every half second:
reads the server's JWKS, mints a fresh token and has the SDK's example MCP
server verify it (MCP initialize: 200 = verified, 401/403 = refused), and
has it verify OLD. Stops once OLD's key has left JWKS and the MCP server
refuses OLD, or at the deadline. Prints one JSON summary.

    rotation.py TOKEN_URL JWKS_URL MCP_URL CLIENT_ID SECRET RESOURCE SECONDS
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402

token_url, jwks_url, mcp_url, client_id, secret, resource, seconds = sys.argv[1:8]
deadline = time.monotonic() + float(seconds)


def mint():
    s, _, d = common.client_credentials(token_url, client_id, secret, resource)
    if s != 200:
        raise RuntimeError(f"token endpoint answered {s}: {d[:200]!r}")
    return json.loads(d)["access_token"]


def kids():
    s, _, d = common.request("GET", jwks_url)
    return [k["kid"] for k in json.loads(d)["keys"]] if s == 200 else None


old = mint()
old_kid = common.kid(old)
r = {"old_kid": old_kid, "old_verified_before": common.mcp_initialize(mcp_url, old) == 200,
     "fresh_verified": 0, "fresh_failed": 0, "fresh_failures": [], "fresh_kids": {},
     "saw_two_keys": False, "old_verified_in_overlap": 0, "old_refused_in_overlap": 0,
     "new_key_signing_in_overlap": False, "retired_at": None, "old_refused_after_retirement": False,
     "old_verified_after_retirement": 0, "seconds": 0}
t0 = time.monotonic()
while time.monotonic() < deadline:
    ks = kids()
    tok = mint()
    k = common.kid(tok)
    s = common.mcp_initialize(mcp_url, tok)
    if s == 200:
        r["fresh_verified"] += 1
        r["fresh_kids"][k] = r["fresh_kids"].get(k, 0) + 1
    else:
        r["fresh_failed"] += 1
        r["fresh_failures"].append(f"{time.monotonic() - t0:.1f}s kid {k}: HTTP {s}")
    so = common.mcp_initialize(mcp_url, old)
    if ks and old_kid in ks and len(ks) >= 2:
        r["saw_two_keys"] = True
        if k != old_kid:
            r["new_key_signing_in_overlap"] = True
        if so == 200:
            r["old_verified_in_overlap"] += 1
        else:
            r["old_refused_in_overlap"] += 1
    elif ks is not None and old_kid not in ks:
        if r["retired_at"] is None:
            r["retired_at"] = round(time.monotonic() - t0, 1)
        if so == 200:
            r["old_verified_after_retirement"] += 1
        else:
            r["old_refused_after_retirement"] = True
            break
    time.sleep(0.5)
r["seconds"] = round(time.monotonic() - t0, 1)
r["fresh_failures"] = r["fresh_failures"][:10]
print(json.dumps(r))
