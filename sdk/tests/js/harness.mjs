// Starts the real authserver and the example MCP server on loopback for the
// node tests, each with its own temp directory, and stops them afterwards.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '../../..');
const targetDir = process.env.CARGO_TARGET_DIR ?? join(root, 'target');
export const AUTHSERVER_BIN = process.env.AUTHSERVER_BIN ?? join(targetDir, 'debug', 'authserver');
export const MCP_SERVER_BIN = process.env.MCP_SERVER_BIN ?? join(targetDir, 'debug', 'mcp-server');

export async function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/** Spawns `bin args`, collecting stdout lines; resolves once a line matches `ready`. */
function start(bin, args, ready, env = {}) {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
  const lines = [];
  let buf = '';
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`${bin} did not start:\n${lines.join('\n')}`)), 60_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`${bin} exited with ${code}:\n${lines.join('\n')}`));
    });
    child.stdout.on('data', (d) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        lines.push(line);
        if (ready.test(line)) {
          clearTimeout(timer);
          ok({ child, lines, line });
        }
      }
    });
  });
}

const field = (line, name) => line.split(' ').find((kv) => kv.startsWith(`${name}=`))?.slice(name.length + 1);

/** The authserver with a fresh database and key directory. */
export async function startAuthServer({ resource }) {
  const dir = mkdtempSync(join(tmpdir(), 'authplane-sdk-test-'));
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const keyDir = join(dir, 'keys');
  const config = join(dir, 'authserver.yaml');
  writeFileSync(
    config,
    [
      'server:',
      `  issuer: ${issuer}`,
      `  listen: 127.0.0.1:${port}`,
      'admin:',
      '  listen: 127.0.0.1:0',
      'database:',
      `  url: sqlite://${join(dir, 'a.db')}?mode=rwc`,
      'signing:',
      '  key_store: file',
      `  key_dir: ${keyDir}`,
      'log:',
      '  level: info',
      '  format: logfmt',
      'resources:',
      `  - resource: ${resource}`,
      '    name: Example MCP server',
      '    scopes: [tools/read, tools/write]',
      '    default_scopes: [tools/read]',
      'clients:',
      '  - client_id: dev-client',
      '    client_name: Local development client',
      '    token_endpoint_auth_method: none',
      '    redirect_uris: [http://127.0.0.1/callback, http://localhost/callback]',
      '    grant_types: [authorization_code, refresh_token]',
      'users:',
      '  # username alice, password dev-password (as in config/dev.yaml)',
      '  - username: alice',
      '    id: user-42',
      '    name: Alice Developer',
      '    email: alice@example.com',
      '    password_hash: "$argon2id$v=19$m=19456,t=2,p=1$6uTrjYOtWifOY0wuBhC/hg$qzOAcLgTAPCSsP4U9QA2L8J3iHM3OE+r5R/KC5LLRRY"',
      '',
    ].join('\n'),
  );
  const { child, lines, line } = await start(AUTHSERVER_BIN, ['--config', config], /msg="authserver started"/);
  return {
    issuer,
    admin: `http://${field(line, 'admin')}`,
    keyDir,
    lines,
    /** The key files of the AS's key directory ({kid, private_key_pem, ...}), oldest first. */
    keys() {
      return readdirSync(keyDir)
        .filter((f) => f.endsWith('.json'))
        .map((f) => JSON.parse(readFileSync(join(keyDir, f), 'utf8')))
        .sort((a, b) => a.created_at - b.created_at);
    },
    stop() {
      child.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The example MCP server (sdk/examples/mcp-server) pointed at `issuer`; `args` are extra flags. */
export async function startMcpServer({ issuer, port, args = [] }) {
  const resource = `http://localhost:${port}/mcp`;
  const { child, lines } = await start(
    MCP_SERVER_BIN,
    ['--listen', `127.0.0.1:${port}`, '--resource', resource, '--issuer', issuer, ...args],
    /msg="mcp server started"/,
    { RUST_LOG: 'info,rmcp=warn' },
  );
  return {
    url: resource,
    origin: `http://localhost:${port}`,
    pid: child.pid,
    lines,
    stop() {
      child.kill();
    },
  };
}

/**
 * A loopback HTTP server serving the AS's JWKS that can be switched to hang:
 * it then accepts requests and never answers (a real fault, not a stub).
 */
export async function startHangableJwks(issuer) {
  const port = await freePort();
  const held = [];
  let hang = false;
  const server = createHttpServer(async (req, res) => {
    if (hang) {
      held.push(res); // accepted, never answered
      return;
    }
    try {
      const upstream = await fetch(`${issuer}/.well-known/jwks.json`);
      res.writeHead(upstream.status, { 'content-type': 'application/json' });
      res.end(await upstream.text());
    } catch {
      res.writeHead(502);
      res.end();
    }
  });
  await new Promise((ok) => server.listen(port, '127.0.0.1', ok));
  return {
    url: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    setHang(v) {
      hang = v;
    },
    stop() {
      for (const r of held) r.destroy?.();
      server.closeAllConnections?.();
      server.close();
    },
  };
}
