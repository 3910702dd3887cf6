// Issue 20's findings against the example MCP server (rmcp + authplane-sdk)
// and the real authserver, driven by the official MCP TypeScript SDK and
// plain fetch: sessions bound to their creator and bounded, the unknown-kid
// refetch against a JWKS endpoint that hangs, sampled and clipped log lines,
// CORS preflights, and the audience spellings of the core rule.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import { freePort, startAuthServer, startHangableJwks, startMcpServer } from './harness.mjs';
import { mintTokens } from './tokens.mjs';

let as;
let jwks;
let mcp;
let tokens;

const now = () => Math.floor(Date.now() / 1000);
const PER_PRINCIPAL = 3;
const UNKNOWN_KID_TIMEOUT_MS = 400;
const SAME_AUD = (url) => [
  `${url}/`,
  url.replace('localhost', 'LOCALHOST'),
  url.replace('http://', 'HTTP://'),
  url.replace('/mcp', '/./mcp'),
  `  ${url} `,
];
const OTHER_AUD = (url) => [url.replace('/mcp', '/MCP'), url.replace('http://', 'https://'), `${url}//`];

before(async () => {
  const port = await freePort();
  const resource = `http://localhost:${port}/mcp`;
  as = await startAuthServer({ resource });
  jwks = await startHangableJwks(as.issuer);
  mcp = await startMcpServer({
    issuer: as.issuer,
    port,
    args: [
      '--jwks-uri', jwks.url,
      '--jwks-unknown-kid-timeout-ms', String(UNKNOWN_KID_TIMEOUT_MS),
      '--sessions-per-principal', String(PER_PRINCIPAL),
      '--max-sessions', '100',
      '--cors-origins', '*',
    ],
  });

  const key = as.keys()[0];
  const at = { typ: 'at+jwt', kid: key.kid };
  const claims = (edit = () => {}) => {
    const c = {
      iss: as.issuer, sub: 'probe', aud: [mcp.url], client_id: 'dev-client', scope: 'tools/read tools/write',
      iat: now(), exp: now() + 600, jti: `jti-${Math.random()}`,
    };
    edit(c);
    return c;
  };
  // Short values: the whole token must stay under the SDK's 8 KiB cap.
  const many = Array.from({ length: 330 }, (_, i) => `urn:a:${String(i).padStart(3, '0')}`);
  tokens = await mintTokens(key, [
    { name: 'probe', sign: 'key', header: at, claims: claims() },
    { name: 'mallory', sign: 'key', header: at, claims: claims((c) => { c.sub = 'mallory'; c.client_id = 'other'; }) },
    { name: 'probe-other-client', sign: 'key', header: at, claims: claims((c) => { c.client_id = 'other'; }) },
    { name: 'storm', sign: 'key', header: at, claims: claims((c) => { c.sub = 'storm'; }) },
    { name: 'expired', sign: 'key', header: at, claims: claims((c) => { c.exp = now() - 3600; c.iat = now() - 7200; }) },
    { name: 'many-aud', sign: 'key', header: at, claims: claims((c) => { c.aud = [...many, mcp.url]; }) },
    { name: 'stranger', sign: 'fresh', header: { typ: 'at+jwt', kid: 'stranger' }, claims: claims() },
    ...SAME_AUD(mcp.url).map((a, i) => ({ name: `same-${i}`, sign: 'key', header: at, claims: claims((c) => { c.aud = [a]; }) })),
    ...OTHER_AUD(mcp.url).map((a, i) => ({ name: `other-${i}`, sign: 'key', header: at, claims: claims((c) => { c.aud = [a]; }) })),
  ]);
});

after(() => {
  mcp?.stop();
  jwks?.stop();
  as?.stop();
});

const initialize = {
  jsonrpc: '2.0', id: 1, method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'node-test', version: '1' } },
};
const listNotes = { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'list_notes', arguments: {} } };

async function post(body, token, session) {
  const headers = {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-protocol-version': '2025-06-18',
  };
  if (token) headers.authorization = `Bearer ${token}`;
  if (session) headers['mcp-session-id'] = session;
  return fetch(mcp.url, { method: 'POST', headers, body: JSON.stringify(body) });
}

async function openSession(token) {
  const res = await post(initialize, token);
  assert.equal(res.status, 200);
  await res.body?.cancel();
  const session = res.headers.get('mcp-session-id');
  assert.ok(session, 'initialize returned a session id');
  const ack = await post({ jsonrpc: '2.0', method: 'notifications/initialized' }, token, session);
  assert.ok(ack.status < 300, `initialized: ${ack.status}`);
  return session;
}

describe('sessions are bound to the principal that created them', () => {
  test('the official client creates a session; another principal gets 404 for it', async () => {
    const client = new Client({ name: 'node-test', version: '1' });
    const transport = new StreamableHTTPClientTransport(new URL(mcp.url), {
      requestInit: { headers: { authorization: `Bearer ${tokens.probe}` } },
    });
    await client.connect(transport);
    const session = transport.sessionId;
    assert.ok(session);
    const listed = await client.callTool({ name: 'list_notes', arguments: {} });
    assert.equal(listed.isError ?? false, false);

    for (const other of ['mallory', 'probe-other-client']) {
      const res = await post(listNotes, tokens[other], session);
      assert.equal(res.status, 404, other);
      assert.equal(await res.text(), 'Not Found: Session not found');
    }
    // As for a session that never existed.
    const unknown = await post(listNotes, tokens.mallory, 'no-such-session');
    assert.equal(unknown.status, 404);
    assert.equal(await unknown.text(), 'Not Found: Session not found');

    // The creator is not affected.
    const again = await client.callTool({ name: 'list_notes', arguments: {} });
    assert.equal(again.isError ?? false, false);
    await client.close();

    const warn = mcp.lines.find((l) => l.includes('msg="session principal mismatch"'));
    assert.ok(warn, mcp.lines.join('\n'));
    assert.match(warn, /level=WARN msg="session principal mismatch" error=ErrSessionPrincipalMismatch/);
    assert.match(warn, /sub=mallory client_id=other session_sub=probe session_client_id=dev-client/);
    assert.ok(!mcp.lines.some((l) => l.includes(session)), 'the session id is not logged');
  });

  test(`one principal holds at most ${PER_PRINCIPAL} sessions; older ones are closed`, async () => {
    const sessions = [];
    for (let i = 0; i < PER_PRINCIPAL + 4; i++) sessions.push(await openSession(tokens.storm));
    const statuses = [];
    for (const s of sessions) {
      const res = await post(listNotes, tokens.storm, s);
      await res.body?.cancel();
      statuses.push(res.status);
    }
    assert.deepEqual(statuses, [...Array(4).fill(404), ...Array(PER_PRINCIPAL).fill(200)]);
  });
});

describe('cors', () => {
  test('a preflight is answered without a token', async () => {
    const res = await fetch(mcp.url, {
      method: 'OPTIONS',
      headers: {
        origin: 'http://localhost:6274',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization,content-type,mcp-protocol-version',
      },
    });
    assert.equal(res.status, 204);
    assert.equal(res.headers.get('access-control-allow-origin'), '*');
    assert.match(res.headers.get('access-control-allow-headers'), /authorization/);
    assert.match(res.headers.get('access-control-allow-headers'), /mcp-session-id/);
  });

  test('a 401 to a page exposes WWW-Authenticate and the session header', async () => {
    const res = await fetch(mcp.url, {
      method: 'POST',
      headers: { origin: 'http://localhost:6274', 'content-type': 'application/json' },
      body: JSON.stringify(initialize),
    });
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('access-control-allow-origin'), '*');
    assert.match(res.headers.get('access-control-expose-headers'), /WWW-Authenticate/);
    assert.match(res.headers.get('access-control-expose-headers'), /Mcp-Session-Id/);
  });
});

describe('log lines', () => {
  test('refusals are sampled per reason; long claims are clipped', async () => {
    for (let i = 0; i < 40; i++) {
      const res = await post(initialize, tokens.expired);
      assert.equal(res.status, 401);
      await res.text();
    }
    const expired = mcp.lines.filter((l) => l.includes('error=ErrTokenExpired'));
    assert.equal(expired.length, 10, expired.join('\n'));

    const res = await post(initialize, tokens['many-aud']);
    assert.equal(res.status, 200);
    await res.body?.cancel();
    const verified = mcp.lines.filter((l) => l.includes('msg="verified"') && l.includes('urn:a:000'));
    assert.equal(verified.length, 1);
    assert.ok(verified[0].length < 700, `${verified[0].length} bytes: ${verified[0]}`);
  });
});

describe('the audience rule (authplane_core::resource)', () => {
  for (const [i, aud] of SAME_AUD('http://localhost:PORT/mcp').entries()) {
    test(`accepted: ${JSON.stringify(aud)}`, async () => {
      const res = await post(initialize, tokens[`same-${i}`]);
      assert.equal(res.status, 200);
      await res.body?.cancel();
    });
  }
  for (const [i, aud] of OTHER_AUD('http://localhost:PORT/mcp').entries()) {
    test(`refused: ${JSON.stringify(aud)}`, async () => {
      const res = await post(initialize, tokens[`other-${i}`]);
      assert.equal(res.status, 401);
      await res.text();
    });
  }
});

describe('unknown kid while the AS hangs', () => {
  test('503 with Retry-After within the timeout; cached keys keep working', async () => {
    jwks.setHang(true);
    try {
      const started = Date.now();
      const res = await post(initialize, tokens.stranger);
      const waited = Date.now() - started;
      assert.equal(res.status, 503);
      assert.equal(res.headers.get('retry-after'), '30');
      assert.equal(res.headers.get('www-authenticate'), null);
      assert.equal((await res.json()).error, 'temporarily_unavailable');
      assert.ok(waited >= UNKNOWN_KID_TIMEOUT_MS - 50 && waited < 3000, `waited ${waited} ms`);
      assert.ok(mcp.lines.some((l) => l.includes('error=ErrJwksRefreshTimeout')), mcp.lines.join('\n'));

      const known = await post(initialize, tokens.probe);
      assert.equal(known.status, 200);
      await known.body?.cancel();
    } finally {
      jwks.setHang(false);
    }
  });
});
