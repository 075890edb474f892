// Timeouts on real sockets, through a real proxy process: a per-try timeout retried for GET and
// final for POST, the whole-request deadline (504 request-timeout on time, one attempt), and the
// connect timeout against a loopback listener whose accept queue is full (SYNs are dropped).
import t from 'tap';
import { spawn } from 'node:child_process';
import net from 'node:net';
import type { ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import { startUpstream, startProxyProcess, pool, metricValue, type Upstream, type ProxyProcess } from '../fixtures/mesh.ts';

interface Answer {
  status: number;
  proxyError: string | undefined;
  body: string;
  ms: number;
}

async function send(client: Dispatcher, host: string, o: { method?: string; path?: string; body?: string } = {}): Promise<Answer> {
  const start = performance.now();
  const r = await client.request({ path: o.path ?? '/', method: (o.method ?? 'GET') as Dispatcher.HttpMethod, headers: { host }, body: o.body ?? null });
  const body = await r.body.text();
  const pe = r.headers['meshlet-proxy-error'];
  return { status: r.statusCode, proxyError: typeof pe === 'string' ? pe : undefined, body, ms: performance.now() - start };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The access log line of the one request to `path` (waits past the log's 100 ms flush). */
async function logLine(p: ProxyProcess, path: string): Promise<Record<string, unknown> | undefined> {
  await sleep(250);
  const lines = p
    .stdout()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l['path'] === path);
  return lines.length === 1 ? lines[0] : undefined;
}

/** An upstream that reads the request and never answers (held until close). */
async function hangingUpstream(answerAfterFirst = false): Promise<Upstream> {
  const held: ServerResponse[] = [];
  const u = await startUpstream((req, res, up) => {
    req.resume();
    if (answerAfterFirst && up.hits > 1) {
      res.setHeader('x-upstream', String(up.port));
      res.end(`ok from ${up.port}\n`);
    } else held.push(res);
  });
  return u;
}

/**
 * A loopback address where a TCP connect hangs: a child process listens with backlog 1 and then
 * blocks its event loop, so it never accepts; once a few filler connections fill the accept
 * queue, Linux drops further SYNs and connect() waits, as towards a blackholed host.
 */
async function blackhole(): Promise<{ address: string; close(): void } | undefined> {
  const script = `const s = require('node:net').createServer();
s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
  process.stdout.write(s.address().port + '\\n');
  setTimeout(() => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0), 50);
});`;
  const proc = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'ignore'] });
  const port = await new Promise<number>((resolve, reject) => {
    proc.stdout!.once('data', (c: Buffer) => resolve(Number(c.toString().trim())));
    proc.once('error', reject);
  });
  await sleep(100); // the child is blocked now
  const fillers: net.Socket[] = [];
  const close = () => {
    for (const s of fillers) s.destroy();
    proc.kill('SIGKILL');
  };
  for (let i = 0; i < 16; i++) {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    fillers.push(s);
    const connected = await Promise.race([new Promise<boolean>((r) => s.once('connect', () => r(true))), sleep(300).then(() => false)]);
    if (!connected) return { address: `127.0.0.1:${port}`, close };
  }
  close();
  return undefined;
}

t.test('per-try timeout: GET is retried and succeeds; POST gets 504 per-try-timeout, sent once', async (t) => {
  const slowFirst = await hangingUpstream(true);
  const hang = await hangingUpstream();
  const p = await startProxyProcess({
    config: {
      version: 'pt1',
      services: [
        { name: 'slow-first', endpoints: [{ address: slowFirst.address }], timeouts: { perTry: 200 } },
        { name: 'hang', endpoints: [{ address: hang.address }], timeouts: { perTry: 200 } },
      ],
    },
  });
  const client = pool(p.outboundUrl, 8);
  t.teardown(async () => {
    await client.close();
    await p.stop();
    await Promise.all([slowFirst.close(), hang.close()]);
  });

  const get = await send(client, 'slow-first', { path: '/get' });
  t.equal(get.status, 200, 'the retry answered');
  t.match(get.body, `ok from ${slowFirst.port}`);
  t.ok(get.ms >= 190 && get.ms < 700, `after one per-try timeout (${get.ms.toFixed(0)} ms)`);
  t.equal(slowFirst.hits, 2, 'two attempts reached the upstream');
  const m = await p.metrics();
  t.equal(metricValue(m, 'meshlet_retries_total', { dst_service: 'slow-first', reason: 'timeout' }), 1, 'retry counted with reason timeout');

  const post = await send(client, 'hang', { method: 'POST', path: '/post', body: 'order=1' });
  t.equal(post.status, 504);
  t.equal(post.proxyError, 'per-try-timeout');
  t.ok(post.ms >= 190 && post.ms < 700, `after one per-try timeout (${post.ms.toFixed(0)} ms)`);
  t.equal(hang.hits, 1, 'POST is not retried after a timeout: the upstream may be acting on it');

  const getLine = await logLine(p, '/get');
  t.match(getLine, { status: 200, attempts: 2, error: '' }, 'access log: the GET took 2 attempts');
  const postLine = await logLine(p, '/post');
  t.match(postLine, { status: 504, attempts: 1, error: 'per-try-timeout' }, 'access log: POST, 1 attempt, per-try-timeout');
});

t.test('per-try timeout counts from when a streamed upload has been sent whole, not while the client is still sending it', async (t) => {
  const up = await startUpstream();
  // A short per-try timeout; a body over 64 KiB, so it streams (not buffered first).
  const p = await startProxyProcess({ config: { version: 'up1', services: [{ name: 'api', endpoints: [{ address: up.address }], timeouts: { perTry: 300, request: 5000 } }] } });
  t.teardown(async () => {
    await p.stop();
    await up.close();
  });
  const s = net.connect(p.outboundPort, '127.0.0.1');
  s.on('error', () => {});
  await new Promise((r) => s.once('connect', r));
  let got = '';
  s.on('data', (c: Buffer) => (got += c.toString('latin1')));
  s.write('PUT /upload HTTP/1.1\r\nhost: api\r\ncontent-length: 100000\r\n\r\n');
  // 10 pieces over ~1 s: three times the per-try timeout.
  for (let i = 0; i < 10; i++) {
    s.write('x'.repeat(10_000));
    await sleep(100);
  }
  const deadline = Date.now() + 3000;
  while (!got.includes('\r\n\r\n') && Date.now() < deadline) await sleep(20);
  s.destroy();
  t.match(got, /^HTTP\/1\.1 200 /, `the upload is served: ${JSON.stringify(got.split('\r\n')[0])}`);
  t.notMatch(got, /per-try-timeout/);
  t.equal(metricValue(await p.metrics(), 'meshlet_endpoint_ejections_total'), 0);
});

t.test('whole-request timeout: 504 request-timeout on time, after one attempt', async (t) => {
  const hang = await hangingUpstream();
  const p = await startProxyProcess({
    config: { version: 'rt1', services: [{ name: 'hang', endpoints: [{ address: hang.address }], timeouts: { request: 300 } }] },
  });
  const client = pool(p.outboundUrl, 8);
  t.teardown(async () => {
    await client.close();
    await p.stop();
    await hang.close();
  });
  const answers: Answer[] = [];
  for (let i = 0; i < 5; i++) answers.push(await send(client, 'hang', { path: `/r${i}` }));
  t.ok(answers.every((a) => a.status === 504 && a.proxyError === 'request-timeout'), '504 request-timeout every time');
  const ms = answers.map((a) => a.ms);
  t.ok(ms.every((x) => x >= 290 && x < 600), `within about 300 ms: ${ms.map((x) => x.toFixed(0)).join(', ')}`);
  t.equal(hang.hits, 5, 'no attempt is started once the deadline is reached');
  const line = await logLine(p, '/r0');
  t.match(line, { status: 504, attempts: 1, error: 'request-timeout' }, 'access log: reason and one attempt');
});

t.test('whole-request timeout while a retryable body is still arriving: 504, nothing sent', async (t) => {
  const u = await startUpstream();
  const p = await startProxyProcess({
    config: { version: 'sb1', services: [{ name: 'slow-body', endpoints: [{ address: u.address }], timeouts: { request: 300 } }] },
  });
  t.teardown(async () => {
    await p.stop();
    await u.close();
  });
  // A PUT announcing 100 bytes that sends 10 and stalls: the retry stage buffers it for replay.
  const sock = net.connect(p.outboundPort, '127.0.0.1');
  t.teardown(() => sock.destroy());
  const start = performance.now();
  sock.write('PUT /slow-body HTTP/1.1\r\nhost: slow-body\r\ncontent-length: 100\r\n\r\n0123456789');
  let head = '';
  const answered = await Promise.race([
    new Promise<boolean>((r) => sock.on('data', (c: Buffer) => {
      head += c.toString();
      if (head.includes('\r\n\r\n')) r(true);
    })),
    sleep(1500).then(() => false),
  ]);
  const ms = performance.now() - start;
  // The rest of the body arrives after the deadline: it must not start an attempt then.
  sock.write('x'.repeat(90));
  await sleep(200);
  t.ok(answered, 'answered while the body is still missing');
  t.match(head, /^HTTP\/1\.1 504 /, '504');
  t.match(head, /meshlet-proxy-error: request-timeout/i, 'request-timeout');
  t.ok(ms < 700, `at about the 300 ms deadline (${ms.toFixed(0)} ms)`);
  t.equal(u.hits, 0, 'no attempt is sent after the deadline');
});

t.test('connect timeout against a blackhole: 504 connect-timeout, retried even for POST', async (t) => {
  const hole = await blackhole();
  if (!hole) {
    t.plan(0, 'could not fill the accept queue of a loopback listener on this kernel');
    return;
  }
  const healthy = await startUpstream();
  const p = await startProxyProcess({
    config: {
      version: 'ct1',
      services: [
        { name: 'hole', endpoints: [{ address: hole.address }], timeouts: { connect: 200 }, retry: { attempts: 1 } },
        { name: 'hole-retried', endpoints: [{ address: hole.address }], timeouts: { connect: 200 } },
      ],
    },
  });
  const client = pool(p.outboundUrl, 8);
  t.teardown(async () => {
    await client.close();
    await p.stop();
    await healthy.close();
    hole.close();
  });
  const once = await send(client, 'hole', { path: '/once' });
  t.equal(once.status, 504);
  t.equal(once.proxyError, 'connect-timeout');
  t.ok(once.ms >= 190, `not before the connect timeout (${once.ms.toFixed(0)} ms)`);
  t.ok(once.ms < 2000, `bounded (${once.ms.toFixed(0)} ms)`);
  t.ok(once.ms < 450, `within about the 200 ms connect timeout (${once.ms.toFixed(0)} ms)`);
  // A connect timeout sent nothing, so it is retried (3 attempts by default), even for POST.
  const retried = await send(client, 'hole-retried', { method: 'POST', path: '/retried', body: 'x=1' });
  t.equal(retried.status, 504);
  t.equal(retried.proxyError, 'connect-timeout');
  const line = await logLine(p, '/retried');
  t.match(line, { status: 504, attempts: 3, error: 'connect-timeout' }, 'access log: 3 attempts, connect-timeout');
  const m = await p.metrics();
  t.equal(metricValue(m, 'meshlet_retries_total', { dst_service: 'hole-retried', reason: 'connect-failed' }), 2);
});
