// proxy/http/connector.ts with the connection pool over real loopback sockets (TCP, and mTLS with
// our own leaves): a pooled connection idle after its first request keeps nothing of that request.
// Its read callback lives as long as the socket; when it closed over the dialer's scope it kept the
// request that opened the connection (its retry-buffered body included) for the connection's life.
import t from 'tap';
import net from 'node:net';
import tls from 'node:tls';
import v8 from 'node:v8';
import vm from 'node:vm';
import { setImmediate as tick } from 'node:timers/promises';
import { initCa, trustBundle } from '../../../control-plane/ca/bundle.ts';
import { tcpConnector, tlsConnector } from '../../../proxy/http/connector.ts';
import { Pool, type Dial, type ResponseHandler } from '../../../proxy/http1/client.ts';
import { id, workload } from '../ca/fixtures/pki.ts';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/** An HTTP/1.1 upstream that answers every request `200 ok` on a connection it keeps open. */
function serve(server: net.Server): Promise<string> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`127.0.0.1:${(server.address() as net.AddressInfo).port}`)));
}
const answer = (s: net.Socket) => {
  let buf = '';
  s.on('data', (c: Buffer) => {
    buf += c.toString('latin1');
    // Requests here have a body of known length after the head; answer once it is all in.
    const end = buf.indexOf('\r\n\r\n');
    const length = Number(/content-length: (\d+)/i.exec(buf)?.[1] ?? 0);
    if (end >= 0 && buf.length >= end + 4 + length) {
      buf = '';
      s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    }
  });
  s.on('error', () => {});
};

/**
 * One POST through `pool`; resolves once the response ended (the connection is back in
 * the pool, idle) with a WeakRef to the request's body and one to its handler.
 */
function oneRequest(pool: Pool): Promise<{ body: WeakRef<Buffer>; handler: WeakRef<ResponseHandler> }> {
  return new Promise((resolve, reject) => {
    const body = Buffer.alloc(64 * 1024, 'a');
    const handler: ResponseHandler = {
      head: () => {},
      data: () => true,
      end: () => setImmediate(() => resolve({ body: new WeakRef(body), handler: new WeakRef(handler) })),
      error: reject,
    };
    pool.request({ method: 'POST', head: `POST / HTTP/1.1\r\nhost: up\r\ncontent-length: ${body.length}\r\n\r\n`, body }, handler);
  });
}

async function collected(refs: { body: WeakRef<Buffer>; handler: WeakRef<ResponseHandler> }): Promise<{ body: boolean; handler: boolean }> {
  // A WeakRef read in a job keeps its target for that job: collect across a few turns.
  for (let i = 0; i < 3; i++) {
    await tick();
    gc();
  }
  return { body: refs.body.deref() === undefined, handler: refs.handler.deref() === undefined };
}

const poolOn = (dial: Dial) => new Pool(dial, { now: () => performance.now(), keepAliveTimeoutMs: 30_000, keepAliveMaxTimeoutMs: 60_000, silenceTimeoutMs: 300_000 });

t.test('TCP: an idle pooled connection does not keep the request that opened it', async (t) => {
  const server = net.createServer(answer);
  const address = await serve(server);
  const pool = poolOn(tcpConnector(address, 1000));
  t.teardown(() => {
    pool.destroy();
    server.close();
  });
  const refs = await oneRequest(pool);
  t.same(await collected(refs), { body: true, handler: true }, 'its body and handler were collected while the connection stays open in the pool');
  const open = await new Promise<number>((resolve) => server.getConnections((_e, n) => resolve(n)));
  t.equal(open, 1, 'the connection is still open (idle in the pool)');
});

t.test('mTLS: an idle pooled connection does not keep the request that opened it', async (t) => {
  const ca = initCa({ now: Date.now() });
  const api = workload(ca, id('shop', 'api'));
  const web = workload(ca, id('shop', 'web'));
  const server = tls.createServer({ key: api.keyPem, cert: api.certChainPem, ca: trustBundle(ca), requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' }, answer);
  const address = await serve(server);
  const context = tls.createSecureContext({ key: web.keyPem, cert: web.certChainPem, ca: trustBundle(ca), minVersion: 'TLSv1.3' });
  const pool = poolOn(tlsConnector({ address, timeoutMs: 2000, expected: api.identity.uri, context: () => context }));
  t.teardown(() => {
    pool.destroy();
    server.close();
  });
  const refs = await oneRequest(pool);
  t.same(await collected(refs), { body: true, handler: true }, 'its body and handler were collected while the connection stays open in the pool');
});
