// The benchmark's yardstick, not product code: a featureless proxy on Node 24 + undici (what
// ../shared/bench-notes.md calls "bare Node"). It forwards every request to one upstream over a
// keep-alive pool: no routing, TLS, metrics, logging, retries or limits. Plain JavaScript, so it
// pays neither type stripping nor a build. Usage: node bare-proxy.mjs HOST:PORT UPSTREAM_HOST:PORT
import http from 'node:http';
import { Pool } from 'undici';

const [listen, upstream] = process.argv.slice(2);
const [host, port] = listen.split(':');
const pool = new Pool(`http://${upstream}`, { connections: 64, pipelining: 1, keepAliveTimeout: 30_000 });
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'te', 'trailer']);

http
  .createServer((req, res) => {
    const headers = {};
    for (const [k, v] of Object.entries(req.headers)) if (!HOP.has(k)) headers[k] = v;
    const body = req.method === 'GET' || req.method === 'HEAD' ? null : req;
    if (body === null) req.resume();
    pool.request({ path: req.url, method: req.method, headers, body }).then(
      (r) => {
        const out = {};
        for (const [k, v] of Object.entries(r.headers)) if (!HOP.has(k)) out[k] = v;
        res.writeHead(r.statusCode, out);
        r.body.pipe(res);
      },
      (err) => {
        res.statusCode = 502;
        res.end(`bare proxy: ${err.message}\n`);
      },
    );
  })
  .listen(Number(port), host, () => process.stdout.write('listening\n'));
process.on('SIGTERM', () => process.exit(0));
