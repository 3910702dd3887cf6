// Sign-in through an identity provider, in Debian's headless Chromium: the
// MCP client's authorization request at AuthPlane → "Continue with …" → node
// oidc-provider's own login and consent pages (upstream/provider.mjs) → back
// to AuthPlane's callback → AuthPlane consent → code → token. Once through
// OpenID Connect (ID token verified), once through the same provider as a
// plain OAuth 2 upstream (userinfo), then the refusals: a replayed state, a
// mixed-up iss, a callback in another browser, a person the policy keeps
// out, and the person cancelling at the provider — each with its
// `login_failed` audit row (`upstream_*` reason).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { readFileSync, existsSync } from 'node:fs';
import { env, pkce, authorizeUrl, postForm, metric } from './lib/harness.mjs';

const artifacts = process.env.E2E_ARTIFACTS ?? resolve(import.meta.dirname, '../artifacts');
mkdirSync(artifacts, { recursive: true });
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const UPSTREAM = process.env.E2E_UPSTREAM_ISSUER;
if (!UPSTREAM) throw new Error('E2E_UPSTREAM_ISSUER is not set: run through e2e/oauth/run.sh');

let browser;
let callback;
let callbackBase;

before(async () => {
  callback = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>client callback</title><h1>Back at the client</h1>');
  });
  await new Promise((ok) => callback.listen(0, '127.0.0.1', ok));
  callbackBase = `http://127.0.0.1:${callback.address().port}`;
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
});

after(async () => {
  await browser?.close();
  callback?.close();
});

async function startFlow(context) {
  const page = await context.newPage();
  const { verifier, challenge } = await pkce();
  const redirectUri = `${callbackBase}/callback`;
  const url = authorizeUrl({ response_type: 'code', client_id: env.publicClient, redirect_uri: redirectUri, scope: 'tools/read', state: 'st-up', code_challenge: challenge, code_challenge_method: 'S256', resource: env.resource });
  await page.goto(url.href);
  await page.waitForURL(/\/ui\/login\?request=/);
  return { page, verifier, redirectUri };
}

/** At the provider: its login form, then its consent page when it asks. */
async function atProvider(page, login) {
  await page.waitForURL((u) => u.href.startsWith(`${UPSTREAM}/interaction/`));
  await page.locator('input[name=login]').fill(login);
  await page.locator('input[name=password]').fill('any password');
  await page.locator('button[type=submit]').click();
  for (let i = 0; i < 3; i++) {
    await page.waitForLoadState();
    if (!page.url().startsWith(`${UPSTREAM}/interaction/`)) return;
    const button = page.locator('button[type=submit]');
    if (await button.count()) await button.click();
  }
}

async function audits(type) {
  const r = await fetch(`${env.adminUrl}/admin/audit?type=${type}&limit=100`, { headers: { authorization: `Bearer ${env.adminKey}` } });
  assert.equal(r.status, 200);
  const body = await r.json();
  return body.events ?? body.items ?? body;
}

async function lastFailureReason() {
  const rows = await audits('login_failed');
  const detail = rows.map((r) => (typeof r.detail === 'string' ? JSON.parse(r.detail) : r.detail));
  return detail.filter((d) => d?.upstream).map((d) => d.reason);
}

/**
 * Holds the browser's request to AuthPlane's callback, which arrives as a
 * redirect from the provider (Playwright's page.route does not see
 * redirects; Chromium's Fetch domain does), and lets `decide(url)` answer:
 * a URL to send instead, or null to fulfil it here with a blank page.
 */
async function onCallback(context, page, decide) {
  const cdp = await context.newCDPSession(page);
  await cdp.send('Fetch.enable', { patterns: [{ urlPattern: '*/ui/upstream/*/callback*', requestStage: 'Request' }] });
  cdp.on('Fetch.requestPaused', async (e) => {
    const url = decide(e.request.url);
    if (url) await cdp.send('Fetch.continueRequest', { requestId: e.requestId, url });
    else await cdp.send('Fetch.fulfillRequest', { requestId: e.requestId, responseCode: 200, responseHeaders: [{ name: 'content-type', value: 'text/html' }], body: Buffer.from('<!doctype html><title>held</title><main>held</main>').toString('base64') });
  });
}

function decode(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());
}

/** Through the provider and AuthPlane's consent to the client's callback; the token. */
async function fullFlow(context, { button, login, record }) {
  const { page, verifier, redirectUri } = await startFlow(context);
  if (record) page.on('request', (r) => { if (r.url().includes('/ui/upstream/') && r.url().includes('/callback')) record.push(r.url()); });
  await page.getByRole('link', { name: `Continue with ${button}` }).click();
  await atProvider(page, login);
  await page.waitForURL(/\/ui\/consent\?request=/);
  await page.screenshot({ path: join(artifacts, `upstream-consent-${button.replace(/\W+/g, '-')}.png`) });
  await page.getByRole('button', { name: 'Allow access' }).click();
  await page.waitForURL((u) => u.href.startsWith(redirectUri));
  const code = new URL(page.url()).searchParams.get('code');
  assert.ok(code, page.url());
  const t = await postForm('/oauth/token', { grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier, client_id: env.publicClient, resource: env.resource });
  assert.equal(t.status, 200, JSON.stringify(t.json));
  await page.close();
  lastTokens = t.json;
  return decode(t.json.access_token);
}

let lastTokens; // the token response of the last fullFlow
let annTokens; // AuthPlane's tokens for corp:ann (e2e-public, E2E_RESOURCE)

describe('sign-in through an identity provider (node oidc-provider)', () => {
  it('the login page offers each provider beside the password form', async () => {
    const context = await browser.newContext();
    const { page } = await startFlow(context);
    for (const name of ['Continue with Corp SSO', 'Continue with Plain OAuth']) {
      assert.ok(await page.getByRole('link', { name }).isVisible(), name);
    }
    assert.ok(await page.getByLabel('Username').isVisible(), 'local users keep the password form');
    await page.screenshot({ path: join(artifacts, 'upstream-login.png') });
    await context.close();
  });

  it('OpenID Connect: provider login and consent, AuthPlane consent, a token for corp:<sub>', async () => {
    const context = await browser.newContext();
    const seen = [];
    const claims = await fullFlow(context, { button: 'Corp SSO', login: 'ann', record: seen });
    annTokens = lastTokens;
    assert.equal(claims.sub, 'corp:ann');
    assert.deepEqual([claims.aud].flat(), [env.resource]);
    const users = await (await fetch(`${env.adminUrl}/admin/users`, { headers: { authorization: `Bearer ${env.adminKey}` } })).json();
    const ann = users.find((u) => u.id === 'corp:ann');
    assert.ok(ann, JSON.stringify(users));
    assert.equal(ann.source, 'upstream');
    assert.equal(ann.upstream, 'corp');
    assert.equal(ann.email, 'ann@corp.example');

    // The callback URL again (state replay): refused, nothing signed in.
    assert.equal(seen.length, 1);
    const page = await context.newPage();
    const replay = await page.goto(seen[0]);
    assert.equal(replay.status(), 400);
    assert.match(await page.locator('main').textContent(), /already used/);
    assert.equal((await lastFailureReason()).at(-1), 'upstream_state_invalid');
    await context.close();
  });

  it('plain OAuth 2: the same provider through its userinfo endpoint', async () => {
    const context = await browser.newContext();
    const claims = await fullFlow(context, { button: 'Plain OAuth', login: 'bob' });
    assert.equal(claims.sub, 'plain:bob');
    await context.close();
  });

  it('a mixed-up iss on the callback is refused (RFC 9207)', async () => {
    const context = await browser.newContext();
    const { page } = await startFlow(context);
    await onCallback(context, page, (url) => {
      const u = new URL(url);
      assert.equal(u.searchParams.get('iss'), UPSTREAM, 'the provider sends iss (RFC 9207)');
      u.searchParams.set('iss', 'https://evil.example');
      return u.href;
    });
    await page.getByRole('link', { name: 'Continue with Corp SSO' }).click();
    await atProvider(page, 'ann');
    await page.waitForURL(/\/ui\/upstream\/corp\/callback/);
    assert.match(await page.locator('main').textContent(), /could not be verified/);
    assert.equal((await lastFailureReason()).at(-1), 'upstream_iss_mismatch');
    await context.close();
  });

  it('a callback that reaches another browser is refused', async () => {
    const context = await browser.newContext();
    const { page } = await startFlow(context);
    let stolen;
    await onCallback(context, page, (url) => {
      stolen = url;
      return null;
    });
    await page.getByRole('link', { name: 'Continue with Corp SSO' }).click();
    await atProvider(page, 'ann');
    await page.waitForURL(/\/ui\/upstream\/corp\/callback/);
    assert.ok(stolen);
    const other = await browser.newContext();
    const p2 = await other.newPage();
    const r = await p2.goto(stolen);
    assert.equal(r.status(), 400);
    assert.match(await p2.locator('main').textContent(), /another browser/);
    assert.equal((await lastFailureReason()).at(-1), 'upstream_state_invalid');
    await other.close();
    await context.close();
  });

  it('someone outside allowed_email_domains is kept out, with a page that says so', async () => {
    const context = await browser.newContext();
    const { page } = await startFlow(context);
    await page.getByRole('link', { name: 'Continue with Corp SSO' }).click();
    await atProvider(page, 'eve@evil.example');
    await page.waitForURL(/\/ui\/upstream\/corp\/callback/);
    assert.match(await page.locator('main').textContent(), /not allowed to sign in here/);
    assert.equal((await lastFailureReason()).at(-1), 'upstream_not_allowed');
    const users = await (await fetch(`${env.adminUrl}/admin/users`, { headers: { authorization: `Bearer ${env.adminKey}` } })).json();
    assert.ok(!users.some((u) => u.id.includes('eve')), 'no user is created for someone refused');
    await context.close();
  });

  it('cancelling at the provider comes back as a page, not a stack', async () => {
    const context = await browser.newContext();
    const { page } = await startFlow(context);
    await page.getByRole('link', { name: 'Continue with Corp SSO' }).click();
    await page.waitForURL((u) => u.href.startsWith(`${UPSTREAM}/interaction/`));
    await page.goto(`${page.url().replace(/\/$/, '')}/abort`);
    await page.waitForURL(/\/ui\/upstream\/corp\/callback/);
    assert.match(await page.locator('main').textContent(), /access was denied there/);
    assert.equal((await lastFailureReason()).at(-1), 'upstream_denied');
    await page.screenshot({ path: join(artifacts, 'upstream-denied.png') });
    await context.close();
  });
});

// The token broker: corp keeps the provider's tokens (store_tokens), and the
// MCP server's client e2e-broker exchanges an AuthPlane token issued for its
// resource for ann's corp token (RFC 8693). The provider's access tokens
// live 45 s and AuthPlane refreshes them 30 s before expiry: a stored token
// is handed out as it is for 15 s, then refreshed. The counts are compared
// before and after, since how long the earlier tests took decides whether
// the first exchange already refreshes.
describe('the token broker (RFC 8693 token exchange)', () => {
  const broker = [process.env.E2E_BROKER_CLIENT, process.env.E2E_BROKER_SECRET];
  const exchange = (subject, { client = broker, audience = 'corp' } = {}) => postForm('/oauth/token', {
    grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
    subject_token: subject,
    subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
    audience,
  }, { basic: client });
  const userinfo = async (token) => (await fetch(`${UPSTREAM}/me`, { headers: { authorization: `Bearer ${token}` } }));
  const refreshes = (outcome) => metric('authplane_upstream_token_refresh_total', { outcome });
  const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));
  let first;

  it('discovery lists the token-exchange grant once an upstream keeps tokens', async () => {
    const meta = await (await fetch(`${env.issuer}/.well-known/oauth-authorization-server`)).json();
    assert.ok(meta.grant_types_supported.includes('urn:ietf:params:oauth:grant-type:token-exchange'), meta.grant_types_supported.join(' '));
  });

  it('hands the MCP server the user\'s upstream token, which the provider accepts', async () => {
    assert.ok(annTokens, 'the OpenID Connect sign-in ran first');
    const r = await exchange(annTokens.access_token);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.issued_token_type, 'urn:ietf:params:oauth:token-type:access_token');
    assert.equal(r.json.token_type, 'Bearer');
    assert.ok(r.json.expires_in > 0 && r.json.expires_in <= 45, String(r.json.expires_in));
    const me = await userinfo(r.json.access_token);
    assert.equal(me.status, 200);
    assert.equal((await me.json()).sub, 'ann');
    first = r.json.access_token;
    const before = await refreshes('success');
    assert.equal((await exchange(annTokens.access_token)).json.access_token, first, 'a fresh token is handed out as stored');
    assert.equal(await refreshes('success'), before, 'and not refreshed');
    const obtained = (await audits('broker_grant_updated')).filter((e) => e.detail.action === 'obtained' && e.user_id === 'corp:ann');
    assert.equal(obtained.length, 1);
    assert.ok(!JSON.stringify(await audits('broker_grant_updated')).includes(first), 'no token in audit rows');
  });

  it('the example MCP server\'s upstream_whoami tool: exchange through the SDK, then the upstream API with the user\'s token', async () => {
    const root = resolve(import.meta.dirname, '../../..');
    const bin = process.env.MCP_SERVER_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(root, 'target'), 'debug', 'mcp-server');
    const port = await new Promise((ok) => { const srv = createServer(); srv.listen(0, '127.0.0.1', () => { const p = srv.address().port; srv.close(() => ok(p)); }); });
    const mcp = spawn(bin, ['--listen', `127.0.0.1:${port}`, '--resource', env.resource, '--issuer', env.issuer,
      '--broker-upstream', 'corp', '--broker-client-id', broker[0], '--broker-userinfo-url', `${UPSTREAM}/me`],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, MCP_BROKER_CLIENT_SECRET: broker[1], RUST_LOG: 'info,rmcp=warn' } });
    try {
      await new Promise((ok, fail) => {
        const t = setTimeout(() => fail(new Error('mcp-server did not start')), 30000);
        createInterface({ input: mcp.stdout }).on('line', (l) => { if (/msg="mcp server started"/.test(l)) { clearTimeout(t); ok(); } });
      });
      const url = `http://127.0.0.1:${port}/mcp`;
      const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${annTokens.access_token}` };
      const rpc = async (body, session) => {
        const r = await fetch(url, { method: 'POST', headers: { ...headers, ...(session ? { 'mcp-session-id': session, 'mcp-protocol-version': '2025-06-18' } : {}) }, body: JSON.stringify(body) });
        const text = await r.text();
        const data = text.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).filter(Boolean);
        return { status: r.status, session: r.headers.get('mcp-session-id'), json: data.length ? JSON.parse(data.at(-1)) : (text ? JSON.parse(text) : undefined) };
      };
      const init = await rpc({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'e2e-broker', version: '1' } } });
      assert.equal(init.status, 200);
      await rpc({ jsonrpc: '2.0', method: 'notifications/initialized' }, init.session);
      const call = await rpc({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'upstream_whoami', arguments: {} } }, init.session);
      assert.equal(call.status, 200);
      assert.ok(!call.json.error, JSON.stringify(call.json));
      const me = JSON.parse(call.json.result.content[0].text);
      assert.equal(me.sub, 'ann', 'the upstream saw ann, through her own upstream token');
      assert.equal(me.email, 'ann@corp.example');
    } finally {
      mcp.kill();
    }
  });

  it('keeps the upstream tokens encrypted: their bytes are nowhere in the database files', async () => {
    const files = [process.env.E2E_DB, `${process.env.E2E_DB}-wal`].filter((f) => existsSync(f));
    assert.ok(files.length >= 1);
    for (const f of files) {
      const bytes = readFileSync(f);
      assert.equal(bytes.indexOf(Buffer.from(first)), -1, `${f} holds the upstream access token in clear`);
    }
  });

  it('refuses another server\'s token, a client not allowed the upstream, and a token it did not issue', async () => {
    const other = await exchange(annTokens.access_token, { client: [process.env.E2E_BROKER_OTHER, broker[1]] });
    assert.equal(other.status, 400);
    assert.equal(other.json.error, 'invalid_grant');
    assert.match(other.json.error_description, /meant for itself/);
    const notAllowed = await exchange(annTokens.access_token, { audience: 'plain' });
    assert.equal(notAllowed.json.error, 'invalid_target');
    const noBroker = await exchange(annTokens.access_token, { client: [env.confClient, env.confSecret] });
    assert.equal(noBroker.json.error, 'unauthorized_client');
    const forged = await exchange(`${annTokens.access_token.slice(0, -4)}AAAA`);
    assert.equal(forged.json.error, 'invalid_grant');
    const wrongSecret = await exchange(annTokens.access_token, { client: [broker[0], 'wrong'] });
    assert.equal(wrongSecret.status, 401);
  });

  it('refreshes a token close to expiry, once, and recovers after the provider was down', async () => {
    const ok0 = await refreshes('success');
    const failed0 = await refreshes('failed');
    const refreshed0 = (await audits('broker_grant_updated')).filter((e) => e.detail.action === 'refreshed').length;
    await sleep(16_000);
    const [a, b] = await Promise.all([exchange(annTokens.access_token), exchange(annTokens.access_token)]);
    assert.equal(a.status, 200, a.text);
    assert.equal(a.json.access_token, b.json.access_token, 'concurrent requests share one refresh');
    assert.notEqual(a.json.access_token, first);
    assert.equal((await userinfo(a.json.access_token)).status, 200);
    assert.equal(await refreshes('success'), ok0 + 1);
    const refreshed = (await audits('broker_grant_updated')).filter((e) => e.detail.action === 'refreshed');
    assert.equal(refreshed.length, refreshed0 + 1);

    await sleep(16_000);
    await fetch(`${UPSTREAM}/_test/down?on=1`, { method: 'POST' });
    const down = await exchange(annTokens.access_token);
    assert.equal(down.status, 503);
    assert.equal(down.json.error, 'temporarily_unavailable');
    assert.match(down.json.error_description, /upstream_unreachable/);
    assert.equal(await refreshes('failed'), failed0 + 1);
    await fetch(`${UPSTREAM}/_test/down?on=0`, { method: 'POST' });
    const back = await exchange(annTokens.access_token);
    assert.equal(back.status, 200, 'nothing was lost while the provider was down');
    assert.equal(await refreshes('success'), ok0 + 2);
  });

  it('a grant revoked at the provider is marked revoked and ends the MCP client\'s refresh family', async () => {
    await fetch(`${UPSTREAM}/_test/revoke`, { method: 'POST' });
    await sleep(16_000);
    const r = await exchange(annTokens.access_token);
    assert.equal(r.status, 400);
    assert.equal(r.json.error, 'invalid_grant');
    assert.match(r.json.error_description, /revoked at the provider: they must sign in again/);
    assert.equal(await refreshes('revoked'), 1);
    const revoked = (await audits('broker_grant_updated')).filter((e) => e.detail.action === 'revoked');
    assert.equal(revoked.length, 1);
    assert.equal(revoked[0].client_id, env.publicClient);
    // The MCP client's refresh token is dead: it must send ann through sign-in again.
    const rt = await postForm('/oauth/token', { grant_type: 'refresh_token', refresh_token: annTokens.refresh_token, client_id: env.publicClient });
    assert.equal(rt.json?.error, 'invalid_grant', rt.text);
    // Its access tokens went with the family: the MCP server's copy no longer exchanges.
    const again = await exchange(annTokens.access_token);
    assert.equal(again.json.error, 'invalid_grant');
    assert.match(again.json.error_description, /not an active access token/);
    assert.equal(await refreshes('revoked'), 1, 'a revoked grant is not refreshed again');
  });

  it('the admin API shows each upstream\'s grants and a user\'s links, and deleting a link forgets the tokens', async () => {
    const admin = (path, init = {}) => fetch(`${env.adminUrl}${path}`, { ...init, headers: { authorization: `Bearer ${env.adminKey}` } });
    const ups = await (await admin('/admin/upstreams')).json();
    const corp = ups.find((u) => u.id === 'corp');
    assert.deepEqual([corp.kind, corp.store_tokens, corp.active_grants, corp.revoked_grants, corp.last_refresh_outcome], ['oidc', true, 0, 1, 'revoked']);
    assert.equal(ups.find((u) => u.id === 'plain').kind, 'oauth2');
    const ann = await (await admin('/admin/users/corp:ann')).json();
    assert.deepEqual(ann.upstream_grants.map((g) => [g.upstream, g.status]), [['corp', 'revoked']]);
    assert.ok(!JSON.stringify(ann).includes('token_enc'), 'no sealed token in the API');
    assert.equal((await admin('/admin/users/corp:ann/upstreams/corp', { method: 'DELETE' })).status, 204);
    assert.equal((await admin('/admin/users/corp:ann/upstreams/corp', { method: 'DELETE' })).status, 404);
    assert.equal((await (await admin('/admin/users/corp:ann')).json()).upstream_grants, undefined);
    const deleted = (await audits('broker_grant_updated')).filter((e) => e.detail.action === 'deleted');
    assert.equal(deleted.length, 1);
  });
});
