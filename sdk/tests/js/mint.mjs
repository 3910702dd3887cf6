// Mints access tokens with `jose` — an implementation nobody here wrote — for
// the SDK tests, including deliberately defective ones.
//
// stdin:  {"key": {"kid": "...", "private_key_pem": "..."},
//          "tokens": [{"name": "...", "sign": "key" | "fresh" | "hs256-public" | "none" | "none-raw",
//                      "header": {...}, "claims": {...}}]}
// stdout: {"<name>": "<compact JWS>", ...}
//
// sign modes:
//   key           ES256 with the AS's key (from its key directory)
//   fresh         ES256 with a key generated here, unknown to the AS
//   hs256-public  HS256 keyed with the AS public key's SPKI PEM (alg confusion)
//   none          jose's UnsecuredJWT (alg "none", no signature)
//   none-raw      alg "none" with the given header (typ, kid kept), empty signature
import { createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { SignJWT, UnsecuredJWT, importPKCS8, generateKeyPair, base64url } from 'jose';

const input = JSON.parse(readFileSync(0, 'utf8'));
const asKey = input.key ? await importPKCS8(input.key.private_key_pem, 'ES256') : null;
const publicPem = input.key
  ? createPublicKey(input.key.private_key_pem).export({ type: 'spki', format: 'pem' })
  : null;
const fresh = await generateKeyPair('ES256');

const out = {};
for (const t of input.tokens) {
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
process.stdout.write(JSON.stringify(out));
