// HTTP/2 upstreams that answer what HTTP/2 framing carries but Node will not send on: a scripted
// h2c server (real sockets, frames written by hand) behind a real proxy process. The caller gets
// the proxy's 502 with the reason, and the proxy goes on serving (it exited on the first one).
import t from 'tap';
import net from 'node:net';
import http2 from 'node:http2';
import { startProxyProcess, metricValue, type ProxyProcess } from '../fixtures/mesh.ts';

/** One HTTP/2 frame: 24-bit length, type, flags, stream id, payload. */
function frame(type: number, flags: number, id: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(id, 5);
  return Buffer.concat([h, payload]);
}

/** A header block of literal fields without indexing (HPACK §6.2.2), no Huffman: names and values under 127 bytes. */
const block = (fields: ReadonlyArray<readonly [string, string]>): Buffer =>
  Buffer.concat(fields.flatMap(([n, v]) => [Buffer.from([0, n.length]), Buffer.from(n), Buffer.from([v.length]), Buffer.from(v)]));

/**
 * An h2c server that answers its requests, in the order they come (the test sends one at a time),
 * with these header blocks (END_STREAM on each); past the last, 404.
 */
async function scriptedUpstream(answers: ReadonlyArray<ReadonlyArray<readonly [string, string]>>): Promise<{ port: number; close(): Promise<void> }> {
  let next = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.write(frame(4, 0, 0, Buffer.alloc(0)));
    let buf = Buffer.alloc(0);
    let preface = false;
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!preface) {
        if (buf.length < 24) return;
        buf = buf.subarray(24);
        preface = true;
      }
      while (buf.length >= 9 && buf.length >= 9 + buf.readUIntBE(0, 3)) {
        const len = buf.readUIntBE(0, 3);
        const [type, flags, id] = [buf[3]!, buf[4]!, buf.readUInt32BE(5) & 0x7fffffff];
        buf = buf.subarray(9 + len);
        if (type === 4 && (flags & 1) === 0) s.write(frame(4, 1, 0, Buffer.alloc(0)));
        if (type === 1) s.write(frame(1, 0x4 | 0x1, id, block(answers[next++] ?? [[':status', '404']])));
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** One h2c request through the proxy: status and meshlet-proxy-error, or what went wrong. */
async function get(port: number, path: string): Promise<string> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  try {
    return await new Promise<string>((resolve) => {
      const r = session.request({ ':path': path, ':authority': 'odd.shop' }, { endStream: true });
      r.on('response', (h) => resolve(`${h[':status']} ${h['meshlet-proxy-error'] ?? '-'}`));
      r.on('error', (e: Error) => resolve(`error ${e.message}`));
      r.on('close', () => resolve(`closed (code ${r.rstCode})`));
      r.resume();
    });
  } finally {
    session.destroy();
  }
}

let upstream: Awaited<ReturnType<typeof scriptedUpstream>>;
let proxy: ProxyProcess;

t.before(async () => {
  upstream = await scriptedUpstream([
    // nghttp2 takes any three digits as a status; Node sends only 100-599.
    [[':status', '999']],
    // A repeated singleton field: HTTP/2 carries it, Node sends content-type once only.
    [[':status', '200'], ['content-type', 'text/plain'], ['content-type', 'text/html']],
    [[':status', '204'], ['x-fine', 'yes']],
  ]);
  proxy = await startProxyProcess({ config: { version: 'u1', services: [{ name: 'odd.shop', endpoints: [{ address: `127.0.0.1:${upstream.port}` }] }] }, workload: 'web' });
});
t.teardown(async () => {
  await proxy?.stop();
  await upstream?.close();
});

t.test("a response whose headers Node will not send on: the caller gets the proxy's 502, the proxy stays up", async (t) => {
  t.equal(await get(proxy.outboundPort, '/status-999'), '502 upstream-error', 'status 999');
  t.equal(await get(proxy.outboundPort, '/two-content-types'), '502 upstream-error', 'two content-types');
  t.equal(proxy.proc.exitCode, null, 'the proxy is still running');
  t.equal(await get(proxy.outboundPort, '/fine'), '204 -', 'and answers the next request from the same upstream');
  t.equal(metricValue(await proxy.metrics(), 'meshlet_proxy_errors_total', { direction: 'outbound', reason: 'upstream-error' }), 2, 'both counted as proxy errors');
});
