// Mints access tokens with `jose` — an implementation nobody here wrote —
// including deliberately defective ones. Used by mint.mjs (for the Rust
// tests) and by the node tests.
//
// A spec is {name, sign, header, claims}; sign modes:
//   key           ES256 with the AS's key (from its key directory)
//   fresh         ES256 with a key generated here, unknown to the AS
//   hs256-public  HS256 keyed with the AS public key's SPKI PEM (alg confusion)
//   none          jose's UnsecuredJWT (alg "none", no signature)
//   none-raw      alg "none" with the given header (typ, kid kept), empty signature
import { createPublicKey } from 'node:crypto';
import { SignJWT, UnsecuredJWT, importPKCS8, generateKeyPair, base64url } from 'jose';

/** key: {kid, private_key_pem} or null; returns {name: compact JWS}. */
export async function mintTokens(key, specs) {
  const asKey = key ? await importPKCS8(key.private_key_pem, 'ES256') : null;
  const publicPem = key ? createPublicKey(key.private_key_pem).export({ type: 'spki', format: 'pem' }) : null;
  const fresh = await generateKeyPair('ES256');
  const out = {};
  for (const t of specs) {
    const header = { ...(t.header ?? {}) };
    const claims = t.claims ?? {};
    switch (t.sign) {
      case 'key':
      case 'fresh': {
        if (!('alg' in header)) header.alg = 'ES256';
        out[t.name] = await new SignJWT(claims)
          .setProtectedHeader(header)
          .sign(t.sign === 'key' ? asKey : fresh.privateKey);
        break;
      }
      case 'hs256-public': {
        header.alg = 'HS256';
        out[t.name] = await new SignJWT(claims)
          .setProtectedHeader(header)
          .sign(new TextEncoder().encode(publicPem));
        break;
      }
      case 'none':
        out[t.name] = new UnsecuredJWT(claims).encode();
        break;
      case 'none-raw': {
        header.alg = 'none';
        const enc = (o) => base64url.encode(new TextEncoder().encode(JSON.stringify(o)));
        out[t.name] = `${enc(header)}.${enc(claims)}.`;
        break;
      }
      default:
        throw new Error(`unknown sign mode ${t.sign} for ${t.name}`);
    }
  }
  return out;
}
