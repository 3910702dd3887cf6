// The reference server for `make bench`: node oidc-provider (pinned in
// package.json) issuing ES256 JWT access tokens (typ at+jwt) for the
// client_credentials grant with resource indicators (RFC 8707). In memory,
// no persistence at all (oidc-provider's default adapter) — as in the
// baseline quoted in issue 3.
//
//   node server.mjs PORT CLIENT_ID CLIENT_SECRET RESOURCE [dpop]
// prints "listening http://127.0.0.1:PORT" when ready. With `dpop`, the
// dPoP feature is on (RFC 9449: proofs checked, jti replay cache in memory,
// no nonces), for the DPoP side of the comparison.

import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const [port, clientId, clientSecret, resource, mode] = process.argv.slice(2);
if (!resource) {
  console.error('usage: node server.mjs PORT CLIENT_ID CLIENT_SECRET RESOURCE');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...privateKey.export({ format: 'jwk' }), alg: 'ES256', use: 'sig', kid: 'bench-es256' };

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
  }],
  scopes: ['tools/read', 'tools/write'],
  features: {
    devInteractions: { enabled: false },
    dPoP: { enabled: mode === 'dpop' },
    clientCredentials: { enabled: true },
    introspection: { enabled: false },
    revocation: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, indicator) => {
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
const server = provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
