// One negative test per OAuth 2.1 / RFC 9700 rule, from the outside, over
// plain HTTP (raw requests: the client libraries refuse to send most of these).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { env, CookieJar, send, parseForm, authorizeThroughForms, authorizeUrl, postForm, pkce, randomState, metric, codeFlowTokens } from './lib/harness.mjs';

const HTTPS_REDIRECT = 'https://app.e2e.test/oauth/callback'; // registered for env.publicClient
const LOOPBACK = 'http://127.0.0.1:50200/callback'; // registered as http://127.0.0.1/callback

async function goodParams(extra = {}) {
  const { challenge } = await pkce();
  return { response_type: 'code', client_id: env.publicClient, redirect_uri: LOOPBACK, scope: 'tools/read', state: randomState(), code_challenge: challenge, code_challenge_method: 'S256', resource: env.resource, ...extra };
}

/** The AS must answer with its own error page: no redirect anywhere. */
async function assertErrorPage(res, what) {
  const body = await res.text();
  assert.ok(res.status >= 400 && res.status < 500, `${what}: expected a 4xx error page, got ${res.status} ${res.headers.get('location') ?? ''}`);
  assert.equal(res.headers.get('location'), null, `${what}: must not redirect`);
  assert.match(res.headers.get('content-type') ?? '', /text\/html/, `${what}: an HTML error page`);
  return body;
}

/** An error sent back to the (verified) redirect URI, with state and iss. */
function assertErrorRedirect(res, { redirectUri, error, state }) {
  assert.equal(res.status, 303, `expected a redirect, got ${res.status}`);
  const loc = new URL(res.headers.get('location'));
  assert.equal(loc.origin + loc.pathname, redirectUri);
  assert.equal(loc.searchParams.get('error'), error);
  assert.equal(loc.searchParams.get('code'), null);
  if (state) assert.equal(loc.searchParams.get('state'), state);
  assert.equal(loc.searchParams.get('iss'), env.issuer, 'RFC 9207 iss on error responses too');
  return loc;
}

describe('PKCE is required, S256 only (OAuth 2.1 §4.1.1, RFC 9700 §2.1.1)', () => {
  it('no code_challenge → invalid_request at the redirect URI', async () => {
    const p = await goodParams({ code_challenge: undefined, code_challenge_method: undefined });
    assertErrorRedirect(await send(null, authorizeUrl(p)), { redirectUri: 'http://127.0.0.1:50200/callback', error: 'invalid_request', state: p.state });
  });

  it('code_challenge_method=plain (downgrade) → invalid_request', async () => {
    const p = await goodParams({ code_challenge_method: 'plain', code_challenge: 'a'.repeat(43) });
    assertErrorRedirect(await send(null, authorizeUrl(p)), { redirectUri: LOOPBACK, error: 'invalid_request', state: p.state });
  });

  it('a challenge without a method (would mean plain) → invalid_request', async () => {
    const p = await goodParams({ code_challenge_method: undefined });
    assertErrorRedirect(await send(null, authorizeUrl(p)), { redirectUri: LOOPBACK, error: 'invalid_request', state: p.state });
  });

  it('token request without code_verifier, or with a wrong one → invalid_grant; the right one still works after', async () => {
    const { verifier, challenge } = await pkce();
    const state = randomState();
    const { location } = await authorizeThroughForms(authorizeUrl({ ...(await goodParams()), code_challenge: challenge, state }));
    const code = location.searchParams.get('code');
    const base = { grant_type: 'authorization_code', code, redirect_uri: LOOPBACK, client_id: env.publicClient };
    const before = await metric('authserver_auth_denied_total', { reason: 'invalid_pkce' });
    const none = await postForm('/oauth/token', base);
    assert.equal(none.status, 400);
    assert.equal(none.json.error, 'invalid_grant');
    const wrong = await postForm('/oauth/token', { ...base, code_verifier: (await pkce()).verifier });
    assert.equal(wrong.status, 400);
    assert.equal(wrong.json.error, 'invalid_grant');
    // The plain-method trick: sending the challenge itself as the verifier.
    const plain = await postForm('/oauth/token', { ...base, code_verifier: challenge });
    assert.equal(plain.json.error, 'invalid_grant');
    assert.equal(await metric('authserver_auth_denied_total', { reason: 'invalid_pkce' }), before + 3);
    const ok = await postForm('/oauth/token', { ...base, code_verifier: verifier });
    assert.equal(ok.status, 200, 'failed PKCE attempts do not burn the code for its owner');
  });
});

describe('redirect URIs match exactly (RFC 9700 §4.1.3); an unregistered one never gets a redirect', () => {
  const variants = [
    ['path traversal ..;/', 'https://app.e2e.test/oauth/callback/..;/..;/evil'],
    ['..;/ inside', 'https://app.e2e.test/oauth/..;/callback'],
    ['dot segments', 'https://app.e2e.test/oauth/callback/../../evil'],
    ['percent-encoded dots', 'https://app.e2e.test/oauth/callback/%2e%2e/evil'],
    ['userinfo @ to another host', 'https://app.e2e.test@evil.test/oauth/callback'],
    ['userinfo @ before the host', 'https://evil.test@app.e2e.test/oauth/callback'],
    ['upper-case host', 'https://APP.E2E.TEST/oauth/callback'],
    ['upper-case path', 'https://app.e2e.test/OAuth/Callback'],
    ['extra path segment', 'https://app.e2e.test/oauth/callback/extra'],
    ['trailing slash', 'https://app.e2e.test/oauth/callback/'],
    ['another port on a non-loopback host', 'https://app.e2e.test:8443/oauth/callback'],
    ['explicit default port', 'https://app.e2e.test:443/oauth/callback'],
    ['added query', 'https://app.e2e.test/oauth/callback?next=https://evil.test'],
    ['fragment', 'https://app.e2e.test/oauth/callback#x'],
    ['http downgrade', 'http://app.e2e.test/oauth/callback'],
    ['subdomain', 'https://evil.app.e2e.test/oauth/callback'],
    ['suffix host', 'https://app.e2e.test.evil.test/oauth/callback'],
    ['backslash', 'https://app.e2e.test\\@evil.test/oauth/callback'],
    ['loopback: localhost for 127.0.0.1', 'http://localhost:50200/callback'],
    ['loopback: [::1] for 127.0.0.1', 'http://[::1]:50200/callback'],
    ['loopback: other path', 'http://127.0.0.1:50200/callback/evil'],
    ['loopback: userinfo', 'http://127.0.0.1:50200@evil.test/callback'],
    ['loopback: https', 'https://127.0.0.1:50200/callback'],
    ['loopback: .. in path', 'http://127.0.0.1:50200/evil/../callback'],
  ];
  for (const [name, uri] of variants) {
    it(`${name}: ${uri}`, async () => {
      const res = await send(null, authorizeUrl(await goodParams({ redirect_uri: uri })));
      await assertErrorPage(res, uri);
    });
  }

  it('the registered URI itself, and any port on 127.0.0.1 (RFC 8252 §7.3), are accepted', async () => {
    for (const uri of [HTTPS_REDIRECT, 'http://127.0.0.1/callback', 'http://127.0.0.1:1/callback', 'http://127.0.0.1:65535/callback']) {
      const res = await send(null, authorizeUrl(await goodParams({ redirect_uri: uri })));
      assert.equal(res.status, 303, uri);
      assert.match(res.headers.get('location'), /^\/ui\/login\?request=/, uri);
    }
  });

  // RFC 6749 §5.2 names this case under invalid_grant ("does not match the
  // redirection URI used in the authorization request"); fixed in 8d00aa9.
  it('a redirect URI at the token endpoint that differs from the authorization request → invalid_grant', async () => {
    const { verifier, challenge } = await pkce();
    const { location } = await authorizeThroughForms(authorizeUrl({ ...(await goodParams()), code_challenge: challenge }));
    const r = await postForm('/oauth/token', { grant_type: 'authorization_code', code: location.searchParams.get('code'), redirect_uri: 'http://127.0.0.1:50201/callback', code_verifier: verifier, client_id: env.publicClient });
    assert.equal(r.status, 400);
    assert.equal(r.json.error, 'invalid_grant');
  });

  it('DCR refuses wildcard, fragment, data: and javascript: redirect URIs', async () => {
    for (const uri of ['https://*.e2e.test/cb', 'https://app.e2e.test/cb#frag', 'data:text/html,hi', 'javascript:alert(1)', 'http://evil.test/cb']) {
      const res = await fetch(new URL('/oauth/register', env.issuer), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ redirect_uris: [uri], token_endpoint_auth_method: 'none' }) });
      const body = await res.json();
      assert.equal(res.status, 400, `${uri}: ${JSON.stringify(body)}`);
      assert.equal(body.error, 'invalid_redirect_uri', uri);
    }
  });
});

describe('open redirects (RFC 9700 §4.11)', () => {
  it('an unknown client with an attacker redirect_uri gets an error page', async () => {
    await assertErrorPage(await send(null, authorizeUrl(await goodParams({ client_id: 'no-such-client', redirect_uri: 'https://evil.test/cb' }))), 'unknown client');
  });

  it('an invalid request with an unregistered redirect_uri is not bounced to it', async () => {
    // Everything wrong at once: the error must not travel to the unverified URI.
    const res = await send(null, authorizeUrl({ client_id: env.publicClient, redirect_uri: 'https://evil.test/cb', response_type: 'token', state: 'x' }));
    await assertErrorPage(res, 'invalid request + unregistered redirect');
  });

  it('no redirect_uri while several are registered → error page', async () => {
    await assertErrorPage(await send(null, authorizeUrl(await goodParams({ redirect_uri: undefined }))), 'missing redirect_uri');
  });

  it('an unknown resource → invalid_target at the registered redirect URI', async () => {
    const p = await goodParams({ resource: 'https://evil.test/mcp' });
    assertErrorRedirect(await send(null, authorizeUrl(p)), { redirectUri: LOOPBACK, error: 'invalid_target', state: p.state });
  });

  it('response_type=token (implicit) → unsupported_response_type', async () => {
    const p = await goodParams({ response_type: 'token' });
    assertErrorRedirect(await send(null, authorizeUrl(p)), { redirectUri: LOOPBACK, error: 'unsupported_response_type', state: p.state });
  });

  it('response_mode=fragment / form_post → invalid_request, never a fragment', async () => {
    for (const mode of ['fragment', 'form_post']) {
      const p = await goodParams({ response_mode: mode });
      const loc = assertErrorRedirect(await send(null, authorizeUrl(p)), { redirectUri: LOOPBACK, error: 'invalid_request', state: p.state });
      assert.equal(loc.hash, '');
    }
  });

  it('a repeated parameter is refused (RFC 6749 §3.1) without a redirect', async () => {
    const u = authorizeUrl(await goodParams());
    u.searchParams.append('redirect_uri', 'https://evil.test/cb');
    await assertErrorPage(await send(null, u), 'repeated redirect_uri');
  });

  it('password and implicit grants do not exist at the token endpoint', async () => {
    const r = await postForm('/oauth/token', { grant_type: 'password', username: env.user, password: env.password, client_id: env.publicClient });
    assert.equal(r.status, 400);
    assert.equal(r.json.error, 'unsupported_grant_type');
  });

  it('the token endpoint takes POST only', async () => {
    const res = await fetch(new URL(`/oauth/token?grant_type=client_credentials&client_id=${env.ccClient}&client_secret=${env.ccSecret}`, env.issuer));
    assert.ok(res.status === 404 || res.status === 405, `${res.status}`);
    const body = await res.text();
    assert.doesNotMatch(body, /access_token/);
  });

  it('two client authentication methods at once → 400 invalid_request (RFC 6749 §2.3)', async () => {
    const r = await postForm('/oauth/token', { grant_type: 'client_credentials', client_secret: env.confSecret, resource: env.resource }, { basic: [env.confClient, env.confSecret] });
    assert.equal(r.status, 400);
    assert.equal(r.json.error, 'invalid_request');
  });

  it('DCR refuses a code-flow client without redirect URIs', async () => {
    const res = await fetch(new URL('/oauth/register', env.issuer), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token_endpoint_auth_method: 'none', grant_types: ['authorization_code'] }) });
    assert.equal(res.status, 400);
    assert.ok(['invalid_redirect_uri', 'invalid_client_metadata'].includes((await res.json()).error));
  });

  it('a PKCE verifier with characters outside RFC 7636 §4.1 is refused even when its hash matches', async () => {
    const { createHash } = await import('node:crypto');
    const verifier = 'bad verifier with spaces and !* that is long enough to pass 43';
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const { location } = await authorizeThroughForms(authorizeUrl({ ...(await goodParams()), code_challenge: challenge }));
    const r = await postForm('/oauth/token', { grant_type: 'authorization_code', code: location.searchParams.get('code'), redirect_uri: LOOPBACK, code_verifier: verifier, client_id: env.publicClient });
    assert.equal(r.json.error, 'invalid_grant');
  });

  it('DCR refuses client_credentials for a public client', async () => {
    const res = await fetch(new URL('/oauth/register', env.issuer), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token_endpoint_auth_method: 'none', grant_types: ['client_credentials'] }) });
    assert.equal(res.status, 400);
    assert.equal((await res.json()).error, 'invalid_client_metadata');
  });

  it('a public client cannot use client_credentials', async () => {
    const r = await postForm('/oauth/token', { grant_type: 'client_credentials', client_id: env.publicClient, resource: env.resource });
    assert.ok(r.status === 400 || r.status === 401, `${r.status}`);
    assert.ok(['unauthorized_client', 'invalid_client'].includes(r.json.error), r.json.error);
  });
});

describe('authorization codes are single-use and bound (RFC 9700 §4.5, OAuth 2.1 §4.1.3)', () => {
  it('a replayed code fails, and the refresh and access tokens of the first exchange are revoked', async () => {
    const basic = [env.confClient, env.confSecret];
    const before = await metric('authserver_auth_denied_total', { reason: 'code_replay' });
    const t = await codeFlowTokens({ clientId: env.confClient, basic });
    const replay = await postForm('/oauth/token', { grant_type: 'authorization_code', code: t.code, redirect_uri: t.redirectUri, code_verifier: t.verifier, resource: env.resource }, { basic });
    assert.equal(replay.status, 400);
    assert.equal(replay.json.error, 'invalid_grant');
    assert.equal(replay.headers.get('cache-control'), 'no-store');
    assert.equal(await metric('authserver_auth_denied_total', { reason: 'code_replay' }), before + 1);
    const refresh = await postForm('/oauth/token', { grant_type: 'refresh_token', refresh_token: t.refresh_token }, { basic });
    assert.equal(refresh.status, 400);
    assert.equal(refresh.json.error, 'invalid_grant', 'the first exchange\'s refresh token is revoked');
    const intro = await postForm('/oauth/introspect', { token: t.access_token }, { basic });
    assert.equal(intro.json.active, false, 'the first exchange\'s access token is revoked');
  });

  it('a code issued to one client cannot be redeemed by another', async () => {
    const { verifier, challenge } = await pkce();
    const { location } = await authorizeThroughForms(authorizeUrl({ ...(await goodParams()), code_challenge: challenge }));
    const r = await postForm('/oauth/token', { grant_type: 'authorization_code', code: location.searchParams.get('code'), redirect_uri: LOOPBACK, code_verifier: verifier }, { basic: [env.confClient, env.confSecret] });
    assert.equal(r.status, 400);
    assert.equal(r.json.error, 'invalid_grant');
  });

  it('a made-up code → invalid_grant', async () => {
    const r = await postForm('/oauth/token', { grant_type: 'authorization_code', code: 'made-up', redirect_uri: LOOPBACK, code_verifier: (await pkce()).verifier, client_id: env.publicClient });
    assert.equal(r.status, 400);
    assert.equal(r.json.error, 'invalid_grant');
  });
});

describe('races: one code, one refresh token, many requests at once', () => {
  it('the same code exchanged 8 times concurrently: exactly one token response', async () => {
    const { verifier, challenge } = await pkce();
    const { location } = await authorizeThroughForms(authorizeUrl({ ...(await goodParams()), code_challenge: challenge }));
    const code = location.searchParams.get('code');
    const rs = await Promise.all(Array.from({ length: 8 }, () => postForm('/oauth/token', { grant_type: 'authorization_code', code, redirect_uri: LOOPBACK, code_verifier: verifier, client_id: env.publicClient })));
    const statuses = rs.map((r) => r.status);
    assert.equal(statuses.filter((s) => s === 200).length, 1, `statuses ${statuses}`);
    assert.ok(rs.filter((r) => r.status !== 200).every((r) => r.status === 400 && r.json?.error === 'invalid_grant'), `no 5xx: ${statuses}`);
    // The winner's refresh token is revoked by the replays (RFC 6749 §4.1.2).
    const winner = rs.find((r) => r.status === 200).json;
    const after = await postForm('/oauth/token', { grant_type: 'refresh_token', refresh_token: winner.refresh_token, client_id: env.publicClient });
    assert.equal(after.json.error, 'invalid_grant');
  });

  it('the same refresh token used 8 times concurrently: at most one succeeds, the family dies', async () => {
    const t = await codeFlowTokens({ clientId: env.publicClient });
    const rs = await Promise.all(Array.from({ length: 8 }, () => postForm('/oauth/token', { grant_type: 'refresh_token', refresh_token: t.refresh_token, client_id: env.publicClient })));
    const statuses = rs.map((r) => r.status);
    assert.ok(statuses.filter((s) => s === 200).length <= 1, `statuses ${statuses}`);
    assert.ok(rs.filter((r) => r.status !== 200).every((r) => r.status === 400 && r.json?.error === 'invalid_grant'), `no 5xx: ${statuses}`);
    for (const r of rs.filter((x) => x.status === 200)) {
      const next = await postForm('/oauth/token', { grant_type: 'refresh_token', refresh_token: r.json.refresh_token, client_id: env.publicClient });
      assert.equal(next.json.error, 'invalid_grant', 'the rotated token of a reused family is dead too');
    }
  });
});

describe('revocation by someone else (RFC 7009 §2.1)', () => {
  it('a client cannot revoke another client\'s tokens', async () => {
    const t = await codeFlowTokens({ clientId: env.confClient, basic: [env.confClient, env.confSecret] });
    for (const token of [t.refresh_token, t.access_token]) {
      await postForm('/oauth/revoke', { token, client_id: env.publicClient });
      await postForm('/oauth/revoke', { token }, { basic: [env.ccClient, env.ccSecret] });
    }
    const intro = await postForm('/oauth/introspect', { token: t.access_token }, { basic: [env.confClient, env.confSecret] });
    assert.equal(intro.json.active, true, 'access token still active');
    const r = await postForm('/oauth/token', { grant_type: 'refresh_token', refresh_token: t.refresh_token }, { basic: [env.confClient, env.confSecret] });
    assert.equal(r.status, 200, 'refresh token still works');
  });

  it('revocation without client authentication is refused', async () => {
    const t = await codeFlowTokens({ clientId: env.confClient, basic: [env.confClient, env.confSecret] });
    const r = await postForm('/oauth/revoke', { token: t.refresh_token });
    assert.ok(r.status === 400 || r.status === 401, `${r.status}`);
  });
});

describe('refresh tokens (RFC 9700 §4.14)', () => {
  it('reuse of a rotated refresh token revokes the family (raw HTTP)', async () => {
    const t = await codeFlowTokens({ clientId: env.publicClient });
    const r1 = await postForm('/oauth/token', { grant_type: 'refresh_token', refresh_token: t.refresh_token, client_id: env.publicClient });
    assert.equal(r1.status, 200);
    const reuse = await postForm('/oauth/token', { grant_type: 'refresh_token', refresh_token: t.refresh_token, client_id: env.publicClient });
    assert.equal(reuse.status, 400);
    assert.equal(reuse.json.error, 'invalid_grant');
    const next = await postForm('/oauth/token', { grant_type: 'refresh_token', refresh_token: r1.json.refresh_token, client_id: env.publicClient });
    assert.equal(next.json.error, 'invalid_grant', 'the rotated successor is revoked too');
  });

  it('a refresh token is bound to its client', async () => {
    const t = await codeFlowTokens({ clientId: env.publicClient });
    const r = await postForm('/oauth/token', { grant_type: 'refresh_token', refresh_token: t.refresh_token }, { basic: [env.confClient, env.confSecret] });
    assert.equal(r.json.error, 'invalid_grant');
  });

  it('up-scoping on refresh → invalid_scope; a resource not granted → invalid_target', async () => {
    const t = await codeFlowTokens({ clientId: env.publicClient, scope: 'tools/read' });
    const up = await postForm('/oauth/token', { grant_type: 'refresh_token', refresh_token: t.refresh_token, client_id: env.publicClient, scope: 'tools/read tools/write' });
    assert.equal(up.json.error, 'invalid_scope');
    const other = await postForm('/oauth/token', { grant_type: 'refresh_token', refresh_token: t.refresh_token, client_id: env.publicClient, resource: env.resource2 });
    assert.equal(other.json.error, 'invalid_target');
  });
});

describe('CSRF and browser binding on the login and consent forms', () => {
  async function atConsent() {
    const jar = new CookieJar();
    let res = await send(jar, authorizeUrl(await goodParams({ scope: 'tools/write', prompt: 'consent' })));
    const loginUrl = new URL(res.headers.get('location'), env.issuer);
    res = await send(jar, loginUrl.href);
    const login = parseForm(await res.text());
    res = await send(jar, new URL('/ui/login', env.issuer).href, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ ...login.fields, username: env.user, password: env.password }).toString() });
    assert.equal(res.status, 303);
    const consentUrl = new URL(res.headers.get('location'), env.issuer);
    res = await send(jar, consentUrl.href);
    assert.equal(res.status, 200);
    return { jar, form: parseForm(await res.text()) };
  }
  const post = (jar, path, fields) => send(jar, new URL(path, env.issuer).href, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields).toString() });

  it('consent without csrf → error page, no code', async () => {
    const { jar, form } = await atConsent();
    const { csrf, ...rest } = form.fields;
    assert.ok(csrf);
    await assertErrorPage(await post(jar, '/ui/consent', { ...rest, decision: 'approve' }), 'missing csrf');
  });

  it('consent with a wrong csrf → error page, no code; the genuine form still works', async () => {
    const { jar, form } = await atConsent();
    await assertErrorPage(await post(jar, '/ui/consent', { ...form.fields, csrf: 'A'.repeat(43), decision: 'approve' }), 'wrong csrf');
    const ok = await post(jar, '/ui/consent', { ...form.fields, decision: 'approve' });
    assert.equal(ok.status, 303);
    assert.ok(new URL(ok.headers.get('location')).searchParams.get('code'));
  });

  it('a consent form posted from another browser (no flow cookie, valid csrf) is refused', async () => {
    const { jar, form } = await atConsent();
    const other = new CookieJar();
    // The attacker has even got a session of their own.
    other.cookies.set('authplane_session', jar.get('authplane_session'));
    await assertErrorPage(await post(other, '/ui/consent', { ...form.fields, decision: 'approve' }), 'no flow cookie');
  });

  it('login with a wrong csrf → error page, and no session cookie', async () => {
    const jar = new CookieJar();
    let res = await send(jar, authorizeUrl(await goodParams()));
    res = await send(jar, new URL(res.headers.get('location'), env.issuer).href);
    const f = parseForm(await res.text());
    res = await post(jar, '/ui/login', { ...f.fields, csrf: 'forged', username: env.user, password: env.password });
    await assertErrorPage(res, 'login csrf');
    assert.equal(jar.get('authplane_session'), undefined);
  });

  it('a wrong password re-renders the form with 401 and counts login_failed', async () => {
    const before = await metric('authserver_auth_denied_total', { reason: 'login_failed' });
    const r = await authorizeThroughForms(authorizeUrl(await goodParams()), { password: 'wrong' });
    assert.equal(r.status, 401);
    assert.match(r.html, /role="alert"/);
    assert.equal(await metric('authserver_auth_denied_total', { reason: 'login_failed' }), before + 1);
  });

  it('deny → access_denied at the client with state and iss', async () => {
    const p = await goodParams({ prompt: 'consent' });
    const { location } = await authorizeThroughForms(authorizeUrl(p), { decision: 'deny' });
    assert.equal(location.searchParams.get('error'), 'access_denied');
    assert.equal(location.searchParams.get('state'), p.state);
    assert.equal(location.searchParams.get('iss'), env.issuer);
    assert.equal(location.searchParams.get('code'), null);
  });
});

describe('clickjacking and page headers (RFC 9700 §4.16)', () => {
  it('a registered client_name with markup is escaped on the login and consent pages', async () => {
    const name = '<img src=x onerror=alert(1)><script>alert(2)</script>';
    const reg = await (await fetch(new URL('/oauth/register', env.issuer), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ client_name: name, redirect_uris: ['http://127.0.0.1/cb'], token_endpoint_auth_method: 'none' }) })).json();
    const { challenge } = await pkce();
    const r = await authorizeThroughForms(authorizeUrl({ response_type: 'code', client_id: reg.client_id, redirect_uri: 'http://127.0.0.1:1/cb', code_challenge: challenge, code_challenge_method: 'S256', resource: env.resource, state: 'x' }));
    for (const html of [r.seen.login.html, r.seen.consent.html]) {
      assert.doesNotMatch(html, /<img src=x/);
      assert.doesNotMatch(html, /<script>/);
      assert.match(html, /(&lt;|&#60;)img src=x onerror=alert\(1\)(&gt;|&#62;)/, 'shown as text');
    }
  });


  it('login, consent and error pages forbid framing, inline script and caching', async () => {
    const jar = new CookieJar();
    const r = await authorizeThroughForms(authorizeUrl(await goodParams({ scope: 'tools/write', prompt: 'consent' })), { jar, decision: 'approve' });
    const error = await send(null, authorizeUrl({ client_id: 'nope' }));
    const pages = { login: r.seen.login.res, consent: r.seen.consent.res, error };
    for (const [name, res] of Object.entries(pages)) {
      const csp = res.headers.get('content-security-policy') ?? '';
      assert.match(csp, /frame-ancestors 'none'/, `${name}: CSP frame-ancestors`);
      assert.doesNotMatch(csp, /unsafe-inline/, `${name}: no unsafe-inline`);
      assert.match(csp, /default-src 'none'|script-src 'none'/, `${name}: scripts default to none`);
      assert.equal(res.headers.get('x-frame-options'), 'DENY', `${name}: X-Frame-Options`);
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
      assert.match(res.headers.get('cache-control') ?? '', /no-store/);
    }
    for (const [name, html] of [['login', r.seen.login.html], ['consent', r.seen.consent.html]]) {
      assert.doesNotMatch(html, /<script/i, `${name}: no script`);
      assert.doesNotMatch(html, /\son[a-z]+=/i, `${name}: no inline handlers`);
    }
    const flow = jar.get('authplane_flow');
    const session = jar.get('authplane_session');
    for (const c of [flow, session]) {
      assert.ok(c.attrs.httponly, `${c.raw}: HttpOnly`);
      assert.match(String(c.attrs.samesite), /^(Lax|Strict)$/i, `${c.raw}: SameSite`);
    }
    assert.equal(flow.path, '/ui');
  });

  it('authorize and the UI send no CORS header; token, register and revoke do', async () => {
    const a = await send(null, authorizeUrl(await goodParams()), { headers: { origin: 'https://evil.test' } });
    assert.equal(a.headers.get('access-control-allow-origin'), null);
    const t = await postForm('/oauth/token', { grant_type: 'client_credentials' }, { headers: { origin: 'https://app.test' } });
    assert.equal(t.headers.get('access-control-allow-origin'), '*');
  });
});

describe('oversized parameters (RFC 9700 §4, denial of service)', () => {
  it('a 5 KB state → error page, no redirect', async () => {
    await assertErrorPage(await send(null, authorizeUrl(await goodParams({ state: 's'.repeat(5000) }))), 'state');
  });
  it('a 5 KB scope → error page', async () => {
    await assertErrorPage(await send(null, authorizeUrl(await goodParams({ scope: 'tools/read '.repeat(500) }))), 'scope');
  });
  it('a 5 KB client_id → error page', async () => {
    await assertErrorPage(await send(null, authorizeUrl(await goodParams({ client_id: 'c'.repeat(5000) }))), 'client_id');
  });
  it('17 resource parameters → error page', async () => {
    await assertErrorPage(await send(null, authorizeUrl(await goodParams({ resource: Array(17).fill(env.resource) }))), 'resources');
  });
  it('a 64 KB authorize POST body → 4xx, no redirect', async () => {
    const body = new URLSearchParams({ ...(await goodParams()), state: 'x'.repeat(64 * 1024) }).toString();
    const res = await fetch(new URL('/oauth/authorize', env.issuer), { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body, redirect: 'manual' });
    assert.ok(res.status >= 400 && res.status < 500, `${res.status}`);
    assert.equal(res.headers.get('location'), null);
  });
  it('a 100 KB query string → 4xx (not 5xx), and the server stays up', async () => {
    const u = authorizeUrl(await goodParams({ state: 'x'.repeat(100 * 1024) }));
    const res = await fetch(u, { redirect: 'manual' }).catch((e) => ({ status: 0, error: e }));
    assert.ok(res.status === 0 || (res.status >= 400 && res.status < 500), `status ${res.status}`);
    assert.equal((await fetch(new URL('/health', env.issuer))).status, 200);
  });
  it('a 1 MB token request → 4xx JSON error', async () => {
    const r = await postForm('/oauth/token', { grant_type: 'client_credentials', junk: 'x'.repeat(1024 * 1024) }, { basic: [env.ccClient, env.ccSecret] });
    assert.ok(r.status === 400 || r.status === 413, `${r.status}`);
  });
  it('a 1 MB registration request → 4xx', async () => {
    const res = await fetch(new URL('/oauth/register', env.issuer), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ redirect_uris: ['http://127.0.0.1/cb'], client_name: 'x'.repeat(1024 * 1024) }) });
    assert.ok(res.status === 400 || res.status === 413, `${res.status}`);
  });
  it('a 5 KB redirect URI at registration → invalid_redirect_uri or invalid_client_metadata', async () => {
    const res = await fetch(new URL('/oauth/register', env.issuer), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ redirect_uris: [`https://app.e2e.test/${'a'.repeat(5000)}`], token_endpoint_auth_method: 'none' }) });
    assert.equal(res.status, 400, `status ${res.status}`);
  });
});
