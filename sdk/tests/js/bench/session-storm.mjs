// Measures the example MCP server's memory (RSS, from /proc/<pid>/status)
// under a bounded storm of MCP `initialize` calls against 127.0.0.1, with
// the real authserver and tokens minted by jose. A measurement, not a test:
// run it by hand or through sdk/examples/mcp-server/measure-sessions.sh.
//
//   node bench/session-storm.mjs [--count 6000] [--principals 1]
//        [--concurrency 8] [--max-rss-mb 64] [--unbounded] [--idle-secs 0]
//        [--rounds 1]
//
// --principals N spreads the storm over N tokens (sub storm-0..N-1), which
// exercises the global cap once N x per-principal exceeds it. --unbounded
// lifts the session caps (what the example did before issue 20), to compare.
// --idle-secs S starts the server with a session idle timeout of S seconds
// and measures again after 2 x S + 20 s of quiet; with --rounds R the storm
// then repeats (R storms in all), to see freed sessions' memory reused.
// Exit status 1 when the last RSS exceeds --max-rss-mb.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { freePort, startAuthServer, startMcpServer } from '../harness.mjs';
import { mintTokens } from '../tokens.mjs';

const { values: opt } = parseArgs({
  options: {
    count: { type: 'string', default: '6000' },
    principals: { type: 'string', default: '1' },
    concurrency: { type: 'string', default: '8' },
    'max-rss-mb': { type: 'string', default: '64' },
    unbounded: { type: 'boolean', default: false },
    'idle-secs': { type: 'string', default: '0' },
    rounds: { type: 'string', default: '1' },
  },
});
const count = Number(opt.count);
const principals = Number(opt.principals);
const concurrency = Number(opt.concurrency);
const maxRssMb = Number(opt['max-rss-mb']);
const idleSecs = Number(opt['idle-secs']);
const rounds = Math.max(1, Number(opt.rounds));

const rssMb = (pid) => {
  const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
  return Math.round((kb / 1024) * 10) / 10;
};

const port = await freePort();
const as = await startAuthServer({ resource: `http://localhost:${port}/mcp` });
const args = opt.unbounded ? ['--sessions-per-principal', '100000000', '--max-sessions', '100000000'] : [];
if (idleSecs > 0) args.push('--session-idle-timeout', String(idleSecs));
const mcp = await startMcpServer({ issuer: as.issuer, port, args });
const endpoint = `http://127.0.0.1:${port}/mcp`; // loopback only

try {
  const key = as.keys()[0];
  const now = Math.floor(Date.now() / 1000);
  const tokens = Object.values(
    await mintTokens(
      key,
      Array.from({ length: principals }, (_, i) => ({
        name: `p${i}`,
        sign: 'key',
        header: { typ: 'at+jwt', kid: key.kid },
        claims: {
          iss: as.issuer, sub: `storm-${i}`, aud: [mcp.url], client_id: 'dev-client', scope: 'tools/read',
          iat: now, exp: now + 3600, jti: `storm-${i}`,
        },
      })),
    ),
  );
  const body = JSON.stringify({
    jsonrpc: '2.0', id: 1, method: 'initialize',
    params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'storm', version: '1' } },
  });

  const samples = [{ initializes: 0, rss_mb: rssMb(mcp.pid) }];
  const statuses = {};
  let done = 0;
  const step = Math.max(1, Math.floor(count / 6));
  const started = Date.now();
  for (let round = 1; round <= rounds; round++) {
    let next = 0;
    async function worker() {
      while (next < count) {
        const i = next++;
        const res = await fetch(endpoint, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${tokens[i % tokens.length]}`,
            'content-type': 'application/json',
            accept: 'application/json, text/event-stream',
          },
          body,
        });
        await res.body?.cancel();
        statuses[res.status] = (statuses[res.status] ?? 0) + 1;
        done++;
        if (done % step === 0) samples.push({ round, initializes: done, rss_mb: rssMb(mcp.pid) });
      }
    }
    await Promise.all(Array.from({ length: concurrency }, worker));
    await new Promise((ok) => setTimeout(ok, 1000));
    samples.push({ round, initializes: done, after: '1 s quiet', rss_mb: rssMb(mcp.pid) });
    if (idleSecs > 0) {
      await new Promise((ok) => setTimeout(ok, (2 * idleSecs + 20) * 1000));
      samples.push({ round, initializes: done, after: `${2 * idleSecs + 20} s idle`, rss_mb: rssMb(mcp.pid) });
    }
  }
  const secs = (Date.now() - started) / 1000;

  const last = samples[samples.length - 1].rss_mb;
  const summary = {
    count, principals, concurrency, rounds, unbounded: opt.unbounded, seconds: secs, statuses, samples,
    max_rss_mb: Math.max(...samples.map((s) => s.rss_mb)), bound_mb: maxRssMb,
    log_lines: mcp.lines.length,
  };
  console.log(JSON.stringify(summary, null, 2));
  if (last > maxRssMb) {
    console.error(`RSS ${last} MB exceeds the bound of ${maxRssMb} MB`);
    process.exitCode = 1;
  }
} finally {
  mcp.stop();
  as.stop();
}
