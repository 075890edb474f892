// A connection that is not HTTP/1, on the proxy's outbound listener (real process, real clients):
// TLS from node:tls gets a handshake alert at once and /errors names its server; other first bytes
// get a 400 at once; each is counted, logged and listed as unsupported-protocol. The HTTP/2 preface
// (curl and node:http2 with prior knowledge) is not refused: the connection is served as HTTP/2
// (test/proxy/http2.test.ts covers what goes through). Only a connection's first bytes are looked at.
import t from 'tap';
import net from 'node:net';
import tls from 'node:tls';
import http2 from 'node:http2';
import { spawn } from 'node:child_process';
import { startUpstream, startProxyProcess, metricValue, type Upstream, type ProxyProcess } from '../fixtures/mesh.ts';

let up: Upstream;
let p: ProxyProcess;
t.before(async () => {
  up = await startUpstream();
  p = await startProxyProcess({ config: { version: 'v1', services: [{ name: 'up', endpoints: [{ address: up.address }] }] } });
});
t.teardown(async () => {
  await p.stop();
  await up.close();
});

interface Recent { reason: string; message: string; authority: string }
const recent = async (): Promise<Recent[]> => ((await (await fetch(`${p.adminUrl}/errors`)).json()) as { errors: Recent[] }).errors;
const settle = () => new Promise((r) => setTimeout(r, 250)); // the access log is flushed every 100 ms

/** Write `parts` (a pause between them), read until the proxy closes; what came back and how long it took. */
function exchange(parts: Array<string | Buffer>, giveUpMs = 5000): Promise<{ text: string; ms: number; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(p.outboundPort, '127.0.0.1');
    const start = performance.now();
    let text = '';
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ text, ms: performance.now() - start, closed: false });
    }, giveUpMs);
    s.on('data', (c: Buffer) => (text += c.toString('latin1')));
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ text, ms: performance.now() - start, closed: true });
    });
    s.on('error', reject);
    let i = 0;
    const next = () => {
      s.write(parts[i++]!);
      if (i < parts.length) setTimeout(next, 50);
    };
    s.once('connect', next);
  });
}

t.test('TLS to the outbound port: the handshake fails at once with an alert; /errors, metrics and the access log name the server', async (t) => {
  const started = performance.now();
  const err = await new Promise<Error & { code?: string }>((resolve, reject) => {
    const c = tls.connect({ host: '127.0.0.1', port: p.outboundPort, servername: 'api.github.com' });
    c.on('secureConnect', () => reject(new Error('the handshake succeeded')));
    c.on('error', resolve);
  });
  const ms = performance.now() - started;
  t.ok(ms < 1000, `refused in ${Math.round(ms)} ms (was: 30 s, then an HTTP 408 read as "wrong version number")`);
  t.match(err.message, /alert handshake failure/, 'the client reads a TLS alert');
  const e = (await recent()).find((x) => x.reason === 'unsupported-protocol' && x.authority === 'api.github.com');
  t.ok(e, '/errors lists it with the server name as its authority');
  t.match(e?.message, /sent TLS \(server name api\.github\.com\) to the outbound proxy, which proxies plaintext HTTP \(HTTP\/1\.1 and HTTP\/2\) only/);
  t.match(e?.message, /config\.meshlet\.io\/skip-outbound-ports/, 'and says how to let it bypass the proxy');
  await settle();
  t.ok(metricValue(await p.metrics(), 'meshlet_proxy_errors_total', { direction: 'outbound', reason: 'unsupported-protocol' }) >= 1, 'counted');
  t.ok(metricValue(await p.metrics(), 'meshlet_requests_total', { direction: 'outbound', error_reason: 'unsupported-protocol', status_code: '0' }) >= 1, 'in the request metrics, status 0: no HTTP answer went back');
  t.ok(p.stdout().split('\n').some((l) => l.includes('"error":"unsupported-protocol"') && l.includes('"authority":"api.github.com"')), 'one access-log line');
  t.equal(up.hits, 0, 'nothing reached the upstream');
});

t.test('HTTP/2 prior knowledge (curl, node:http2) is served as HTTP/2, not refused with GOAWAY', async (t) => {
  const started = performance.now();
  const curl = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const c = spawn('curl', ['-sS', '-i', '--max-time', '10', '--http2-prior-knowledge', `http://127.0.0.1:${p.outboundPort}/grpc.Service/Method`]);
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    c.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  const ms = performance.now() - started;
  t.ok(ms < 1000, `curl done in ${Math.round(ms)} ms`);
  // Was: exit 16, GOAWAY error=13 (HTTP_1_1_REQUIRED). Its :authority (127.0.0.1:port) names no service: the proxy's 404, over HTTP/2.
  t.equal(curl.code, 0, `curl succeeds (stderr: ${curl.stderr.trim()})`);
  t.match(curl.stdout, /^HTTP\/2 404/);
  t.match(curl.stdout, /meshlet-proxy-error: no-route/);

  const answer = await new Promise<{ status: unknown; reason: unknown; goaway: number | undefined }>((resolve, reject) => {
    const s = http2.connect(`http://127.0.0.1:${p.outboundPort}`);
    let goaway: number | undefined;
    s.on('goaway', (code) => (goaway = code));
    s.on('error', reject);
    const r = s.request({ ':path': '/x', ':authority': 'nowhere' }, { endStream: true });
    r.on('response', (h) => {
      s.close();
      resolve({ status: h[':status'], reason: h['meshlet-proxy-error'], goaway });
    });
    r.on('error', reject);
  });
  t.equal(answer.status, 404);
  t.equal(answer.reason, 'no-route');
  t.equal(answer.goaway, undefined, 'no GOAWAY');
  const e = await recent();
  t.notOk(e.some((x) => x.reason === 'unsupported-protocol' && x.message.includes('sent HTTP/2')), 'not listed as unsupported-protocol');
  t.ok(e.some((x) => x.reason === 'no-route' && x.authority === 'nowhere'), '/errors lists the no-route answer');
});

t.test('first bytes no HTTP/1 request starts with: 400 unsupported-protocol at once', async (t) => {
  // A PostgreSQL client's SSLRequest: 8 binary bytes and then it waits for one byte back.
  const r = await exchange([Buffer.from([0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f])]);
  t.ok(r.closed && r.ms < 1000, `answered and closed in ${Math.round(r.ms)} ms (was: nothing for 30 s)`);
  t.match(r.text, /^HTTP\/1\.1 400 Bad Request\r\n/);
  t.match(r.text, /meshlet-proxy-error: unsupported-protocol/);
  t.match(r.text, /first bytes 00 00 00 08 04 d2 16 2f/);
  const json = await exchange(['{"jsonrpc":"2.0"}\n']);
  t.ok(json.ms < 1000 && /unsupported-protocol/.test(json.text), 'JSON over raw TCP too');
});

t.test('HTTP/1 is untouched: heads split anywhere (P of POST, a CR before the line) go through; only the first bytes are looked at', async (t) => {
  const before = up.hits;
  const post = await exchange(['P', 'OST /a HTTP/1.1\r\nHost: up\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi']);
  t.match(post.text, /^HTTP\/1\.1 200 /, 'POST split after its P');
  const cr = await exchange(['\r', '\nGET /b HTTP/1.1\r\nHost: up\r\nConnection: close\r\n\r\n']);
  t.match(cr.text, /^HTTP\/1\.1 200 /, 'an empty line split after its CR');
  t.equal(up.hits - before, 2);
  // The second request on a keep-alive connection is read as HTTP/1 whatever it starts with: a plain 400 bad-request.
  const second = await exchange(['GET /c HTTP/1.1\r\nHost: up\r\n\r\n', '\x00\x01 junk\r\n\r\n']);
  t.match(second.text, /^HTTP\/1\.1 200 [\s\S]*HTTP\/1\.1 400 Bad Request\r\nmeshlet-proxy-error: bad-request\r\n/, 'not unsupported-protocol');
});
