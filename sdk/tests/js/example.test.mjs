// The example MCP server (rmcp + authplane-sdk) against the real authserver,
// driven by clients nobody here wrote: tokens minted by `jose`, the official
// MCP TypeScript SDK's discovery helpers and client, and plain fetch.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  discoverOAuthProtectedResourceMetadata,
  extractWWWAuthenticateParams,
  selectResourceURL,
} from '@modelcontextprotocol/sdk/client/auth.js';

import { freePort, startAuthServer, startMcpServer } from './harness.mjs';
import { mintTokens } from './tokens.mjs';

let as;
let mcp;
let tokens;
let prmUrl;

const now = () => Math.floor(Date.now() / 1000);

before(async () => {
  const port = await freePort();
  const resource = `http://localhost:${port}/mcp`;
  as = await startAuthServer({ resource });
  mcp = await startMcpServer({ issuer: as.issuer, port });
  prmUrl = `${mcp.origin}/.well-known/oauth-protected-resource/mcp`;

  const key = as.keys()[0];
  const at = (extra = {}) => ({ typ: 'at+jwt', kid: key.kid, ...extra });
  const claims = (scope, edit = () => {}) => {
    const c = {
      iss: as.issuer, sub: 'user-42', aud: [mcp.url], client_id: 'dev-client', scope,
      iat: now(), exp: now() + 300, jti: `jti-${Math.random()}`,
    };
    edit(c);
    return c;
  };
  tokens = await mintTokens(key, [
    { name: 'read', sign: 'key', header: at(), claims: claims('tools/read') },
    { name: 'read-write', sign: 'key', header: at(), claims: claims('tools/read tools/write') },
    { name: 'expired-within-skew', sign: 'key', header: at(), claims: claims('tools/read', (c) => { c.exp = now() - 10; }) },
    { name: 'expired-beyond-skew', sign: 'key', header: at(), claims: claims('tools/read', (c) => { c.exp = now() - 120; }) },
    { name: 'wrong-aud', sign: 'key', header: at(), claims: claims('tools/read', (c) => { c.aud = ['http://localhost:1/mcp']; }) },
    { name: 'wrong-iss', sign: 'key', header: at(), claims: claims('tools/read', (c) => { c.iss = 'http://evil.example'; }) },
    { name: 'alg-none', sign: 'none', claims: claims('tools/read') },
    { name: 'alg-none-typed', sign: 'none-raw', header: at(), claims: claims('tools/read') },
    { name: 'hs256-with-public-key', sign: 'hs256-public', header: at(), claims: claims('tools/read') },
    { name: 'unknown-kid', sign: 'fresh', header: { typ: 'at+jwt', kid: 'not-published' }, claims: claims('tools/read') },
    { name: 'missing-typ', sign: 'key', header: { kid: key.kid }, claims: claims('tools/read') },
  ]);
});

after(() => {
  mcp?.stop();
  as?.stop();
});

const initialize = {
  jsonrpc: '2.0', id: 1, method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'node-test', version: '1' } },
};

async function post(body, token) {
  const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
  if (token) headers.authorization = `Bearer ${token}`;
  return fetch(mcp.url, { method: 'POST', headers, body: JSON.stringify(body) });
}

describe('protected resource metadata (checklist step 2)', () => {
  test('is served at the path-suffixed and root forms, with CORS', async () => {
    for (const url of [prmUrl, `${mcp.origin}/.well-known/oauth-protected-resource`]) {
      const res = await fetch(url, { headers: { origin: 'http://localhost:6274' } });
      assert.equal(res.status, 200, url);
      assert.equal(res.headers.get('access-control-allow-origin'), '*');
      const prm = await res.json();
      assert.deepEqual(prm, {
        resource: mcp.url,
        authorization_servers: [as.issuer],
        scopes_supported: ['tools/read', 'tools/write'],
        bearer_methods_supported: ['header'],
        resource_name: 'Example MCP server',
        dpop_signing_alg_values_supported: ['ES256', 'ES384', 'EdDSA', 'Ed25519', 'RS256', 'PS256'],
      });
    }
  });

  test('is accepted by the MCP TypeScript SDK', async () => {
    const prm = await discoverOAuthProtectedResourceMetadata(mcp.url);
    assert.deepEqual(prm.authorization_servers, [as.issuer]);
    // The SDK checks that the PRM resource matches the server URL it called.
    const resource = await selectResourceURL(mcp.url, {}, prm);
    assert.equal(resource.href, mcp.url);
  });
});

describe('challenges', () => {
  test('no token: 401 with resource_metadata and the default scope, readable by the SDK', async () => {
    const res = await post(initialize);
    assert.equal(res.status, 401);
    // Two challenges (RFC 9449 §7.1: DPoP beside Bearer); fetch joins them
    // with ", " and the MCP SDK still reads the Bearer parameters first.
    assert.equal(
      res.headers.get('www-authenticate'),
      `Bearer resource_metadata="${prmUrl}", scope="tools/read", ` +
        `DPoP algs="ES256 ES384 EdDSA Ed25519 RS256 PS256", resource_metadata="${prmUrl}", scope="tools/read"`,
    );
    assert.match(res.headers.get('access-control-expose-headers'), /WWW-Authenticate/i);
    const params = extractWWWAuthenticateParams(res);
    assert.equal(params.resourceMetadataUrl.href, prmUrl);
    assert.equal(params.scope, 'tools/read');
    assert.equal(params.error, undefined);
  });

  const refused = [
    'expired-beyond-skew', 'wrong-aud', 'wrong-iss', 'alg-none', 'alg-none-typed',
    'hs256-with-public-key', 'unknown-kid', 'missing-typ',
  ];
  for (const name of refused) {
    test(`${name}: 401 invalid_token`, async () => {
      const res = await post(initialize, tokens[name]);
      assert.equal(res.status, 401);
      const params = extractWWWAuthenticateParams(res);
      assert.equal(params.error, 'invalid_token');
      assert.equal(params.resourceMetadataUrl.href, prmUrl);
      assert.match(res.headers.get('www-authenticate'), /error_description="[^"]+"/);
      const body = await res.json();
      assert.equal(body.error, 'invalid_token');
    });
  }

  test('expired within the 30 s skew: accepted', async () => {
    const res = await post(initialize, tokens['expired-within-skew']);
    assert.equal(res.status, 200);
  });
});

describe('the official MCP client with a token', () => {
  async function connect(token) {
    const client = new Client({ name: 'node-test', version: '1' });
    const transport = new StreamableHTTPClientTransport(new URL(mcp.url), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    });
    await client.connect(transport);
    return client;
  }

  test('read-only token: lists tools, calls the read tool, gets 403 insufficient_scope on the write tool', async () => {
    const client = await connect(tokens.read);
    const { tools } = await client.listTools();
    assert.deepEqual(tools.map((t) => t.name).sort(), ['add_note', 'list_notes']);
    const listed = await client.callTool({ name: 'list_notes', arguments: {} });
    assert.equal(listed.isError ?? false, false);
    await assert.rejects(client.callTool({ name: 'add_note', arguments: { text: 'x' } }), /403|insufficient_scope/);
    await client.close();

    // The raw 403 carries what a client needs to step up.
    const res = await post(
      { jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'add_note', arguments: { text: 'x' } } },
      tokens.read,
    );
    assert.equal(res.status, 403);
    const params = extractWWWAuthenticateParams(res);
    assert.equal(params.error, 'insufficient_scope');
    assert.equal(params.scope, 'tools/read tools/write');
    assert.equal(params.resourceMetadataUrl.href, prmUrl);
  });

  test('read-write token: the write tool works', async () => {
    const client = await connect(tokens['read-write']);
    const added = await client.callTool({ name: 'add_note', arguments: { text: 'hello' } });
    assert.match(added.content[0].text, /added note/);
    const listed = await client.callTool({ name: 'list_notes', arguments: {} });
    assert.match(listed.content[0].text, /hello \(by user-42\)/);
    await client.close();
  });

  test('the server logs the checklist step 6 line, and never a token', () => {
    const verified = `msg="verified" sub=user-42 scope=tools/read aud=${mcp.url} client_id=dev-client`;
    assert.ok(mcp.lines.some((l) => l.includes(`level=INFO ${verified}`)), mcp.lines.join('\n'));
    assert.ok(mcp.lines.some((l) => /level=WARN msg="token rejected" error=ErrWrongAudience code=invalid_token/.test(l)));
    for (const t of Object.values(tokens)) {
      const sig = t.split('.')[2];
      if (sig) assert.ok(!mcp.lines.some((l) => l.includes(sig)), 'a token leaked into the logs');
    }
  });
});
