// Signs a user in through a server's own login and consent pages, then runs
// the authorization code flow N times for a public client (PKCE S256), for
// the refresh_token and authorization_code loads. Works for AuthPlane and for
// the oidc-provider reference alike: it follows redirects inside the issuer,
// fills the first form of each page (username/password where asked, approve
// where a consent form asks) and stops at the client's redirect URI.
//
//   node mint.mjs ISSUER AUTHORIZE_PATH TOKEN_PATH CLIENT_ID RESOURCE USER PASSWORD N
// prints `cookie: <the session cookies, as a Cookie header>` and then one
// refresh token per line, each from its own code (its own token family).
import { createHash, randomBytes } from 'node:crypto';

const [issuer, authorizePath, tokenPath, clientId, resource, user, password, n] = process.argv.slice(2);
const redirectUri = 'http://127.0.0.1/callback';
const jar = new Map(); // name -> {value, path}

function remember(res) {
  for (const line of res.headers.getSetCookie()) {
    const [pair, ...attrs] = line.split(';');
    const i = pair.indexOf('=');
    const name = pair.slice(0, i).trim();
    const value = pair.slice(i + 1).trim();
    const path = attrs.map((a) => a.trim()).find((a) => a.toLowerCase().startsWith('path='))?.slice(5) ?? '/';
    const expired = attrs.some((a) => /max-age=0\b/i.test(a.trim())) || value === '';
    if (expired) jar.delete(name); else jar.set(name, { value, path });
  }
}
const cookieFor = (url) => [...jar].filter(([, c]) => url.pathname.startsWith(c.path)).map(([k, c]) => `${k}=${c.value}`).join('; ');

async function send(url, init = {}) {
  const res = await fetch(url, { ...init, redirect: 'manual', headers: { ...(init.headers ?? {}), cookie: cookieFor(url) } });
  remember(res);
  return res;
}

function firstForm(html) {
  const form = html.match(/<form[^>]*>[\s\S]*?<\/form>/i)?.[0];
  if (!form) throw new Error(`no form in page: ${html.slice(0, 300)}`);
  const action = form.match(/action="([^"]*)"/i)[1].replace(/&amp;/g, '&');
  const fields = new URLSearchParams();
  for (const input of form.match(/<input[^>]*>/gi) ?? []) {
    const name = input.match(/name="([^"]*)"/i)?.[1];
    if (!name) continue;
    const type = input.match(/type="([^"]*)"/i)?.[1] ?? 'text';
    if (name === 'username') fields.set(name, user);
    else if (type === 'password') fields.set(name, password);
    else fields.set(name, (input.match(/value="([^"]*)"/i)?.[1] ?? '').replace(/&amp;/g, '&'));
  }
  if (/name="decision"/.test(form)) fields.set('decision', 'approve');
  return { action, fields };
}

async function code() {
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  let url = new URL(authorizePath, issuer);
  for (const [k, v] of Object.entries({ response_type: 'code', client_id: clientId, redirect_uri: redirectUri, scope: 'tools/read', state: randomBytes(8).toString('hex'), code_challenge: challenge, code_challenge_method: 'S256', resource })) url.searchParams.set(k, v);
  let res = await send(url);
  for (let step = 0; step < 20; step++) {
    if (res.status >= 300 && res.status < 400) {
      const next = new URL(res.headers.get('location'), url);
      if (next.href.startsWith(redirectUri)) {
        const c = next.searchParams.get('code');
        if (!c) throw new Error(`no code: ${next}`);
        return { code: c, verifier };
      }
      url = next;
      res = await send(url);
    } else if (res.status === 200) {
      const { action, fields } = firstForm(await res.text());
      url = new URL(action, url);
      res = await send(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: fields.toString() });
    } else {
      throw new Error(`${url.pathname}: ${res.status} ${await res.text()}`);
    }
  }
  throw new Error('too many steps');
}

const out = [];
for (let i = 0; i < Number(n); i++) {
  const { code: c, verifier } = await code();
  const res = await fetch(new URL(tokenPath, issuer), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code: c, redirect_uri: redirectUri, code_verifier: verifier, client_id: clientId, resource }),
  });
  const json = await res.json();
  if (res.status !== 200 || !json.refresh_token) throw new Error(`token ${i}: ${res.status} ${JSON.stringify(json)}`);
  out.push(json.refresh_token);
}
const session = [...jar].filter(([, c]) => c.path === '/').map(([k, c]) => `${k}=${c.value}`).join('; ');
process.stdout.write(`cookie: ${session}\n${out.join('\n')}\n`);
