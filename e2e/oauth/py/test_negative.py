"""A second, independent HTTP stack (requests) for the RFC 9700 rules that
matter most: PKCE downgrade, code replay, redirect-URI tampering, consent CSRF."""

import requests
import pytest
from authlib.integrations.requests_client import OAuth2Session, OAuthError
from authlib.common.security import generate_token
from urllib.parse import urlencode, urljoin

from conftest import through_forms, pkce_pair, parse_form

REDIRECT = "http://127.0.0.1:47002/callback"


def authorize_url(env, **over):
    _, challenge = pkce_pair()
    p = {"response_type": "code", "client_id": env.public_client, "redirect_uri": REDIRECT, "scope": "tools/read", "state": generate_token(16), "code_challenge": challenge, "code_challenge_method": "S256", "resource": env.resource}
    p.update(over)
    return f"{env.issuer}/oauth/authorize?" + urlencode({k: v for k, v in p.items() if v is not None})


def assert_error_page(r):
    assert 400 <= r.status_code < 500, r.status_code
    assert "location" not in r.headers
    assert r.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("over", [{"code_challenge": None, "code_challenge_method": None}, {"code_challenge_method": "plain"}, {"code_challenge_method": None}])
def test_pkce_downgrade_is_refused(env, over):
    r = requests.get(authorize_url(env, **over), allow_redirects=False, timeout=10)
    assert r.status_code == 303
    loc = r.headers["location"]
    assert loc.startswith(REDIRECT + "?")
    assert "error=invalid_request" in loc and "code=" not in loc
    assert "iss=" in loc


@pytest.mark.parametrize("uri", ["https://app.e2e.test/oauth/callback/..;/x", "https://app.e2e.test@evil.test/oauth/callback", "https://App.E2E.Test/oauth/callback", "https://app.e2e.test/oauth/callback/x", "https://app.e2e.test:444/oauth/callback", "https://evil.test/cb"])
def test_redirect_uri_tampering_gets_an_error_page(env, uri):
    assert_error_page(requests.get(authorize_url(env, redirect_uri=uri), allow_redirects=False, timeout=10))


def test_code_replay_revokes_the_first_exchange(env, metadata):
    oauth = OAuth2Session(env.conf_client, env.conf_secret, token_endpoint_auth_method="client_secret_basic", redirect_uri=REDIRECT, scope="tools/read", code_challenge_method="S256")
    verifier = generate_token(64)
    url, _ = oauth.create_authorization_url(metadata["authorization_endpoint"], code_verifier=verifier, resource=env.resource)
    flow = through_forms(env, url)
    token = oauth.fetch_token(metadata["token_endpoint"], authorization_response=flow.location, code_verifier=verifier, resource=env.resource)
    with pytest.raises(OAuthError) as e:
        oauth.fetch_token(metadata["token_endpoint"], authorization_response=flow.location, code_verifier=verifier, resource=env.resource)
    assert e.value.error == "invalid_grant"
    with pytest.raises(OAuthError) as e:
        oauth.refresh_token(metadata["token_endpoint"], refresh_token=token["refresh_token"])
    assert e.value.error == "invalid_grant"
    assert oauth.introspect_token(metadata["introspection_endpoint"], token=token["access_token"]).json()["active"] is False


def test_consent_csrf(env):
    s = requests.Session()
    r = s.get(authorize_url(env, prompt="consent"), allow_redirects=False, timeout=10)
    login_url = urljoin(env.issuer, r.headers["location"])
    f = parse_form(s.get(login_url, timeout=10).text)
    r = s.post(f"{env.issuer}/ui/login", data=dict(f.hidden, username=env.user, password=env.password), allow_redirects=False, timeout=10)
    consent_url = urljoin(env.issuer, r.headers["location"])
    f = parse_form(s.get(consent_url, timeout=10).text)
    missing = {k: v for k, v in f.hidden.items() if k != "csrf"}
    assert_error_page(s.post(f"{env.issuer}/ui/consent", data=dict(missing, decision="approve"), allow_redirects=False, timeout=10))
    assert_error_page(s.post(f"{env.issuer}/ui/consent", data=dict(f.hidden, csrf="x" * 43, decision="approve"), allow_redirects=False, timeout=10))
    ok = s.post(f"{env.issuer}/ui/consent", data=dict(f.hidden, decision="approve"), allow_redirects=False, timeout=10)
    assert ok.status_code == 303 and "code=" in ok.headers["location"]


def test_cookies_are_httponly_and_samesite(env):
    flow = through_forms(env, authorize_url(env))
    jar = {c.name: c for c in flow.session.cookies}
    for name in ("authplane_flow", "authplane_session"):
        c = jar[name]
        assert c.has_nonstandard_attr("HttpOnly"), name
        assert c.get_nonstandard_attr("SameSite") in ("Lax", "Strict"), name
    assert jar["authplane_flow"].path == "/ui"
