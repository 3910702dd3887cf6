// The login and consent pages in Debian's headless Chromium, driven by
// playwright-core: filled by label and submitted with the buttons, as a person
// would. Screenshots go to e2e/oauth/artifacts/ (E2E_ARTIFACTS).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { env, pkce, authorizeUrl, postForm } from './lib/harness.mjs';

const artifacts = process.env.E2E_ARTIFACTS ?? resolve(import.meta.dirname, '../artifacts');
mkdirSync(artifacts, { recursive: true });
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let context;
let profile;
let callback; // a stand-in for the MCP client's loopback redirect listener
let callbackBase;
const cspViolations = [];

async function startCallbackServer() {
  const server = createServer((req, res) => {
    const u = new URL(req.url, 'http://127.0.0.1');
    if (u.pathname === '/frame.html') {
      // An attacker page that tries to frame the login page.
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(`<!doctype html><title>framer</title><iframe id="f" src="${u.searchParams.get('src')}" width="600" height="400"></iframe>`);
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>client callback</title><h1>Back at the client</h1>');
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return server;
}

async function newPage() {
  const page = await context.newPage();
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) cspViolations.push(`${page.url()}: ${m.text()}`);
  });
  return page;
}

async function startFlow(page, { scope = 'tools/read tools/write', prompt } = {}) {
  const { verifier, challenge } = await pkce();
  const state = `st-${Math.random().toString(36).slice(2)}`;
  const redirectUri = `${callbackBase}/callback`;
  const url = authorizeUrl({ response_type: 'code', client_id: env.publicClient, redirect_uri: redirectUri, scope, state, code_challenge: challenge, code_challenge_method: 'S256', resource: env.resource, prompt });
  const response = await page.goto(url.href);
  return { verifier, state, redirectUri, response };
}

async function signIn(page, password = env.password) {
  await page.getByLabel('Username').fill(env.user);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

before(async () => {
  callback = await startCallbackServer();
  callbackBase = `http://127.0.0.1:${callback.address().port}`;
  profile = mkdtempSync(join(tmpdir(), 'authplane-chromium-'));
  context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS, viewport: { width: 900, height: 820 } });
});

after(async () => {
  await context?.close();
  callback?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

describe('login and consent in Chromium', () => {
  it('a wrong password shows the error as an alert, then the right one gets through', async () => {
    await context.clearCookies();
    const page = await newPage();
    const { response } = await startFlow(page);
    assert.equal(response.status(), 200);
    assert.match(page.url(), /\/ui\/login\?request=/);
    await signIn(page, 'not-the-password');
    const alert = page.getByRole('alert');
    await alert.waitFor();
    assert.match(await alert.textContent(), /wrong username or password/i);
    assert.equal(await page.getByLabel('Username').getAttribute('aria-invalid'), 'true');
    assert.equal(await page.getByLabel('Username').inputValue(), env.user, 'username kept');
    assert.equal(await page.getByLabel('Password').inputValue(), '', 'password not echoed');
    await page.screenshot({ path: join(artifacts, 'login-error.png'), fullPage: true });
    // This time from the keyboard: type the password and press Enter.
    await page.getByLabel('Password').fill(env.password);
    await page.getByLabel('Password').press('Enter');
    await page.waitForURL(/\/ui\/consent\?request=/);
    // On a phone-sized screen the consent page still shows both buttons.
    await page.setViewportSize({ width: 375, height: 740 });
    for (const name of ['Deny', 'Allow access']) assert.ok(await page.getByRole('button', { name }).isVisible(), name);
    await page.screenshot({ path: join(artifacts, 'consent-narrow.png'), fullPage: true });
    await page.close();
  });

  it('signs in and approves: back at the client with code, state and iss; the code redeems', async () => {
    await context.clearCookies();
    const page = await newPage();
    const { verifier, state, redirectUri, response } = await startFlow(page);
    // Page headers a browser sees.
    const h = response.headers();
    assert.match(h['content-security-policy'], /frame-ancestors 'none'/);
    assert.equal(h['x-frame-options'], 'DENY');
    assert.equal(await page.locator('script').count(), 0, 'no script at all');
    assert.equal(await page.title(), 'Sign in · AuthPlane');
    await page.screenshot({ path: join(artifacts, 'login.png'), fullPage: true });

    await signIn(page);
    await page.waitForURL(/\/ui\/consent\?request=/);
    // What the person is consenting to is on the page.
    const main = page.getByRole('main');
    await main.getByRole('heading', { level: 1 }).waitFor();
    const text = await main.textContent();
    assert.match(text, /E2E public client/, 'client name');
    assert.match(text, /E2E MCP server/, 'resource name');
    assert.match(text, new RegExp(env.resource.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')), 'resource URI');
    assert.match(text, /tools\/read/);
    assert.match(text, /tools\/write/);
    assert.match(text, /127\.0\.0\.1/, 'redirect host');
    assert.equal(await page.locator('script').count(), 0);
    await page.screenshot({ path: join(artifacts, 'consent.png'), fullPage: true });

    // Cookies: HttpOnly and SameSite, as a browser stored them.
    const cookies = await context.cookies(env.issuer + '/ui/consent');
    const flow = cookies.find((c) => c.name === 'authplane_flow');
    const session = cookies.find((c) => c.name === 'authplane_session');
    assert.ok(flow && session, `cookies: ${cookies.map((c) => c.name)}`);
    for (const c of [flow, session]) {
      assert.equal(c.httpOnly, true, `${c.name} HttpOnly`);
      assert.ok(['Lax', 'Strict'].includes(c.sameSite), `${c.name} SameSite=${c.sameSite}`);
    }
    assert.equal(flow.path, '/ui');
    // And scripts cannot read them.
    assert.doesNotMatch(await page.evaluate(() => document.cookie).catch(() => ''), /authplane_/);

    await page.getByRole('button', { name: 'Allow access' }).click();
    await page.waitForURL((u) => u.href.startsWith(redirectUri));
    const back = new URL(page.url());
    assert.equal(back.origin + back.pathname, redirectUri);
    assert.equal(back.searchParams.get('state'), state);
    assert.equal(back.searchParams.get('iss'), env.issuer);
    const code = back.searchParams.get('code');
    assert.ok(code);
    const t = await postForm('/oauth/token', { grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier, client_id: env.publicClient, resource: env.resource });
    assert.equal(t.status, 200, t.text);
    assert.ok(t.json.access_token && t.json.refresh_token);
    await page.close();
  });

  it('deny sends access_denied back to the client', async () => {
    const page = await newPage();
    // Signed in from the test above; prompt=consent asks again.
    const { state, redirectUri } = await startFlow(page, { prompt: 'consent' });
    if (page.url().includes('/ui/login')) await signIn(page);
    await page.waitForURL(/\/ui\/consent\?request=/);
    await page.getByRole('button', { name: 'Deny' }).click();
    await page.waitForURL((u) => u.href.startsWith(redirectUri));
    const back = new URL(page.url());
    assert.equal(back.searchParams.get('error'), 'access_denied');
    assert.equal(back.searchParams.get('state'), state);
    assert.equal(back.searchParams.get('iss'), env.issuer);
    assert.equal(back.searchParams.get('code'), null);
    await page.close();
  });

  it('an unregistered redirect URI shows an error page and stays on the AS', async () => {
    const page = await newPage();
    const { challenge } = await pkce();
    const url = authorizeUrl({ response_type: 'code', client_id: env.publicClient, redirect_uri: 'https://evil.test/cb', code_challenge: challenge, code_challenge_method: 'S256', resource: env.resource, state: 'x' });
    const res = await page.goto(url.href);
    assert.equal(res.status(), 400);
    assert.equal(new URL(page.url()).origin, env.issuer);
    assert.match(await page.getByRole('alert').textContent(), /redirect_uri/);
    await page.screenshot({ path: join(artifacts, 'error.png'), fullPage: true });
    await page.close();
  });

  it('the login page cannot be framed by another site', async () => {
    await context.clearCookies();
    const page = await newPage();
    const { challenge } = await pkce();
    const target = authorizeUrl({ response_type: 'code', client_id: env.publicClient, redirect_uri: `${callbackBase}/callback`, code_challenge: challenge, code_challenge_method: 'S256', resource: env.resource, state: 'f' });
    // Control: a page that allows framing does render in the same frame.
    await page.goto(`${callbackBase}/frame.html?src=${encodeURIComponent(`${callbackBase}/callback`)}`);
    await page.waitForLoadState('load');
    const control = page.frames().find((f) => f !== page.mainFrame());
    assert.equal(await control.locator('h1').textContent(), 'Back at the client', 'control frame renders');

    await page.goto(`${callbackBase}/frame.html?src=${encodeURIComponent(target.href)}`);
    await page.waitForLoadState('load');
    await page.waitForTimeout(500);
    const frame = page.frames().find((f) => f !== page.mainFrame());
    assert.ok(frame, 'the iframe exists');
    const inputs = await frame.locator('input[name=password]').count().catch(() => 0);
    assert.equal(inputs, 0, `the framed login form must not render (frame url ${frame.url()})`);
    await page.screenshot({ path: join(artifacts, 'framed-login-blocked.png') });
    await page.close();
  });

  it('the pages run within their own CSP (no violations reported)', () => {
    const own = cspViolations.filter((v) => v.startsWith(env.issuer));
    assert.deepEqual(own, []);
  });
});
