// The whole MCP authorization flow, driven by the official MCP TypeScript
// SDK client against the example MCP server and the real authserver:
// 401 → PRM → AS metadata → dynamic registration → authorize with PKCE and
// `resource` → login and consent (followed headlessly through the real
// forms) → token → tools; then a write tool with a read-only token → 403
// insufficient_scope → step-up authorization → the call succeeds.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { decodeJwt, decodeProtectedHeader } from 'jose';

import { freePort, startAuthServer, startMcpServer } from './harness.mjs';

const REDIRECT = 'http://127.0.0.1:8976/callback';

let as;
let mcp;
let hasOAuth = false;

before(async () => {
  const port = await freePort();
  as = await startAuthServer({ resource: `http://localhost:${port}/mcp` });
  mcp = await startMcpServer({ issuer: as.issuer, port });
  const meta = await (await fetch(`${as.issuer}/.well-known/oauth-authorization-server`)).json();
  hasOAuth = Boolean(meta.token_endpoint && meta.authorization_endpoint && meta.registration_endpoint);
});

after(() => {
  mcp?.stop();
  as?.stop();
});

/** A browser stand-in: a cookie jar and the login/consent form contract (ARCHITECTURE §3). */
class HeadlessBrowser {
  constructor() {
    this.cookies = new Map();
  }

  async request(url, init = {}) {
    const headers = { ...(init.headers ?? {}) };
    if (this.cookies.size) headers.cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    const res = await fetch(url, { ...init, headers, redirect: 'manual' });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = pair.indexOf('=');
      this.cookies.set(pair.slice(0, i).trim(), pair.slice(i + 1).trim());
    }
    return res;
  }

  /** Follows the authorization URL through login and consent; returns the redirect to the client. */
  async authorize(authorizationUrl, { username, password }) {
    const pages = [];
    let res = await this.request(authorizationUrl);
    for (let step = 0; step < 10; step++) {
      if (res.status >= 300 && res.status < 400) {
        const location = new URL(res.headers.get('location'), res.url || authorizationUrl);
        if (location.href.startsWith(REDIRECT)) return { redirect: location, pages };
        res = await this.request(location);
        continue;
      }
      const html = await res.text();
      pages.push(html);
      assert.equal(res.status, 200, `unexpected page: ${html.slice(0, 500)}`);
      const form = /<form[^>]*method="post"[^>]*action="([^"]+)"[^>]*>([\s\S]*?)<\/form>/i.exec(html);
      assert.ok(form, `no form on page: ${html.slice(0, 500)}`);
      const fields = new URLSearchParams();
      for (const m of form[2].matchAll(/<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"/g)) {
        fields.set(m[1], m[2].replaceAll('&amp;', '&'));
      }
      if (/name="username"/.test(form[2])) {
        fields.set('username', username);
        fields.set('password', password);
      } else if (/name="decision"/.test(form[2])) {
        fields.set('decision', 'approve');
      }
      res = await this.request(new URL(form[1], res.url || authorizationUrl), {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: fields.toString(),
      });
    }
    throw new Error('authorization did not come back to the client');
  }
}

/** An OAuthClientProvider whose "redirect" is the headless browser. */
class HeadlessProvider {
  constructor(browser) {
    this.browser = browser;
    this.authorizations = [];
  }
  get redirectUrl() {
    return REDIRECT;
  }
  get clientMetadata() {
    // No refresh_token grant: the SDK would answer a 403 by refreshing, which
    // cannot widen the scope; without one it re-authorizes (step-up).
    return {
      client_name: 'authplane-sdk node test',
      redirect_uris: [REDIRECT],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  clientInformation() {
    return this._client;
  }
  saveClientInformation(info) {
    this._client = info;
  }
  tokens() {
    return this._tokens;
  }
  saveTokens(tokens) {
    this._tokens = tokens;
  }
  saveCodeVerifier(v) {
    this._verifier = v;
  }
  codeVerifier() {
    return this._verifier;
  }
  async redirectToAuthorization(url) {
    this.authorizations.push(url);
    const { redirect } = await this.browser.authorize(url, { username: 'alice', password: 'dev-password' });
    assert.equal(redirect.searchParams.get('iss'), as.issuer, 'RFC 9207 iss in the authorization response');
    this.code = redirect.searchParams.get('code');
    assert.ok(this.code, `no code in ${redirect}`);
  }
}

test('the MCP TypeScript SDK authorizes, calls tools, and steps up for the write tool', async (t) => {
  if (!hasOAuth) {
    t.skip('this authserver has no /oauth endpoints yet');
    return;
  }
  const provider = new HeadlessProvider(new HeadlessBrowser());
  const connect = async () => {
    const client = new Client({ name: 'authplane-sdk-node-test', version: '1' });
    const transport = new StreamableHTTPClientTransport(new URL(mcp.url), { authProvider: provider });
    await client.connect(transport);
    return { client, transport };
  };

  // 1. No token: 401 → discovery → registration → authorization (headless).
  const first = new StreamableHTTPClientTransport(new URL(mcp.url), { authProvider: provider });
  await assert.rejects(new Client({ name: 'x', version: '1' }).connect(first), UnauthorizedError);
  assert.equal(provider.authorizations.length, 1);
  const authz = provider.authorizations[0];
  assert.equal(authz.searchParams.get('resource'), mcp.url, 'RFC 8707 resource from PRM');
  assert.equal(authz.searchParams.get('scope'), 'tools/read', 'the challenge scope');
  assert.equal(authz.searchParams.get('code_challenge_method'), 'S256');
  await first.finishAuth(provider.code);

  // The token is what the SDK verifies: ES256 at+jwt, aud = the resource.
  const header = decodeProtectedHeader(provider.tokens().access_token);
  assert.equal(header.alg, 'ES256');
  assert.equal(header.typ, 'at+jwt');
  const claims = decodeJwt(provider.tokens().access_token);
  assert.deepEqual(claims.aud, [mcp.url]);
  assert.equal(claims.iss, as.issuer);
  assert.equal(claims.scope, 'tools/read');

  // 2. Connected: list tools and call the read tool.
  const { client, transport } = await connect();
  const { tools } = await client.listTools();
  assert.deepEqual(tools.map((x) => x.name).sort(), ['add_note', 'list_notes']);
  const listed = await client.callTool({ name: 'list_notes', arguments: {} });
  assert.equal(listed.isError ?? false, false);

  // 3. The write tool: 403 insufficient_scope → the SDK re-authorizes with the wider scope.
  await assert.rejects(client.callTool({ name: 'add_note', arguments: { text: 'hi' } }), UnauthorizedError);
  assert.equal(provider.authorizations.length, 2, 'step-up started a second authorization');
  assert.equal(provider.authorizations[1].searchParams.get('scope'), 'tools/read tools/write');
  await transport.finishAuth(provider.code);
  assert.equal(decodeJwt(provider.tokens().access_token).scope, 'tools/read tools/write');

  // 4. The same call now succeeds.
  const added = await client.callTool({ name: 'add_note', arguments: { text: 'hi' } });
  assert.match(added.content[0].text, /added note/);
  await client.close();

  // The example logged the checklist's step 6 line for the real token.
  assert.ok(
    mcp.lines.some((l) => l.includes(`msg="verified" sub=user-42 scope="tools/read tools/write" aud=${mcp.url}`)),
    mcp.lines.join('\n'),
  );
});
