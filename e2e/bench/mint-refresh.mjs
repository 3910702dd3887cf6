// Pre-mints N refresh tokens for the refresh_token benchmark, each from its
// own authorization-code flow (its own token family), for the public client:
// one sign-in, consent remembered, then authorize → code → token N times.
//   node mint-refresh.mjs N > tokens.txt   (uses the E2E_* variables)
import { CookieJar, authorizeThroughForms, authorizeUrl, env, pkce, postForm } from '../oauth/js/lib/harness.mjs';

const n = Number(process.argv[2] ?? 64);
const jar = new CookieJar();
const redirectUri = 'http://127.0.0.1:1/callback';
const out = [];
for (let i = 0; i < n; i++) {
  const { verifier, challenge } = await pkce();
  const url = authorizeUrl({ response_type: 'code', client_id: env.publicClient, redirect_uri: redirectUri, scope: 'tools/read', state: `s${i}`, code_challenge: challenge, code_challenge_method: 'S256', resource: env.resource });
  const { location } = await authorizeThroughForms(url, { jar });
  const code = location.searchParams.get('code');
  const r = await postForm('/oauth/token', { grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier, client_id: env.publicClient, resource: env.resource });
  if (r.status !== 200 || !r.json.refresh_token) throw new Error(`mint ${i}: ${r.status} ${r.text}`);
  out.push(r.json.refresh_token);
}
process.stdout.write(out.join('\n') + '\n');
