// Tests for proxy/http1/client-hello.ts and first-bytes.ts: the server name of real ClientHellos
// (from node:tls), every truncation and hostile lengths read safely, and what a connection's first
// bytes are (TLS, the HTTP/2 preface, bytes no request line starts with, or maybe HTTP/1).
import { test } from 'tap';
import net from 'node:net';
import tls from 'node:tls';
import { serverNameOf } from '../../../proxy/http1/client-hello.ts';
import { detectForeign, http2Refusal, TLS_HANDSHAKE_FAILURE } from '../../../proxy/http1/first-bytes.ts';
import { seededRandom } from '../../../api/runtime.ts';

/** The first bytes a real TLS client sends (its ClientHello), captured on a plain TCP server. */
async function clientHello(o: tls.ConnectionOptions): Promise<Buffer> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const got = new Promise<Buffer>((resolve) => server.once('connection', (s) => s.once('data', (c: Buffer) => { resolve(c); s.destroy(); })));
  const c = tls.connect({ host: '127.0.0.1', port, ...o });
  c.on('error', () => {});
  const hello = await got;
  c.destroy();
  server.close();
  return hello;
}

/** A hand-made ClientHello record whose extensions are `ext` (type, body) pairs. */
function hello(ext: Array<[number, Buffer]>, o: { recordLen?: number; helloLen?: number; extLen?: number } = {}): Buffer {
  const exts = Buffer.concat(ext.map(([type, body]) => Buffer.concat([u16(type), u16(body.length), body])));
  const body = Buffer.concat([Buffer.from([3, 3]), Buffer.alloc(32, 7), Buffer.from([0]), u16(2), Buffer.from([0x13, 0x01]), Buffer.from([1, 0]), u16(o.extLen ?? exts.length), exts]);
  const hs = Buffer.concat([Buffer.from([1]), u24(o.helloLen ?? body.length), body]);
  return Buffer.concat([Buffer.from([0x16, 3, 1]), u16(o.recordLen ?? hs.length), hs]);
}
const u16 = (n: number): Buffer => Buffer.from([n >> 8, n & 0xff]);
const u24 = (n: number): Buffer => Buffer.from([n >> 16, (n >> 8) & 0xff, n & 0xff]);
/** A server_name extension body listing `names` as (type, bytes). */
const sni = (...names: Array<[number, Buffer]>): Buffer => {
  const list = Buffer.concat(names.map(([type, n]) => Buffer.concat([Buffer.from([type]), u16(n.length), n])));
  return Buffer.concat([u16(list.length), list]);
};

test('the server name of real ClientHellos: TLS 1.3 and 1.2, with and without ALPN; none without SNI', async (t) => {
  t.equal(serverNameOf(await clientHello({ servername: 'api.github.com' })), 'api.github.com');
  t.equal(serverNameOf(await clientHello({ servername: 'Kubernetes.Default.svc', maxVersion: 'TLSv1.2', ALPNProtocols: ['h2', 'http/1.1'] })), 'kubernetes.default.svc', 'lower-cased');
  // node:tls sends no SNI for an IP address (RFC 6066 §3 forbids literal addresses there).
  t.equal(serverNameOf(await clientHello({})), undefined);
});

test('every truncation of a real ClientHello reads safely: the name or nothing, never a wrong one', async (t) => {
  const whole = await clientHello({ servername: 'api.github.com' });
  let named = 0;
  for (let n = 0; n <= whole.length; n++) {
    const got = serverNameOf(whole.subarray(0, n));
    if (got !== undefined) named++;
    if (got !== undefined && got !== 'api.github.com') t.fail(`prefix ${n}: ${got}`);
  }
  t.ok(named > 0, 'found once the extension is in');
  t.equal(serverNameOf(whole.subarray(0, 40)), undefined, 'not before');
});

test('hostile lengths and names: nothing is read beyond a stated length or the bytes given', async (t) => {
  const name = (s: string) => sni([0, Buffer.from(s)]);
  t.equal(serverNameOf(hello([[0, name('ok.example')]])), 'ok.example', 'the hand-made one parses');
  t.equal(serverNameOf(hello([[10, Buffer.from([0, 2, 0, 29])], [0, name('second.example')]])), 'second.example', 'after another extension');
  t.equal(serverNameOf(hello([[0, name('ok.example')]], { recordLen: 60 })), undefined, 'the record ends before the extension');
  t.equal(serverNameOf(hello([[0, name('ok.example')]], { recordLen: 0xffff })), 'ok.example', 'a record length past the bytes: read what is here');
  t.equal(serverNameOf(hello([[0, name('ok.example')]], { helloLen: 0xffffff })), 'ok.example', 'a handshake length past the record: bounded by it');
  t.equal(serverNameOf(hello([[0, name('ok.example')]], { helloLen: 20 })), undefined, 'a handshake shorter than its fields');
  t.equal(serverNameOf(hello([[0, name('ok.example')]], { extLen: 3 })), undefined, 'extensions shorter than one');
  t.equal(serverNameOf(hello([[0, name('ok.example')]], { extLen: 0xffff })), 'ok.example', 'extensions longer than the bytes: bounded');
  const longName = Buffer.concat([u16(0xfff0), Buffer.from([0]), u16(0xff00), Buffer.from('a.b')]);
  t.equal(serverNameOf(hello([[0, longName]])), undefined, 'a name longer than its list');
  for (const bad of ['evil\r\nx-injected: 1', 'a b.example', 'x'.repeat(254), '', 'caf\u00e9.example', 'a/b']) {
    t.equal(serverNameOf(hello([[0, sni([0, Buffer.from(bad, 'latin1')])]])), undefined, `not a DNS name: ${JSON.stringify(bad.slice(0, 20))}`);
  }
  t.equal(serverNameOf(hello([[0, sni([1, Buffer.from('other.type')], [0, Buffer.from('host.name')])]])), 'host.name', 'an unknown name type is skipped');
  t.equal(serverNameOf(hello([])), undefined, 'no extensions');
  t.equal(serverNameOf(Buffer.from([0x16, 3, 1, 0, 4, 2, 0, 0, 0])), undefined, 'a handshake that is not a ClientHello');
  t.equal(serverNameOf(Buffer.from([0x17, 3, 3, 0, 0])), undefined, 'not a handshake record');
  // Seeded garbage after a valid header, and random bytes in a valid one: never throws.
  const random = seededRandom(9113);
  const base = hello([[0, name('fuzz.example')]]);
  for (let i = 0; i < 5000; i++) {
    const b = Buffer.from(base);
    for (let k = 0; k < 1 + Math.floor(random() * 4); k++) b[5 + Math.floor(random() * (b.length - 5))] = Math.floor(random() * 256);
    const got = serverNameOf(b.subarray(0, Math.floor(random() * (b.length + 1))));
    if (got !== undefined && !/^[a-z0-9._-]{1,253}$/.test(got)) t.fail(`fuzz ${i}: ${JSON.stringify(got)}`);
  }
  t.pass('5000 mutations read without a throw or a name outside [a-z0-9._-]');
});

test('first bytes: TLS waits for its whole first record, then names the server', async (t) => {
  const whole = await clientHello({ servername: 'api.github.com' });
  t.equal(detectForeign(whole.subarray(0, 1), false), 'more');
  t.equal(detectForeign(whole.subarray(0, 4), false), 'more');
  t.equal(detectForeign(whole.subarray(0, whole.length - 1), false), 'more', 'the record is not whole yet');
  t.same(detectForeign(whole, false), { protocol: 'tls', serverName: 'api.github.com' });
  t.same(detectForeign(whole.subarray(0, 20), true), { protocol: 'tls', serverName: undefined }, 'final: TLS without the name');
  t.same(detectForeign(Buffer.from([0x16, 3, 1, 0xff, 0xff, 1]), false), { protocol: 'tls', serverName: undefined }, 'a record longer than TLS allows is not waited for');
  t.same(detectForeign(Buffer.from([0x16, 0x41]), false), { protocol: 'unknown', first: '16 41' });
});

test('first bytes: the HTTP/2 preface, HTTP/1 methods, and bytes no request line starts with', async (t) => {
  const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
  t.same(detectForeign(preface, false), { protocol: 'http2' });
  t.same(detectForeign(preface.subarray(0, 16), false), { protocol: 'http2' }, 'its request line is enough');
  t.equal(detectForeign(preface.subarray(0, 5), false), 'more');
  t.equal(detectForeign(preface.subarray(0, 5), true), undefined, 'final: left to the HTTP/1 parser');
  t.equal(detectForeign(Buffer.from('P'), false), 'more', 'P may start the preface or POST');
  for (const h1 of ['POST / HTTP/1.1\r\n', 'PRIX / HTTP/1.1', 'PATCH /', 'GET /', 'OPTIONS * HTTP/1.1', 'M-SEARCH']) t.equal(detectForeign(Buffer.from(h1), false), undefined, `maybe HTTP/1: ${JSON.stringify(h1)}`);
  t.equal(detectForeign(Buffer.from('\r'), false), 'more', 'a CR may start an empty line');
  t.same(detectForeign(Buffer.from([0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f, 9, 9]), false), { protocol: 'unknown', first: '00 00 00 08 04 d2 16 2f' }, 'PostgreSQL SSLRequest, 8 bytes shown');
  for (const b of ['{"a":1}', ' GET / HTTP/1.1', '\nGET /', '\r\x00', '\x80']) t.equal((detectForeign(Buffer.from(b, 'latin1'), false) as { protocol: string }).protocol, 'unknown', `not HTTP/1: ${JSON.stringify(b)}`);
  t.equal(detectForeign(Buffer.alloc(0), false), undefined);
});

test('the answers: a fatal handshake_failure alert; SETTINGS then GOAWAY(HTTP_1_1_REQUIRED) with debug text', async (t) => {
  t.same([...TLS_HANDSHAKE_FAILURE], [0x15, 3, 3, 0, 2, 2, 40]);
  const b = http2Refusal('use HTTP/1.1\u00e9' + 'x'.repeat(400));
  t.same([...b.subarray(0, 9)], [0, 0, 0, 4, 0, 0, 0, 0, 0], 'an empty SETTINGS frame first (RFC 9113 §3.4)');
  const len = (b[9]! << 16) | (b[10]! << 8) | b[11]!;
  t.equal(b[12], 7, 'GOAWAY');
  t.equal(b.readUInt32BE(14), 0, 'stream 0');
  t.equal(b.readUInt32BE(18), 0, 'last stream 0: nothing processed');
  t.equal(b.readUInt32BE(22), 0x0d, 'HTTP_1_1_REQUIRED');
  t.equal(len, 8 + 256, 'debug data cut to 256 bytes');
  t.equal(b.length, 9 + 9 + len);
  t.equal(b.toString('latin1', 26, 39), 'use HTTP/1.1?', 'non-ASCII replaced');
});
