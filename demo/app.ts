// The demo's tiny application, one process per role: a service that answers (and optionally
// calls another service through its sidecar, found via HTTP_PROXY), or a steady load generator.
import http from 'node:http';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    name: { type: 'string', default: 'app' },
    port: { type: 'string', default: '0' },
    call: { type: 'string' },
    load: { type: 'string' },
    rps: { type: 'string', default: '50' },
  },
});

if (values.load) {
  // Steady load: `rps` requests per second, bounded in flight, until SIGTERM.
  const target = values.load;
  const interval = 1000 / Math.max(1, Number(values.rps));
  let inFlight = 0;
  const t = setInterval(() => {
    if (inFlight >= 100) return;
    inFlight++;
    // node:http's global agent honours HTTP_PROXY (NODE_USE_ENV_PROXY=1): the load generator is
    // meshed too, its requests leave through its own sidecar.
    const req = http.get(target, (res) => {
      res.resume();
      res.on('end', () => inFlight--);
    });
    req.setTimeout(20_000, () => req.destroy());
    req.on('error', () => inFlight--);
  }, interval);
  process.on('SIGTERM', () => {
    clearInterval(t);
    process.exit(0);
  });
} else {
  const server = http.createServer((req, res) => {
    if (req.url === '/healthz') return res.end('ok');
    if (!values.call) {
      res.setHeader('content-type', 'application/json');
      return res.end(JSON.stringify({ service: values.name, path: req.url }));
    }
    // NODE_USE_ENV_PROXY=1 makes node:http's global agent send this through the sidecar's
    // outbound listener (HTTP_PROXY); a custom Agent would bypass it. The trace context is passed on, as an instrumented app would.
    const tp = req.headers['traceparent'];
    const out = http.get(values.call, { headers: tp ? { traceparent: String(tp) } : {} }, (r) => {
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () => {
        res.writeHead(r.statusCode ?? 502, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ service: values.name, upstream: Buffer.concat(chunks).toString() }));
      });
    });
    out.setTimeout(20_000, () => out.destroy(new Error('timed out')));
    out.on('error', (err: Error) => {
      res.writeHead(502);
      res.end(JSON.stringify({ service: values.name, error: err.message }));
    });
  });
  server.listen(Number(values.port), '127.0.0.1');
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}
