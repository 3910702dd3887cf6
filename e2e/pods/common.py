"""Small HTTP helpers for e2e/pods-test.sh's Python parts (standard library only)."""
import base64
import json
import urllib.error
import urllib.parse
import urllib.request


def request(method, url, body=None, headers=None, timeout=5):
    """(status, headers, body bytes); HTTP errors are answers, not exceptions."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def client_credentials(token_url, client_id, secret, resource, scope="tools/read", timeout=5):
    basic = base64.b64encode(f"{urllib.parse.quote(client_id, safe='')}:{urllib.parse.quote(secret, safe='')}".encode()).decode()
    body = urllib.parse.urlencode({"grant_type": "client_credentials", "resource": resource, "scope": scope}).encode()
    return request("POST", token_url, body, {"authorization": f"Basic {basic}",
                                             "content-type": "application/x-www-form-urlencoded"}, timeout)


def kid(token):
    head = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"]


def mcp_initialize(mcp_url, token, timeout=5):
    """Status of an MCP initialize with the token: the SDK's verification."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "pods-test", "version": "1"}}}).encode()
    s, _, _ = request("POST", mcp_url, body, {"authorization": f"Bearer {token}", "content-type": "application/json",
                                              "accept": "application/json, text/event-stream"}, timeout)
    return s
