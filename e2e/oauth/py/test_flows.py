"""The flows with authlib (client side) and joserfc (token verification),
over requests."""

import time

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.common.security import generate_token
from joserfc import jwt
from joserfc.jwk import KeySet
from joserfc.errors import JoseError

from conftest import through_forms, metric

REDIRECT = "http://127.0.0.1:47001/callback"


def verify_access_token(env, jwks, token, *, aud=None, client_id=None, sub=None, scope=None):
    """joserfc, independently: ES256, typ at+jwt, iss, aud, exp, and RFC 9068's claim set."""
    aud = aud or env.resource
    keys = KeySet.import_key_set(jwks)
    tok = jwt.decode(token, keys, algorithms=["ES256"])
    assert tok.header["alg"] == "ES256"
    assert tok.header["typ"] == "at+jwt"
    assert tok.header["kid"] in {k["kid"] for k in jwks["keys"]}
    registry = jwt.JWTClaimsRegistry(
        leeway=30,
        iss={"essential": True, "value": env.issuer},
        aud={"essential": True, "value": aud},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        jti={"essential": True},
        client_id={"essential": True},
        scope={"essential": True},
    )
    registry.validate(tok.claims)
    c = tok.claims
    assert isinstance(c["aud"], list) and aud in c["aud"]
    assert c["exp"] > time.time()
    if client_id:
        assert c["client_id"] == client_id
    if sub:
        assert c["sub"] == sub
    if scope:
        assert sorted(c["scope"].split()) == sorted(scope.split())
    return c


def code_flow(env, metadata, client_id, *, client_secret=None, auth_method="none", redirect_uri=REDIRECT, scope="tools/read tools/write", resource=None):
    """authlib builds the request and exchanges the code; the forms are walked with requests."""
    resource = resource or env.resource
    oauth = OAuth2Session(client_id, client_secret, token_endpoint_auth_method=auth_method, redirect_uri=redirect_uri, scope=scope, code_challenge_method="S256")
    verifier = generate_token(64)
    url, state = oauth.create_authorization_url(metadata["authorization_endpoint"], code_verifier=verifier, resource=resource)
    flow = through_forms(env, url)
    params = flow.params()
    assert flow.location.startswith(redirect_uri + "?")
    assert params["state"] == state
    assert params["iss"] == env.issuer, "RFC 9207"
    token = oauth.fetch_token(metadata["token_endpoint"], authorization_response=flow.location, code_verifier=verifier, resource=resource)
    return oauth, token, params


def test_discovery_validates_with_authlib(env, metadata):
    m = AuthorizationServerMetadata(metadata)
    m.validate()  # RFC 8414 rules, authlib's reading of them
    assert m["issuer"] == env.issuer
    assert m["code_challenge_methods_supported"] == ["S256"]
    assert m["authorization_response_iss_parameter_supported"] is True
    assert m["client_id_metadata_document_supported"] is True
    for k in ("registration_endpoint", "revocation_endpoint", "introspection_endpoint", "jwks_uri"):
        assert m[k].startswith(env.issuer + "/")
    oidc = requests.get(f"{env.issuer}/.well-known/openid-configuration", timeout=10).json()
    assert oidc == metadata, "one document at both well-known paths"


def test_dcr_public_client_then_code_flow(env, metadata, jwks):
    reg = requests.post(
        metadata["registration_endpoint"],
        json={"client_name": "authlib public", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"], "application_type": "native"},
        timeout=10,
    )
    assert reg.status_code == 201, reg.text
    body = reg.json()
    assert "client_secret" not in body
    assert body["client_id_issued_at"] <= time.time() + 5
    assert body["redirect_uris"] == [REDIRECT]
    _, token, _ = code_flow(env, metadata, body["client_id"])
    assert token["token_type"].lower() == "bearer"
    assert token["refresh_token"]
    verify_access_token(env, jwks, token["access_token"], client_id=body["client_id"], sub=env.user_sub, scope="tools/read tools/write")


def test_dcr_confidential_client_post_auth(env, metadata, jwks):
    reg = requests.post(
        metadata["registration_endpoint"],
        json={"client_name": "authlib confidential", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "client_secret_post", "grant_types": ["authorization_code", "refresh_token"]},
        timeout=10,
    ).json()
    assert reg["client_secret"]
    oauth, token, _ = code_flow(env, metadata, reg["client_id"], client_secret=reg["client_secret"], auth_method="client_secret_post", scope="tools/read")
    verify_access_token(env, jwks, token["access_token"], client_id=reg["client_id"], scope="tools/read")
    # A refresh with the wrong secret is refused.
    bad = OAuth2Session(reg["client_id"], "wrong", token_endpoint_auth_method="client_secret_post")
    with pytest.raises(OAuthError) as e:
        bad.refresh_token(metadata["token_endpoint"], refresh_token=token["refresh_token"])
    assert e.value.error == "invalid_client"


def test_code_flow_preregistered_public_client(env, metadata, jwks):
    _, token, _ = code_flow(env, metadata, env.public_client, scope="tools/read")
    claims = verify_access_token(env, jwks, token["access_token"], client_id=env.public_client, sub=env.user_sub, scope="tools/read")
    assert claims["aud"] == [env.resource]


def test_refresh_rotation_and_reuse(env, metadata, jwks):
    oauth, token, _ = code_flow(env, metadata, env.public_client)
    before = metric(env, "authserver_auth_denied_total", reason="refresh_reuse")
    first = token["refresh_token"]
    t1 = oauth.refresh_token(metadata["token_endpoint"], refresh_token=first)
    assert t1["refresh_token"] != first
    verify_access_token(env, jwks, t1["access_token"], client_id=env.public_client, sub=env.user_sub)
    t2 = oauth.refresh_token(metadata["token_endpoint"], refresh_token=t1["refresh_token"])
    assert t2["refresh_token"] not in (first, t1["refresh_token"])
    with pytest.raises(OAuthError) as e:
        oauth.refresh_token(metadata["token_endpoint"], refresh_token=first)
    assert e.value.error == "invalid_grant"
    with pytest.raises(OAuthError) as e:
        oauth.refresh_token(metadata["token_endpoint"], refresh_token=t2["refresh_token"])
    assert e.value.error == "invalid_grant", "the family is revoked"
    assert metric(env, "authserver_auth_denied_total", reason="refresh_reuse") == before + 1


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_client_credentials(env, metadata, jwks, method):
    client_id, secret = (env.conf_client, env.conf_secret) if method == "client_secret_basic" else (env.cc_client, env.cc_secret)
    oauth = OAuth2Session(client_id, secret, token_endpoint_auth_method=method, scope="tools/read")
    token = oauth.fetch_token(metadata["token_endpoint"], grant_type="client_credentials", resource=env.resource)
    assert "refresh_token" not in token
    claims = verify_access_token(env, jwks, token["access_token"], client_id=client_id, sub=client_id, scope="tools/read")
    assert claims["aud"] == [env.resource]


def test_admin_created_client_credentials(env, metadata, jwks):
    """A client made with the admin API (one-time secret) works with authlib."""
    key = __import__("os").environ["E2E_ADMIN_KEY"]
    r = requests.post(f"{env.admin_url}/admin/clients", headers={"authorization": f"Bearer {key}"}, json={"client_id": "py-admin-made", "token_endpoint_auth_method": "client_secret_basic", "grant_types": ["client_credentials"], "allowed_resources": [env.resource2]}, timeout=10)
    assert r.status_code in (200, 201), r.text
    secret = r.json()["client_secret"]
    oauth = OAuth2Session("py-admin-made", secret, token_endpoint_auth_method="client_secret_basic")
    token = oauth.fetch_token(metadata["token_endpoint"], grant_type="client_credentials", resource=env.resource2)
    verify_access_token(env, jwks, token["access_token"], aud=env.resource2, client_id="py-admin-made")


def test_introspection_and_revocation(env, metadata, jwks):
    oauth, token, _ = code_flow(env, metadata, env.conf_client, client_secret=env.conf_secret, auth_method="client_secret_basic")
    intro = oauth.introspect_token(metadata["introspection_endpoint"], token=token["access_token"]).json()
    assert intro["active"] is True
    assert intro["client_id"] == env.conf_client
    assert intro["sub"] == env.user_sub
    assert env.resource in intro["aud"]
    assert oauth.introspect_token(metadata["introspection_endpoint"], token=token["refresh_token"]).json()["active"] is True
    # RFC 7009: revoke the access token; then the refresh token (the whole grant).
    r = oauth.revoke_token(metadata["revocation_endpoint"], token=token["access_token"], token_type_hint="access_token")
    assert r.status_code == 200
    assert oauth.introspect_token(metadata["introspection_endpoint"], token=token["access_token"]).json() == {"active": False}
    r = oauth.revoke_token(metadata["revocation_endpoint"], token=token["refresh_token"], token_type_hint="refresh_token")
    assert r.status_code == 200
    assert oauth.introspect_token(metadata["introspection_endpoint"], token=token["refresh_token"]).json() == {"active": False}
    with pytest.raises(OAuthError) as e:
        oauth.refresh_token(metadata["token_endpoint"], refresh_token=token["refresh_token"])
    assert e.value.error == "invalid_grant"


def test_a_tampered_token_fails_verification(env, metadata, jwks):
    oauth = OAuth2Session(env.cc_client, env.cc_secret, token_endpoint_auth_method="client_secret_post")
    token = oauth.fetch_token(metadata["token_endpoint"], grant_type="client_credentials", resource=env.resource)["access_token"]
    h, p, s = token.split(".")
    import base64, json
    claims = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
    claims["scope"] = "tools/read tools/write admin"
    forged = ".".join([h, base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode(), s])
    with pytest.raises(JoseError):
        verify_access_token(env, jwks, forged)
    with pytest.raises(JoseError):
        verify_access_token(env, jwks, token, aud=env.resource2)  # wrong audience
    intro = requests.post(metadata["introspection_endpoint"], auth=(env.conf_client, env.conf_secret), data={"token": forged}, timeout=10).json()
    assert intro == {"active": False}
