// The happy paths, driven by clients nobody here wrote: openid-client and
// oauth4webapi (panva) for the protocol, jose for the access tokens.
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import * as client from 'openid-client';
import * as oauth from 'oauth4webapi';
import * as jose from 'jose';
import { env, CookieJar, send, authorizeThroughForms, postForm, metric, codeFlowTokens } from './lib/harness.mjs';

const issuer = new URL(env.issuer);
const insecure = { [oauth.allowInsecureRequests]: true };
let as; // oauth4webapi's view of the metadata
let jwks;

/** jose, independently: ES256, typ at+jwt, iss, aud, and the claim set of RFC 9068 + ours. */
async function verifyAccessToken(token, { aud = env.resource, clientId, sub, scope }) {
  const header = jose.decodeProtectedHeader(token);
  assert.equal(header.alg, 'ES256');
  assert.equal(header.typ, 'at+jwt');
  assert.ok(header.kid, 'kid in the header');
  const { payload } = await jose.jwtVerify(token, jwks, { issuer: env.issuer, audience: aud, typ: 'at+jwt', algorithms: ['ES256'] });
  assert.ok(Array.isArray(payload.aud), 'aud is an array');
  assert.ok(payload.aud.includes(aud));
  for (const c of ['iss', 'sub', 'aud', 'client_id', 'scope', 'iat', 'exp', 'jti']) assert.ok(payload[c] !== undefined, `claim ${c}`);
  assert.equal(payload.client_id, clientId);
  if (sub) assert.equal(payload.sub, sub);
  if (scope) assert.deepEqual(payload.scope.split(' ').sort(), scope.split(' ').sort());
  assert.ok(payload.exp > payload.iat);
  // A second, independent RFC 9068 validator: oauth4webapi as a resource server would use it.
  const req = new Request('https://rs.e2e.test/mcp', { headers: { authorization: `Bearer ${token}` } });
  const claims = await oauth.validateJwtAccessToken(as, req, aud, insecure);
  assert.equal(claims.jti, payload.jti);
  return payload;
}

/** Runs the code flow with openid-client through the login/consent forms. */
async function openidCodeFlow(config, { redirectUri, resource = env.resource, scope = 'tools/read tools/write' }) {
  const verifier = client.randomPKCECodeVerifier();
  const challenge = await client.calculatePKCECodeChallenge(verifier);
  const state = client.randomState();
  const url = client.buildAuthorizationUrl(config, { redirect_uri: redirectUri, scope, state, code_challenge: challenge, code_challenge_method: 'S256', resource });
  const { location } = await authorizeThroughForms(url);
  assert.equal(location.origin + location.pathname, redirectUri, `redirected to the client: ${location}`);
  assert.equal(location.searchParams.get('iss'), env.issuer, 'RFC 9207 iss');
  const tokens = await client.authorizationCodeGrant(config, location, { pkceCodeVerifier: verifier, expectedState: state }, { resource });
  return tokens;
}

before(async () => {
  const res = await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure });
  as = await oauth.processDiscoveryResponse(issuer, res);
  jwks = jose.createRemoteJWKSet(new URL(as.jwks_uri));
});

describe('discovery', () => {
  it('RFC 8414 metadata (oauth4webapi, oauth-authorization-server) has what MCP clients need', () => {
    assert.equal(as.issuer, env.issuer);
    for (const k of ['authorization_endpoint', 'token_endpoint', 'registration_endpoint', 'revocation_endpoint', 'introspection_endpoint', 'jwks_uri']) {
      assert.ok(as[k]?.startsWith(env.issuer + '/'), `${k} = ${as[k]}`);
    }
    assert.deepEqual(as.code_challenge_methods_supported, ['S256']);
    assert.equal(as.authorization_response_iss_parameter_supported, true);
    assert.equal(as.client_id_metadata_document_supported, true);
    assert.ok(as.response_types_supported.includes('code'));
    for (const s of ['tools/read', 'tools/write', 'files/read']) assert.ok(as.scopes_supported.includes(s), s);
    for (const g of ['authorization_code', 'refresh_token', 'client_credentials']) assert.ok(as.grant_types_supported.includes(g), g);
  });

  it('OpenID discovery (openid-client, openid-configuration) serves the same document', async () => {
    const config = await client.discovery(issuer, env.publicClient, undefined, client.None(), { execute: [client.allowInsecureRequests] });
    const m = config.serverMetadata();
    assert.equal(m.issuer, env.issuer);
    assert.equal(m.token_endpoint, as.token_endpoint);
    assert.equal(m.jwks_uri, as.jwks_uri);
  });

  it('JWKS has an ES256 P-256 key and no private parts', async () => {
    const body = await (await fetch(as.jwks_uri)).json();
    assert.ok(body.keys.length >= 1);
    for (const k of body.keys) {
      assert.equal(k.kty, 'EC');
      assert.equal(k.crv, 'P-256');
      assert.ok(k.kid);
      assert.equal(k.d, undefined, 'no private key in JWKS');
      assert.equal(await jose.calculateJwkThumbprint(k), k.kid, 'kid is the RFC 7638 thumbprint');
    }
  });
});

describe('dynamic client registration (RFC 7591)', () => {
  it('registers a public client with openid-client and runs the code flow with it', async () => {
    const redirectUri = 'http://127.0.0.1:43117/callback';
    const config = await client.dynamicClientRegistration(
      issuer,
      { redirect_uris: [redirectUri], token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'], client_name: 'openid-client public', application_type: 'native' },
      client.None(),
      { execute: [client.allowInsecureRequests] },
    );
    const meta = config.clientMetadata();
    assert.match(meta.client_id, /\S+/);
    assert.equal(meta.client_secret, undefined, 'no secret for a public client');
    assert.ok(Number.isInteger(meta.client_id_issued_at));
    const tokens = await openidCodeFlow(config, { redirectUri });
    assert.ok(tokens.refresh_token, 'public client gets a refresh token');
    assert.equal(tokens.token_type.toLowerCase(), 'bearer');
    await verifyAccessToken(tokens.access_token, { clientId: meta.client_id, sub: env.userSub, scope: 'tools/read tools/write' });
  });

  it('registers a confidential client with oauth4webapi and gets a generated secret', async () => {
    const res = await oauth.dynamicClientRegistrationRequest(as, { redirect_uris: ['http://127.0.0.1/callback'], token_endpoint_auth_method: 'client_secret_basic', grant_types: ['authorization_code', 'refresh_token'], client_name: 'oauth4webapi confidential' }, insecure);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    const reg = await oauth.processDynamicClientRegistrationResponse(res);
    assert.ok(reg.client_id);
    assert.ok(typeof reg.client_secret === 'string' && Buffer.from(reg.client_secret, 'base64url').length >= 32, 'secret of at least 256 bits');
    // It can authenticate with its secret at once (introspection needs a confidential client).
    const c = { client_id: reg.client_id, ...insecure };
    const r = await oauth.introspectionRequest(as, c, oauth.ClientSecretBasic(reg.client_secret), 'not-a-token', insecure);
    const intro = await oauth.processIntrospectionResponse(as, c, r);
    assert.equal(intro.active, false);
  });

  it('open registration never gives client_credentials (machine tokens are for admin-made clients)', async () => {
    const res = await oauth.dynamicClientRegistrationRequest(as, { token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'] }, insecure);
    await assert.rejects(oauth.processDynamicClientRegistrationResponse(res), (e) => e.error === 'invalid_client_metadata');
  });

  it('refuses a javascript: redirect URI with invalid_redirect_uri', async () => {
    const res = await oauth.dynamicClientRegistrationRequest(as, { redirect_uris: ['javascript:alert(1)'], token_endpoint_auth_method: 'none' }, insecure);
    await assert.rejects(oauth.processDynamicClientRegistrationResponse(res), (e) => e.error === 'invalid_redirect_uri');
  });
});

describe('authorization code + PKCE (openid-client through the forms)', () => {
  let config;
  before(async () => {
    config = await client.discovery(issuer, env.publicClient, undefined, client.None(), { execute: [client.allowInsecureRequests], algorithm: 'oauth2' });
  });

  it('issues an audience-bound ES256 at+jwt for the pre-registered public client (any loopback port)', async () => {
    const tokens = await openidCodeFlow(config, { redirectUri: 'http://127.0.0.1:50123/callback', scope: 'tools/read' });
    assert.equal(tokens.scope, 'tools/read');
    assert.ok(tokens.expires_in > 0);
    const claims = await verifyAccessToken(tokens.access_token, { clientId: env.publicClient, sub: env.userSub, scope: 'tools/read' });
    assert.deepEqual(claims.aud, [env.resource]);
  });

  it('two resources in one request: aud has both, a token request may narrow to one', async () => {
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const redirectUri = 'http://127.0.0.1:50124/callback';
    const url = client.buildAuthorizationUrl(config, { redirect_uri: redirectUri, scope: 'tools/read files/read', state, code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' });
    url.searchParams.append('resource', env.resource);
    url.searchParams.append('resource', env.resource2);
    const { location } = await authorizeThroughForms(url);
    const tokens = await client.authorizationCodeGrant(config, location, { pkceCodeVerifier: verifier, expectedState: state });
    const claims = await verifyAccessToken(tokens.access_token, { clientId: env.publicClient });
    assert.deepEqual([...claims.aud].sort(), [env.resource2, env.resource].sort());
    const narrowed = await client.refreshTokenGrant(config, tokens.refresh_token, { resource: env.resource2 });
    const c2 = await verifyAccessToken(narrowed.access_token, { aud: env.resource2, clientId: env.publicClient });
    assert.deepEqual(c2.aud, [env.resource2]);
  });

  it('a trailing slash or upper-case host on resource is canonicalised; aud is the registered URI', async () => {
    const odd = env.resource.replace('https://mcp.e2e.test', 'https://MCP.e2e.test:443') + '/';
    const tokens = await openidCodeFlow(config, { redirectUri: 'http://127.0.0.1:50125/callback', resource: odd });
    const claims = await verifyAccessToken(tokens.access_token, { clientId: env.publicClient });
    assert.deepEqual(claims.aud, [env.resource]);
  });

  it('remembers consent: a second authorization skips the consent page', async () => {
    const jarRun = await authorizeThroughForms(client.buildAuthorizationUrl(config, { redirect_uri: 'http://127.0.0.1:50126/callback', scope: 'tools/read', state: 's1', code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()), code_challenge_method: 'S256', resource: env.resource }));
    assert.ok(jarRun.location.searchParams.get('code'));
    const again = await authorizeThroughForms(client.buildAuthorizationUrl(config, { redirect_uri: 'http://127.0.0.1:50126/callback', scope: 'tools/read', state: 's2', code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()), code_challenge_method: 'S256', resource: env.resource }), { jar: jarRun.jar });
    assert.equal(again.seen.login, undefined, 'signed in already: no login page');
    assert.equal(again.seen.consent, undefined, 'consent remembered: no consent page');
    assert.equal(again.location.searchParams.get('state'), 's2');
    assert.ok(again.location.searchParams.get('code'));
  });
});

describe('scopes (issue 3 rule 1) and consent memory', () => {
  const raw = async (extra) => {
    const { verifier, challenge } = await (await import('./lib/harness.mjs')).pkce();
    const redirectUri = 'http://127.0.0.1:50140/callback';
    const params = { response_type: 'code', client_id: env.publicClient, redirect_uri: redirectUri, state: 'sc', code_challenge: challenge, code_challenge_method: 'S256', resource: env.resource, ...extra };
    const u = new URL('/oauth/authorize', env.issuer);
    for (const [k, v] of Object.entries(params)) if (v !== undefined) u.searchParams.set(k, v);
    return { u, verifier, redirectUri };
  };
  const exchange = async ({ location, verifier, redirectUri }) => {
    const r = await postForm('/oauth/token', { grant_type: 'authorization_code', code: location.searchParams.get('code'), redirect_uri: redirectUri, code_verifier: verifier, client_id: env.publicClient });
    assert.equal(r.status, 200, r.text);
    return r.json;
  };

  it('no scope → the resource\'s default scopes', async () => {
    const f = await raw({ scope: undefined });
    const { location } = await authorizeThroughForms(f.u);
    const t = await exchange({ location, ...f });
    assert.equal(t.scope, 'tools/read');
  });

  it('an unknown scope is dropped (oauth.unknown_scopes: drop)', async () => {
    const f = await raw({ scope: 'tools/read made-up/scope' });
    const { location } = await authorizeThroughForms(f.u);
    const t = await exchange({ location, ...f });
    assert.equal(t.scope, 'tools/read');
  });

  it('offline_access is understood and not put in the access token', async () => {
    const f = await raw({ scope: 'tools/read offline_access' });
    const { location } = await authorizeThroughForms(f.u);
    const t = await exchange({ location, ...f });
    assert.ok(t.refresh_token);
    const { payload } = await jose.jwtVerify(t.access_token, jwks, { issuer: env.issuer, audience: env.resource });
    assert.doesNotMatch(payload.scope, /offline_access/);
  });

  it('consent is asked again when the scopes grow, showing the new one', async () => {
    // A client of its own so that no earlier consent exists.
    const reg = await (await fetch(as.registration_endpoint, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ client_name: 'scope grower', redirect_uris: ['http://127.0.0.1/callback'], token_endpoint_auth_method: 'none' }) })).json();
    const url = async (scope) => {
      const f = await raw({ scope });
      f.u.searchParams.set('client_id', reg.client_id);
      return f.u;
    };
    const first = await authorizeThroughForms(await url('tools/read'));
    assert.ok(first.seen.consent, 'first time: consent page');
    const again = await authorizeThroughForms(await url('tools/read'), { jar: first.jar });
    assert.equal(again.seen.consent, undefined, 'same scopes: no consent page');
    const grown = await authorizeThroughForms(await url('tools/read tools/write'), { jar: first.jar });
    assert.ok(grown.seen.consent, 'more scopes: consent again');
    assert.match(grown.seen.consent.html, /tools\/write<\/code>\s*<span class="badge">new<\/span>/);
    assert.doesNotMatch(grown.seen.consent.html, /tools\/read<\/code>\s*<span class="badge">new/);
    assert.ok(grown.location.searchParams.get('code'));
  });

  it('POST /oauth/authorize (form body) works like GET', async () => {
    const f = await raw({ scope: 'tools/read' });
    const jar = new CookieJar();
    const res = await send(jar, new URL('/oauth/authorize', env.issuer).href, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: f.u.searchParams.toString() });
    assert.equal(res.status, 303);
    assert.match(res.headers.get('location'), /^\/ui\/login\?request=/);
  });

  it('CORS preflight on the token endpoint (browser-based clients such as the Inspector)', async () => {
    const res = await fetch(as.token_endpoint, { method: 'OPTIONS', headers: { origin: 'http://localhost:6274', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' } });
    assert.ok(res.status === 200 || res.status === 204, `${res.status}`);
    assert.ok(['*', 'http://localhost:6274'].includes(res.headers.get('access-control-allow-origin')));
    assert.match(res.headers.get('access-control-allow-methods') ?? '', /POST/);
  });
});

describe('refresh tokens rotate (openid-client)', () => {
  it('each refresh returns a new refresh token; reusing the old one fails and revokes the family', async () => {
    const config = await client.discovery(issuer, env.publicClient, undefined, client.None(), { execute: [client.allowInsecureRequests] });
    const tokens = await openidCodeFlow(config, { redirectUri: 'http://127.0.0.1:50127/callback' });
    const before = await metric('authserver_auth_denied_total', { reason: 'refresh_reuse' });
    const r1 = await client.refreshTokenGrant(config, tokens.refresh_token);
    assert.ok(r1.refresh_token && r1.refresh_token !== tokens.refresh_token, 'rotated');
    await verifyAccessToken(r1.access_token, { clientId: env.publicClient, sub: env.userSub });
    const r2 = await client.refreshTokenGrant(config, r1.refresh_token);
    assert.notEqual(r2.refresh_token, r1.refresh_token);
    // Down-scoping is allowed.
    const r3 = await client.refreshTokenGrant(config, r2.refresh_token, { scope: 'tools/read' });
    assert.equal(r3.scope, 'tools/read');
    // Reuse of a spent token: invalid_grant, and the live one dies with it.
    await assert.rejects(client.refreshTokenGrant(config, tokens.refresh_token), (e) => e.error === 'invalid_grant');
    await assert.rejects(client.refreshTokenGrant(config, r3.refresh_token), (e) => e.error === 'invalid_grant', 'the whole family is revoked');
    assert.equal(await metric('authserver_auth_denied_total', { reason: 'refresh_reuse' }), before + 1);
  });
});

describe('client credentials', () => {
  it('client_secret_basic via oauth4webapi: the token is for the client itself', async () => {
    const c = { client_id: env.confClient, ...insecure };
    const r = await oauth.clientCredentialsGrantRequest(as, c, oauth.ClientSecretBasic(env.confSecret), { resource: env.resource, scope: 'tools/write' }, insecure);
    assert.equal(r.headers.get('cache-control'), 'no-store');
    const t = await oauth.processClientCredentialsResponse(as, c, r);
    assert.equal(t.refresh_token, undefined, 'no refresh token for client_credentials');
    await verifyAccessToken(t.access_token, { clientId: env.confClient, sub: env.confClient, scope: 'tools/write' });
  });

  it('client_secret_post via openid-client', async () => {
    const config = await client.discovery(issuer, env.ccClient, env.ccSecret, client.ClientSecretPost(env.ccSecret), { execute: [client.allowInsecureRequests] });
    const t = await client.clientCredentialsGrant(config, { resource: env.resource2 });
    await verifyAccessToken(t.access_token, { aud: env.resource2, clientId: env.ccClient, scope: 'files/read' });
  });

  it('a wrong secret is invalid_client with 401 and WWW-Authenticate', async () => {
    const c = { client_id: env.confClient, ...insecure };
    const r = await oauth.clientCredentialsGrantRequest(as, c, oauth.ClientSecretBasic('not-the-secret'), { resource: env.resource }, insecure);
    assert.equal(r.status, 401);
    assert.match(r.headers.get('www-authenticate') ?? '', /^Basic/i);
    assert.equal((await r.clone().json()).error, 'invalid_client');
    await assert.rejects(oauth.processClientCredentialsResponse(as, c, r), (e) => e instanceof oauth.WWWAuthenticateChallengeError);
  });
});

describe('revocation (RFC 7009) and introspection (RFC 7662)', () => {
  const conf = { client_id: env.confClient, ...insecure };
  const auth = () => oauth.ClientSecretBasic(env.confSecret);
  const introspect = async (token) => oauth.processIntrospectionResponse(as, conf, await oauth.introspectionRequest(as, conf, auth(), token, insecure));

  it('introspection shows an active access token and refresh token, with their claims', async () => {
    const t = await codeFlowTokens({ clientId: env.confClient, basic: [env.confClient, env.confSecret] });
    const a = await introspect(t.access_token);
    assert.equal(a.active, true);
    assert.equal(a.client_id, env.confClient);
    assert.equal(a.sub, env.userSub);
    assert.equal(a.iss, env.issuer);
    assert.ok(a.exp > Date.now() / 1000);
    const r = await introspect(t.refresh_token);
    assert.equal(r.active, true);
    const junk = await introspect('not-a-token');
    assert.equal(junk.active, false);
  });

  it('revoking an access token makes introspection say inactive', async () => {
    const t = await codeFlowTokens({ clientId: env.confClient, basic: [env.confClient, env.confSecret] });
    await oauth.processRevocationResponse(await oauth.revocationRequest(as, conf, auth(), t.access_token, { additionalParameters: { token_type_hint: 'access_token' }, ...insecure }));
    assert.equal((await introspect(t.access_token)).active, false);
    // The refresh token lives on.
    assert.equal((await introspect(t.refresh_token)).active, true);
  });

  it('revoking a refresh token (openid-client) revokes the grant: refresh fails, its access token is inactive', async () => {
    const config = await client.discovery(issuer, env.confClient, env.confSecret, client.ClientSecretBasic(env.confSecret), { execute: [client.allowInsecureRequests] });
    const t = await codeFlowTokens({ clientId: env.confClient, basic: [env.confClient, env.confSecret] });
    await client.tokenRevocation(config, t.refresh_token, { token_type_hint: 'refresh_token' });
    await assert.rejects(client.refreshTokenGrant(config, t.refresh_token), (e) => e.error === 'invalid_grant');
    assert.equal((await introspect(t.refresh_token)).active, false);
    assert.equal((await introspect(t.access_token)).active, false, 'the family\'s access token is revoked too');
  });

  it('a public client may revoke its own token without a secret', async () => {
    const t = await codeFlowTokens({ clientId: env.publicClient });
    const r = await postForm('/oauth/revoke', { token: t.refresh_token, client_id: env.publicClient });
    assert.equal(r.status, 200);
    const again = await postForm('/oauth/token', { grant_type: 'refresh_token', refresh_token: t.refresh_token, client_id: env.publicClient });
    assert.equal(again.status, 400);
    assert.equal(again.json.error, 'invalid_grant');
  });

  it('an unknown token revokes with 200 (RFC 7009 §2.2)', async () => {
    const r = await postForm('/oauth/revoke', { token: 'never-issued' }, { basic: [env.confClient, env.confSecret] });
    assert.equal(r.status, 200);
  });

  it('introspection refuses a public client and an unauthenticated caller', async () => {
    const t = await codeFlowTokens({ clientId: env.publicClient });
    const pub = await postForm('/oauth/introspect', { token: t.access_token, client_id: env.publicClient });
    assert.equal(pub.status, 401);
    assert.equal(pub.json.error, 'invalid_client');
    assert.equal(pub.json.active, undefined, 'no token data leaks');
    const anon = await postForm('/oauth/introspect', { token: t.access_token });
    assert.ok(anon.status === 400 || anon.status === 401, `anonymous: ${anon.status}`);
    assert.equal(anon.json.active, undefined);
  });
});

describe('counters', () => {
  it('authserver_tokens_issued_total counts each grant type', async () => {
    for (const g of ['authorization_code', 'refresh_token', 'client_credentials']) {
      assert.ok((await metric('authserver_tokens_issued_total', { grant_type: g })) > 0, g);
    }
  });
});
