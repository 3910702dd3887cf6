// CLI for the Rust tests: mints tokens with `jose` (see tokens.mjs).
//
// stdin:  {"key": {"kid": "...", "private_key_pem": "..."} | null,
//          "tokens": [{"name": "...", "sign": "...", "header": {...}, "claims": {...}}]}
// stdout: {"<name>": "<compact JWS>", ...}
import { readFileSync } from 'node:fs';
import { mintTokens } from './tokens.mjs';

const input = JSON.parse(readFileSync(0, 'utf8'));
process.stdout.write(JSON.stringify(await mintTokens(input.key, input.tokens)));
