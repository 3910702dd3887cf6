// The upstream identity provider for upstream.test.mjs: node oidc-provider
// (pinned in ../package.json) with its own login and consent pages
// (devInteractions: any login, any password), in memory.
//
//   node provider.mjs PORT AUTHPLANE_ISSUER SECRET
// prints "listening http://127.0.0.1:PORT" when ready.
//
// Two clients, both for AuthPlane: `authplane` (OpenID Connect, ES256 ID
// tokens) and `authplane-plain` (used as a plain OAuth 2 provider: AuthPlane
// reads the person from /me, the userinfo endpoint). A login of the form
// `name@domain` is the person's email; `name` alone gets `@corp.example`.
// A login with `+staff` is in the group `staff`.
//
// For the broker tests: access tokens live ACCESS_TTL seconds (env, default
// 3600) and every code grant gets a refresh token. Two test-only endpoints
// change the provider the way its operator would: POST /_test/revoke revokes
// every grant it issued (as if each person removed the app), and
// POST /_test/down?on=1|0 makes the token endpoint answer 503 (a provider
// outage; the one fault here that is simulated, since stopping the process
// would also lose its in-memory grants).
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const [port, authplane, secret] = process.argv.slice(2);
if (!secret) {
  console.error('usage: node provider.mjs PORT AUTHPLANE_ISSUER SECRET');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...privateKey.export({ format: 'jwk' }), alg: 'ES256', use: 'sig', kid: 'upstream-es256' };

const provider = new Provider(issuer, {
  jwks: { keys: [jwk] },
  clients: [
    {
      client_id: 'authplane',
      client_secret: secret,
      redirect_uris: [`${authplane}/ui/upstream/corp/callback`],
      grant_types: ['authorization_code', 'refresh_token'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
    },
    {
      client_id: 'authplane-plain',
      client_secret: secret,
      redirect_uris: [`${authplane}/ui/upstream/plain/callback`],
      token_endpoint_auth_method: 'client_secret_post',
      id_token_signed_response_alg: 'ES256',
    },
  ],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'groups'] },
  scopes: ['openid', 'email', 'profile', 'offline_access'],
  pkce: { required: () => true },
  ttl: { AccessToken: Number(process.env.ACCESS_TTL ?? 3600) },
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: true,
  async findAccount(_ctx, id) {
    const email = id.includes('@') ? id : `${id}@corp.example`;
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          email,
          email_verified: true,
          name: `Person ${id.split('@')[0]}`,
          groups: id.includes('+staff') ? ['staff', 'everyone'] : ['everyone'],
        };
      },
    };
  },
  features: { devInteractions: { enabled: true } },
});
provider.proxy = false;

const grants = new Set();
provider.on('refresh_token.saved', (t) => grants.add(t.grantId));
let down = false;
provider.use(async (ctx, next) => {
  if (ctx.method === 'POST' && ctx.path === '/_test/revoke') {
    for (const id of grants) {
      await provider.RefreshToken.revokeByGrantId(id);
      await provider.AccessToken.revokeByGrantId(id);
    }
    ctx.body = { revoked: grants.size };
    return;
  }
  if (ctx.method === 'POST' && ctx.path === '/_test/down') {
    down = ctx.query.on === '1';
    ctx.body = { down };
    return;
  }
  if (down && ctx.path === '/token') {
    ctx.status = 503;
    ctx.body = 'down for maintenance';
    return;
  }
  await next();
});
const server = provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
