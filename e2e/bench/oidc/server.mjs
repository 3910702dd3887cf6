// The reference server for `make bench`: node oidc-provider (pinned in
// package.json), in memory (its default adapter, no persistence at all), set
// up the way AuthPlane is for each grant the bench drives:
// - ES256 JWT access tokens (typ at+jwt) for one resource (RFC 8707
//   resource indicators), 1 h;
// - a confidential client (client_secret_basic) for client_credentials and
//   introspection;
// - a public client (PKCE S256) for the authorization code flow, with a
//   rotating refresh token (every refresh returns a new one; reuse of an old
//   one is refused);
// - login and consent pages of its own (oidc-provider ships none for
//   production): users whose password is checked against the same argon2id
//   hash (m=19 MiB, t=2, p=1) AuthPlane's users have, with @node-rs/argon2
//   (a Rust argon2 for Node), and a consent form that grants what the
//   consent prompt says is missing.
//
//   node server.mjs PORT CLIENT_ID CLIENT_SECRET RESOURCE [dpop]
// Users: see BENCH_OIDC_PASSWORD_HASH below. Prints
// "listening http://127.0.0.1:PORT" when ready. With `dpop`, the dPoP
// feature is on (RFC 9449: proofs checked, jti replay cache in memory, no
// nonces), for the DPoP side of the comparison.

import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import argon2 from '@node-rs/argon2';
import Provider from 'oidc-provider';

const [port, clientId, clientSecret, resource, mode] = process.argv.slice(2);
if (!resource) {
  console.error('usage: node server.mjs PORT CLIENT_ID CLIENT_SECRET RESOURCE [dpop]');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;
const OPAQUE_RESOURCE = 'https://opaque.bench.test/api';
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...privateKey.export({ format: 'jwk' }), alg: 'ES256', use: 'sig', kid: 'bench-es256' };

// `alice` and every `bench-<n>` (the first-time users of the code-flow
// load) have the same password hash, the argon2id PHC string AuthPlane's
// users get (BENCH_OIDC_PASSWORD_HASH, from `authserver util
// hash-password`), so both servers pay the same hash per login.
const passwordHash = process.env.BENCH_OIDC_PASSWORD_HASH;
if (!passwordHash?.startsWith('$argon2id$')) {
  console.error('BENCH_OIDC_PASSWORD_HASH must be an argon2id PHC string');
  process.exit(2);
}
const known = (user) => user === 'alice' || /^bench-[0-9]+$/.test(user ?? '');
const checkPassword = async (user, password) => known(user) && argon2.verify(passwordHash, password ?? '');

const provider = new Provider(issuer, {
  jwks: { keys: [jwk] },
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'ES256',
  }, {
    client_id: 'bench-public',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: ['http://127.0.0.1/callback'],
    token_endpoint_auth_method: 'none',
    id_token_signed_response_alg: 'ES256',
  }],
  scopes: ['tools/read', 'tools/write'],
  pkce: { required: () => true },
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => true,
  findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  features: {
    devInteractions: { enabled: false },
    dPoP: { enabled: mode === 'dpop' },
    clientCredentials: { enabled: true },
    introspection: { enabled: true, allowedPolicy: async () => true },
    revocation: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, indicator) => {
        // oidc-provider refuses to introspect its JWT access tokens, so the
        // introspection load asks for a token of this second resource: an
        // opaque one, looked up in memory.
        if (indicator === OPAQUE_RESOURCE) {
          return { scope: 'tools/read tools/write', audience: indicator, accessTokenTTL: 3600, accessTokenFormat: 'opaque' };
        }
        if (indicator !== resource) throw new Provider.errors.InvalidTarget();
        return {
          scope: 'tools/read tools/write',
          audience: indicator,
          accessTokenTTL: 3600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
});
provider.proxy = false;

// --- the login and consent pages ------------------------------------------
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const page = (res, html) => {
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html><html><body>${html}</body></html>`);
};
const readForm = (req) => new Promise((resolve, reject) => {
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (c) => { body += c; if (body.length > 16384) req.destroy(); });
  req.on('end', () => resolve(new URLSearchParams(body)));
  req.on('error', reject);
});

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params, session } = details;
  if (req.method === 'GET') {
    if (prompt.name === 'login') {
      return page(res, `<form method="post" action="/interaction/${uid}/login"><input type="hidden" name="uid" value="${uid}"><input name="username"><input type="password" name="password"><button>Sign in</button></form>`);
    }
    return page(res, `<p>${esc(params.client_id)} asks for ${esc(params.scope)}</p><form method="post" action="/interaction/${uid}/confirm"><input type="hidden" name="uid" value="${uid}"><button>Allow</button></form>`);
  }
  const form = await readForm(req);
  if (req.url.endsWith('/login') && prompt.name === 'login') {
    const user = form.get('username');
    if (!(await checkPassword(user, form.get('password')))) {
      return page(res, '<p>wrong username or password</p>');
    }
    return provider.interactionFinished(req, res, { login: { accountId: user } }, { mergeWithLastSubmission: false });
  }
  if (req.url.endsWith('/confirm') && prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    // What the consent prompt says is missing, as a consent page grants it.
    const { missingOIDCScope = [], missingResourceScopes = {} } = prompt.details;
    if (missingOIDCScope.length) grant.addOIDCScope(missingOIDCScope.join(' '));
    for (const [indicator, scopes] of Object.entries(missingResourceScopes)) grant.addResourceScope(indicator, scopes.join(' '));
    const grantId = await grant.save();
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }
  res.writeHead(400).end();
}

// wrk's Lua sees only the last of repeated response headers, and the
// code-flow load needs every cookie a response sets: they are copied into
// one X-Bench-Set-Cookie header too (name=value pairs joined by "; ").
function copyCookies(res) {
  const setHeader = res.setHeader.bind(res);
  res.setHeader = (name, value) => {
    if (String(name).toLowerCase() === 'set-cookie') {
      const all = (Array.isArray(value) ? value : [value]).map((c) => String(c).split(';')[0]);
      setHeader('X-Bench-Set-Cookie', all.join('; '));
    }
    return setHeader(name, value);
  };
}

const callback = provider.callback();
const server = http.createServer((req, res) => {
  copyCookies(res);
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((err) => {
      if (!res.headersSent) res.writeHead(400, { 'content-type': 'text/plain' });
      res.end(String(err?.message ?? err));
    });
    return;
  }
  callback(req, res);
});
server.listen(Number(port), '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
