// DPoP (RFC 9449) driven by clients nobody here wrote: oauth4webapi and
// openid-client (panva) for the flows, jose for hand-crafted proofs in the
// negative matrix, and the SDK's example MCP server with --dpop-required.
// Every refusal is checked three ways: the OAuth error, the reason label of
// authplane_dpop_proofs_rejected_total, and that the counter moved by one.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { createServer } from 'node:net';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as client from 'openid-client';
import * as oauth from 'oauth4webapi';
import * as jose from 'jose';
import { env, authorizeThroughForms, authorizeUrl, pkce, randomState, postForm, metric } from './lib/harness.mjs';

const issuer = new URL(env.issuer);
const insecure = { [oauth.allowInsecureRequests]: true };
const htu = `${env.issuer}/oauth/token`;
const redirectUri = 'http://127.0.0.1:9/callback';
let as;

before(async () => {
  const res = await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure });
  as = await oauth.processDiscoveryResponse(issuer, res);
});

const rejected = (reason) => metric('authplane_dpop_proofs_rejected_total', { reason });
const validated = () => metric('authplane_dpop_proofs_validated_total');

/** A code for `clientId` through the login and consent forms, with extra authorize parameters. */
async function code({ clientId = env.publicClient, resource = env.resource, extra = {} } = {}) {
  const { verifier, challenge } = await pkce();
  const state = randomState();
  const url = authorizeUrl({ response_type: 'code', client_id: clientId, redirect_uri: redirectUri, scope: 'tools/read', state, code_challenge: challenge, code_challenge_method: 'S256', resource, ...extra });
  const { location } = await authorizeThroughForms(url);
  assert.equal(location.searchParams.get('state'), state, `${location}`);
  return { location, state, verifier };
}

async function thumbprintOf(keyPair) {
  return jose.calculateJwkThumbprint(await jose.exportJWK(keyPair.publicKey));
}

/** oauth4webapi: the code flow of the public client with DPoP (and dpop_jkt at authorize). */
async function oauth4webapiCodeFlow(DPoP, { resource = env.resource } = {}) {
  const c = { client_id: env.publicClient };
  const { location, state, verifier } = await code({ resource, extra: { dpop_jkt: await DPoP.calculateThumbprint() } });
  const params = oauth.validateAuthResponse(as, c, location, state);
  const res = await oauth.authorizationCodeGrantRequest(as, c, oauth.None(), params, redirectUri, verifier, { DPoP, additionalParameters: { resource }, ...insecure });
  return oauth.processAuthorizationCodeResponse(as, c, res);
}

describe('oauth4webapi with DPoP', () => {
  it('discovery advertises the proof algorithms', () => {
    assert.deepEqual(as.dpop_signing_alg_values_supported, ['ES256', 'ES384', 'EdDSA', 'Ed25519', 'RS256', 'PS256']);
  });

  it('code + PKCE + DPoP (dpop_jkt bound), refresh with the bound key, a refresh with another key fails', async () => {
    const keyPair = await oauth.generateKeyPair('ES256');
    const DPoP = oauth.DPoP({ client_id: env.publicClient }, keyPair);
    const before = await validated();
    const tokens = await oauth4webapiCodeFlow(DPoP);
    assert.equal(tokens.token_type.toLowerCase(), 'dpop');
    const jkt = await thumbprintOf(keyPair);
    assert.equal(jose.decodeJwt(tokens.access_token).cnf?.jkt, jkt, 'cnf.jkt is the key thumbprint (RFC 7638, jose)');
    assert.equal(await validated(), before + 1);

    const c = { client_id: env.publicClient };
    const r1 = await oauth.processRefreshTokenResponse(as, c, await oauth.refreshTokenGrantRequest(as, c, oauth.None(), tokens.refresh_token, { DPoP, ...insecure }));
    assert.equal(r1.token_type.toLowerCase(), 'dpop');
    assert.equal(jose.decodeJwt(r1.access_token).cnf?.jkt, jkt);

    const other = oauth.DPoP(c, await oauth.generateKeyPair('ES256'));
    const mismatch = await rejected('key_mismatch');
    const res = await oauth.refreshTokenGrantRequest(as, c, oauth.None(), r1.refresh_token, { DPoP: other, ...insecure });
    await assert.rejects(oauth.processRefreshTokenResponse(as, c, res), (e) => e.error === 'invalid_grant' && /DPoP key/.test(e.error_description));
    assert.equal(await rejected('key_mismatch'), mismatch + 1);
    // The owner's refresh token still works: the thief's attempt spent nothing.
    const r2 = await oauth.processRefreshTokenResponse(as, c, await oauth.refreshTokenGrantRequest(as, c, oauth.None(), r1.refresh_token, { DPoP, ...insecure }));
    assert.equal(r2.token_type.toLowerCase(), 'dpop');
  });

  it('client_credentials with DPoP: a bound token that introspection shows with cnf', async () => {
    const c = { client_id: env.ccClient };
    const keyPair = await oauth.generateKeyPair('EdDSA');
    const DPoP = oauth.DPoP(c, keyPair);
    const res = await oauth.clientCredentialsGrantRequest(as, c, oauth.ClientSecretPost(env.ccSecret), { resource: env.resource }, { DPoP, ...insecure });
    const t = await oauth.processClientCredentialsResponse(as, c, res);
    assert.equal(t.token_type.toLowerCase(), 'dpop');
    const jkt = await thumbprintOf(keyPair);
    assert.equal(jose.decodeJwt(t.access_token).cnf?.jkt, jkt, 'EdDSA proofs bind too');
    const i = await postForm('/oauth/introspect', { token: t.access_token }, { basic: [env.confClient, env.confSecret] });
    assert.equal(i.json.active, true);
    assert.equal(i.json.token_type, 'DPoP');
    assert.equal(i.json.cnf?.jkt, jkt);
  });
});

describe('openid-client with DPoP', () => {
  it('code + PKCE + DPoP, refresh with the bound key, client_credentials', async () => {
    const config = await client.discovery(issuer, env.publicClient, undefined, client.None(), { execute: [client.allowInsecureRequests], algorithm: 'oauth2' });
    const keyPair = await client.randomDPoPKeyPair('ES256');
    const DPoP = client.getDPoPHandle(config, keyPair);
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const url = client.buildAuthorizationUrl(config, { redirect_uri: redirectUri, scope: 'tools/read', state, code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', resource: env.resource });
    const { location } = await authorizeThroughForms(url);
    const tokens = await client.authorizationCodeGrant(config, location, { pkceCodeVerifier: verifier, expectedState: state }, { resource: env.resource }, { DPoP });
    assert.equal(tokens.token_type.toLowerCase(), 'dpop');
    const jkt = await thumbprintOf(keyPair);
    assert.equal(jose.decodeJwt(tokens.access_token).cnf?.jkt, jkt);
    const r = await client.refreshTokenGrant(config, tokens.refresh_token, undefined, { DPoP });
    assert.equal(jose.decodeJwt(r.access_token).cnf?.jkt, jkt);
    // Without the key the refresh token is refused.
    await assert.rejects(client.refreshTokenGrant(config, r.refresh_token), (e) => e.error === 'invalid_grant');

    const cc = await client.discovery(issuer, env.ccClient, env.ccSecret, client.ClientSecretPost(env.ccSecret), { execute: [client.allowInsecureRequests], algorithm: 'oauth2' });
    const t = await client.clientCredentialsGrant(cc, { resource: env.resource }, { DPoP: client.getDPoPHandle(cc, await client.randomDPoPKeyPair('PS256')) });
    assert.equal(t.token_type.toLowerCase(), 'dpop', 'an RSA-PSS proof');
  });
});

// --- proofs crafted by jose --------------------------------------------------

const es256 = await jose.generateKeyPair('ES256', { extractable: true });
const es256Jwk = await jose.exportJWK(es256.publicKey);

/** A proof signed with jose: `claims` override the good ones, `header` the good header. */
async function proof({ claims = {}, header = {}, key = es256.privateKey, jwk = es256Jwk } = {}) {
  const body = { jti: crypto.randomUUID(), htm: 'POST', htu, iat: Math.floor(Date.now() / 1000), ...claims };
  return new jose.SignJWT(body).setProtectedHeader({ typ: 'dpop+jwt', alg: 'ES256', jwk, ...header }).sign(key);
}

function b64(o) {
  return Buffer.from(JSON.stringify(o)).toString('base64url');
}

/** client_credentials for the machine client with these DPoP header values. */
function cc(proofs) {
  const headers = {};
  if (proofs.length === 1) headers.dpop = proofs[0];
  else if (proofs.length > 1) headers.dpop = proofs.join(', ');
  return postForm('/oauth/token', { grant_type: 'client_credentials', client_id: env.ccClient, client_secret: env.ccSecret, resource: env.resource }, { headers });
}

async function expectRefused(name, proofs, { error = 'invalid_dpop_proof', reason }) {
  const before = await rejected(reason);
  const r = await cc(proofs);
  assert.equal(r.status, 400, `${name}: ${r.text}`);
  assert.equal(r.json.error, error, `${name}: ${r.text}`);
  assert.equal(await rejected(reason), before + 1, `${name}: reason ${reason}`);
  return r;
}

describe('negative matrix (proofs by jose)', () => {
  it('a good jose proof is accepted (the baseline the rest differ from)', async () => {
    const r = await cc([await proof()]);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.token_type, 'DPoP');
  });

  it('replay: the same proof twice', async () => {
    const p = await proof();
    assert.equal((await cc([p])).status, 200);
    const r = await expectRefused('replay', [p], { reason: 'replay' });
    assert.match(r.json.error_description, /already used/);
  });

  it('replay: the same proof sent 10 times at once succeeds exactly once', async () => {
    const p = await proof();
    const before = await rejected('replay');
    const answers = await Promise.all(Array.from({ length: 10 }, () => cc([p])));
    assert.equal(answers.filter((a) => a.status === 200).length, 1, answers.map((a) => a.status).join(','));
    assert.ok(answers.filter((a) => a.status !== 200).every((a) => a.json.error === 'invalid_dpop_proof'));
    assert.equal(await rejected('replay'), before + 9);
  });

  const now = () => Math.floor(Date.now() / 1000);
  const cases = [
    ['wrong htu', () => proof({ claims: { htu: `${env.issuer}/oauth/revoke` } }), 'htu_mismatch'],
    ['htu of another host', () => proof({ claims: { htu: 'https://evil.example/oauth/token' } }), 'htu_mismatch'],
    ['wrong htm', () => proof({ claims: { htm: 'GET' } }), 'htm_mismatch'],
    ['stale iat', () => proof({ claims: { iat: now() - 300 } }), 'iat'],
    ['future iat', () => proof({ claims: { iat: now() + 300 } }), 'iat'],
    ['alg none', async () => `${b64({ typ: 'dpop+jwt', alg: 'none', jwk: es256Jwk })}.${b64({ jti: 'n', htm: 'POST', htu, iat: now() })}.`, 'alg'],
    ['HS256', async () => new jose.SignJWT({ jti: crypto.randomUUID(), htm: 'POST', htu, iat: now() }).setProtectedHeader({ typ: 'dpop+jwt', alg: 'HS256', jwk: es256Jwk }).sign(new TextEncoder().encode('0123456789abcdef0123456789abcdef')), 'alg'],
    ['private jwk', async () => proof({ jwk: await jose.exportJWK(es256.privateKey) }), 'malformed'],
    ['typ JWT', () => proof({ header: { typ: 'JWT' } }), 'malformed'],
    ['no jti', () => proof({ claims: { jti: undefined } }), 'malformed'],
    ['signed by another key', async () => proof({ key: (await jose.generateKeyPair('ES256')).privateKey }), 'signature'],
  ];
  for (const [name, make, reason] of cases) {
    it(`${name}: invalid_dpop_proof, reason ${reason}`, async () => {
      await expectRefused(name, [await make()], { reason });
    });
  }

  // fetch joins repeated headers into one value ("a, b"), which is what a
  // proxy folding two DPoP headers produces too.
  it('two proofs in the DPoP header: malformed', async () => {
    await expectRefused('two headers', [await proof(), await proof()], { reason: 'malformed' });
  });

  it('key mismatch: a dpop_jkt code exchanged with another key', async () => {
    const other = await jose.generateKeyPair('ES256');
    const { location, verifier } = await code({ extra: { dpop_jkt: await jose.calculateJwkThumbprint(es256Jwk) } });
    const before = await rejected('key_mismatch');
    const form = { grant_type: 'authorization_code', code: location.searchParams.get('code'), redirect_uri: redirectUri, code_verifier: verifier, client_id: env.publicClient };
    const r = await postForm('/oauth/token', form, { headers: { dpop: await proof({ key: other.privateKey, jwk: await jose.exportJWK(other.publicKey) }) } });
    assert.equal(r.json.error, 'invalid_grant', r.text);
    assert.equal(await rejected('key_mismatch'), before + 1);
    // The code is still good for the key it is bound to.
    const ok = await postForm('/oauth/token', form, { headers: { dpop: await proof() } });
    assert.equal(ok.status, 200, ok.text);
  });
});

// --- the example MCP server with --dpop-required -----------------------------

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const mcpBin = process.env.MCP_SERVER_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(root, 'target'), 'debug', 'mcp-server');

async function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

describe('the example MCP server with --dpop-required, reached by oauth4webapi', () => {
  let mcp;
  let mcpUrl;
  before(async () => {
    const port = await freePort();
    mcpUrl = `http://localhost:${port}/mcp`;
    // The resource at the AS, with dpop_required (admin API).
    const res = await fetch(new URL('/admin/resources', env.adminUrl), {
      method: 'POST',
      headers: { authorization: `Bearer ${env.adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ resource: mcpUrl, scopes: ['tools/read', 'tools/write'], dpop_required: true }),
    });
    assert.ok(res.status === 201 || res.status === 200, `${res.status} ${await res.text()}`);
    mcp = spawn(mcpBin, ['--listen', `127.0.0.1:${port}`, '--resource', mcpUrl, '--issuer', env.issuer, '--dpop-required'], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, RUST_LOG: 'info,rmcp=warn' } });
    const lines = createInterface({ input: mcp.stdout });
    await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('mcp-server did not start')), 30000);
      lines.on('line', (l) => {
        if (/msg="mcp server started"/.test(l)) {
          clearTimeout(t);
          resolve();
        }
      });
    });
  });
  after(() => mcp?.kill());

  const initialize = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'e2e-dpop', version: '1' } } });
  const mcpHeaders = () => new Headers({ 'content-type': 'application/json', accept: 'application/json, text/event-stream' });

  it('PRM says dpop_bound_access_tokens_required and the AS refuses a token without a proof', async () => {
    const prm = await (await fetch(new URL('/.well-known/oauth-protected-resource/mcp', mcpUrl))).json();
    assert.equal(prm.dpop_bound_access_tokens_required, true);
    const { location, verifier } = await code({ resource: mcpUrl });
    const form = { grant_type: 'authorization_code', code: location.searchParams.get('code'), redirect_uri: redirectUri, code_verifier: verifier, client_id: env.publicClient };
    const r = await postForm('/oauth/token', form);
    assert.equal(r.json?.error, 'invalid_dpop_proof', r.text);
    assert.match(r.json.error_description, /dpop_required/);
  });

  it('a bound token with a proof per request calls the MCP endpoint; as Bearer it is refused', async () => {
    const keyPair = await oauth.generateKeyPair('ES256');
    const DPoP = oauth.DPoP({ client_id: env.publicClient }, keyPair);
    const tokens = await oauth4webapiCodeFlow(DPoP, { resource: mcpUrl });
    assert.equal(tokens.token_type.toLowerCase(), 'dpop');
    const res = await oauth.protectedResourceRequest(tokens.access_token, 'POST', new URL(mcpUrl), mcpHeaders(), initialize, { DPoP, ...insecure });
    assert.equal(res.status, 200, await res.clone().text());
    assert.match(await res.text(), /Example MCP server|serverInfo/);

    const bearer = await fetch(mcpUrl, { method: 'POST', headers: { ...Object.fromEntries(mcpHeaders()), authorization: `Bearer ${tokens.access_token}` }, body: initialize });
    assert.equal(bearer.status, 401);
    const www = bearer.headers.get('www-authenticate');
    assert.match(www, /^DPoP algs="ES256 ES384 EdDSA Ed25519 RS256 PS256", resource_metadata="[^"]+"/);
    assert.match(www, /error="invalid_token"/);
    assert.doesNotMatch(www, /Bearer/, 'no Bearer challenge on a DPoP-only resource');

    // A proof whose ath is another token's hash (jose-crafted).
    const wrongAth = await new jose.SignJWT({ jti: crypto.randomUUID(), htm: 'POST', htu: mcpUrl, iat: Math.floor(Date.now() / 1000), ath: 'A'.repeat(43) })
      .setProtectedHeader({ typ: 'dpop+jwt', alg: 'ES256', jwk: await jose.exportJWK(keyPair.publicKey) })
      .sign(keyPair.privateKey);
    const ath = await fetch(mcpUrl, { method: 'POST', headers: { ...Object.fromEntries(mcpHeaders()), authorization: `DPoP ${tokens.access_token}`, dpop: wrongAth }, body: initialize });
    assert.equal(ath.status, 401);
    assert.match(ath.headers.get('www-authenticate'), /error="invalid_dpop_proof"/);
  });
});
