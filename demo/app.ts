// The demo's tiny application, one process per role: a service that answers (and optionally
// calls another service through its sidecar, found via HTTP_PROXY), or a steady load generator.
// A service may also take faults on demand (`meshlet fault`): its --fault-port answers
// POST /fault {"fail":0.1,"delayMs":200,"status":503}, DELETE /fault, GET /fault. This is a demo
// app feature (an app misbehaving on purpose), not something the proxy does.
import http from 'node:http';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    name: { type: 'string', default: 'app' },
    port: { type: 'string', default: '0' },
    'fault-port': { type: 'string' },
    call: { type: 'string' },
    load: { type: 'string' },
    rps: { type: 'string', default: '50' },
  },
});

interface Fault {
  /** Share of requests answered with `status` (0..1). */
  fail: number;
  /** Added before answering, in milliseconds. */
  delayMs: number;
  status: number;
}
const NO_FAULT: Fault = { fail: 0, delayMs: 0, status: 503 };
let fault: Fault = NO_FAULT;
/** Deterministic share: every time the accumulated share passes 1, one request fails. */
let owed = 0;

function parseFault(body: string): Fault | string {
  let v: Partial<Fault>;
  try {
    v = JSON.parse(body) as Partial<Fault>;
  } catch {
    return 'body is not JSON';
  }
  const f = { fail: v.fail ?? 0, delayMs: v.delayMs ?? 0, status: v.status ?? 503 };
  if (typeof f.fail !== 'number' || f.fail < 0 || f.fail > 1) return 'fail must be a number in [0, 1]';
  if (typeof f.delayMs !== 'number' || f.delayMs < 0 || f.delayMs > 60_000) return 'delayMs must be in [0, 60000]';
  if (!Number.isInteger(f.status) || f.status < 400 || f.status > 599) return 'status must be an integer in [400, 599]';
  return f;
}

if (values['fault-port']) {
  const admin = http.createServer((req, res) => {
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body) + '\n');
    };
    if (req.url !== '/fault') return reply(404, { error: 'only /fault' });
    if (req.method === 'GET') return reply(200, fault);
    if (req.method === 'DELETE') {
      fault = NO_FAULT;
      owed = 0;
      return reply(200, fault);
    }
    if (req.method !== 'POST') return reply(405, { error: 'GET, POST or DELETE' });
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const f = parseFault(body);
      if (typeof f === 'string') return reply(400, { error: f });
      fault = f;
      owed = 0;
      reply(200, fault);
    });
  });
  admin.listen(Number(values['fault-port']), '127.0.0.1');
}

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
  const answer = (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (fault.fail > 0) {
      owed += fault.fail;
      if (owed >= 1 - 1e-9) {
        owed -= 1;
        res.writeHead(fault.status, { 'content-type': 'application/json' });
        return res.end(JSON.stringify({ service: values.name, error: 'injected fault (meshlet fault)' }));
      }
    }
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
  };
  const server = http.createServer((req, res) => {
    if (req.url === '/healthz') return res.end('ok');
    if (fault.delayMs > 0) setTimeout(() => answer(req, res), fault.delayMs);
    else answer(req, res);
  });
  server.listen(Number(values.port), '127.0.0.1');
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}
