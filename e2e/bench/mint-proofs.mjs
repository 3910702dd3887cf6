// Pre-signs N DPoP proofs (RFC 9449) for the DPoP client_credentials load:
// one ES256 key, a fresh jti each, htm POST, htu = the token endpoint, iat =
// now (both servers accept proofs for at least 60 s, longer than a run).
// node:crypto only, so the proofs come from neither server's code.
//   node mint-proofs.mjs TOKEN_ENDPOINT N > proofs.txt
import { generateKeyPairSync, sign, randomUUID } from 'node:crypto';

const [htu, count] = process.argv.slice(2);
const n = Number(count ?? 1000);
const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const { kty, crv, x, y } = publicKey.export({ format: 'jwk' });
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const header = b64({ typ: 'dpop+jwt', alg: 'ES256', jwk: { kty, crv, x, y } });
const iat = Math.floor(Date.now() / 1000);
const out = [];
for (let i = 0; i < n; i++) {
  const input = `${header}.${b64({ jti: randomUUID(), htm: 'POST', htu, iat })}`;
  const sig = sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' });
  out.push(`${input}.${sig.toString('base64url')}`);
}
process.stdout.write(out.join('\n') + '\n');
