// DPoP nonces (RFC 9449 §8) against a server started with
// AUTHPLANE_OAUTH_DPOP_NONCE=true (e2e/oauth/run.sh): oauth4webapi's and
// openid-client's nonce round trips, and jose proofs without or with a
// nonce the server never issued.
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import * as client from 'openid-client';
import * as oauth from 'oauth4webapi';
import * as jose from 'jose';
import { env, postForm, metric } from './lib/harness.mjs';

const issuer = new URL(env.issuer);
const insecure = { [oauth.allowInsecureRequests]: true };
const htu = `${env.issuer}/oauth/token`;
let as;

before(async () => {
  as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }));
});

const nonceRejections = () => metric('authplane_dpop_proofs_rejected_total', { reason: 'nonce' });
const ccForm = { grant_type: 'client_credentials', client_id: env.ccClient, client_secret: env.ccSecret, resource: env.resource };

describe('DPoP nonces', () => {
  it('oauth4webapi: use_dpop_nonce first, then the retry with the DPoP-Nonce value passes', async () => {
    const c = { client_id: env.ccClient };
    const DPoP = oauth.DPoP(c, await oauth.generateKeyPair('ES256'));
    const before = await nonceRejections();
    const first = await oauth.clientCredentialsGrantRequest(as, c, oauth.ClientSecretPost(env.ccSecret), { resource: env.resource }, { DPoP, ...insecure });
    assert.ok(first.headers.get('dpop-nonce'), 'a DPoP-Nonce header with use_dpop_nonce');
    let err;
    try {
      await oauth.processClientCredentialsResponse(as, c, first);
    } catch (e) {
      err = e;
    }
    assert.ok(oauth.isDPoPNonceError(err), `expected use_dpop_nonce, got ${err}`);
    assert.equal(await nonceRejections(), before + 1);
    // The handle kept the nonce from the response.
    const retry = await oauth.clientCredentialsGrantRequest(as, c, oauth.ClientSecretPost(env.ccSecret), { resource: env.resource }, { DPoP, ...insecure });
    const t = await oauth.processClientCredentialsResponse(as, c, retry);
    assert.equal(t.token_type.toLowerCase(), 'dpop');
  });

  it('openid-client retries on use_dpop_nonce by itself', async () => {
    const config = await client.discovery(issuer, env.ccClient, env.ccSecret, client.ClientSecretPost(env.ccSecret), { execute: [client.allowInsecureRequests], algorithm: 'oauth2' });
    const DPoP = client.getDPoPHandle(config, await client.randomDPoPKeyPair('ES256'));
    const t = await client.clientCredentialsGrant(config, { resource: env.resource }, { DPoP });
    assert.equal(t.token_type.toLowerCase(), 'dpop');
  });

  let key;
  let jwk;
  before(async () => {
    key = await jose.generateKeyPair('ES256');
    jwk = await jose.exportJWK(key.publicKey);
  });
  const proof = (extra = {}) =>
    new jose.SignJWT({ jti: crypto.randomUUID(), htm: 'POST', htu, iat: Math.floor(Date.now() / 1000), ...extra })
      .setProtectedHeader({ typ: 'dpop+jwt', alg: 'ES256', jwk })
      .sign(key.privateKey);

  it('a jose proof without a nonce, or with one the server never issued: use_dpop_nonce, reason nonce', async () => {
    for (const extra of [{}, { nonce: 'an-expired-or-foreign-nonce' }]) {
      const before = await nonceRejections();
      const r = await postForm('/oauth/token', ccForm, { headers: { dpop: await proof(extra) } });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.error, 'use_dpop_nonce', r.text);
      const nonce = r.headers.get('dpop-nonce');
      assert.match(nonce ?? '', /^[A-Za-z0-9_-]{43}$/);
      assert.equal(await nonceRejections(), before + 1);
      // The nonce from the header works.
      const ok = await postForm('/oauth/token', ccForm, { headers: { dpop: await proof({ nonce }) } });
      assert.equal(ok.status, 200, ok.text);
      assert.equal(ok.json.token_type, 'DPoP');
    }
  });
});
