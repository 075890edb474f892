// How the proxy opens upstream connections (connection pools and upgrades): TCP for unmeshed
// endpoints, or mTLS with the endpoint's SPIFFE ID checked; no Nagle delay, keep-alive probes,
// connect timeouts.
import net from 'node:net';
import tls, { type SecureContext } from 'node:tls';
import type { Dial } from '../http1/client.ts';
import { spiffeIdOfCert } from '../identity/identity.ts';

/** The connect (or TLS handshake) did not finish in time. */
export class ConnectTimeoutError extends Error {
  readonly code = 'MESHLET_CONNECT_TIMEOUT';
}

/** `host:port` or `[v6]:port` → the parts net.connect takes. */
export function splitAddress(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  const host = address.slice(0, i);
  return { host: host.startsWith('[') ? host.slice(1, -1) : host, port: Number(address.slice(i + 1)) };
}

/**
 * Every upstream socket (TCP or TLS) reads into this one buffer (`onread`), and each read is
 * copied out at once: the read callback runs synchronously, so no two reads share it. Node then
 * hands the bytes over without its Readable machinery (push, buffer accounting, a nextTick per
 * read), a measurable part of the proxy's CPU per request. The copy is what a stream read costs
 * anyway (Node resizes its 64 KiB read buffer to the bytes read).
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/**
 * The `onread` option: the bytes reach the socket's 'data' listeners as from a stream; pause() and
 * resume() work as on one. Set `socket` once the socket exists. The read callback lives as long as
 * the socket, so it must not close over the dialer's scope: a closure there shares its context with
 * the dial's callback, which holds the request that opened the connection (its retry-buffered body
 * included), kept alive for the whole life of a pooled connection.
 */
function sharedBufferReads(): { buffer: Buffer; callback: (n: number) => boolean; socket: net.Socket | undefined } {
  const reads = {
    buffer: READ_BUFFER,
    socket: undefined as net.Socket | undefined,
    callback: (n: number) => {
      reads.socket!.emit('data', Buffer.from(READ_BUFFER.subarray(0, n)));
      return true;
    },
  };
  return reads;
}

/** `lookup`: how the host's name is resolved, if not by dns.lookup (a passed-through host's: outbound/passthrough.ts). */
export function tcpConnector(address: string, timeoutMs: number, lookup?: net.LookupFunction): Dial {
  const { host, port } = splitAddress(address);
  return (callback) => {
    const reads = sharedBufferReads();
    const socket: net.Socket = net.connect({ host, port, noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000, onread: reads, ...(lookup ? { lookup } : {}) });
    reads.socket = socket;
    let settled = false;
    const settle = (err: Error | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('connect', onConnect);
      socket.off('error', settle);
      if (err) {
        socket.destroy();
        callback(err, null);
      } else callback(null, socket);
    };
    const onConnect = () => settle(null);
    const timer = setTimeout(() => settle(new ConnectTimeoutError(`connect to ${address} timed out after ${timeoutMs} ms`)), timeoutMs);
    socket.once('connect', onConnect);
    socket.once('error', settle);
  };
}

/** The peer presented a valid certificate for another workload. */
export class IdentityMismatchError extends Error {
  readonly code = 'MESHLET_IDENTITY_MISMATCH';
  constructor(expected: string, got: string) {
    super(`expected the endpoint to be ${expected}, it presented ${got || 'no SPIFFE ID'}`);
  }
}

/** The proxy has no certificate to present (identity not issued yet, or expired). */
export class NoIdentityError extends Error {
  readonly code = 'MESHLET_NO_IDENTITY';
}

export interface TlsConnectorOptions {
  /** host:port of the endpoint. */
  address: string;
  timeoutMs: number;
  /** The SPIFFE ID the endpoint must present. */
  expected: string;
  /** The proxy's current client context (leaf + bundle), read for every new connection. */
  context: () => SecureContext | undefined;
  /** Reports failed handshakes by reason, for metrics. */
  onHandshakeFailure?: (reason: string) => void;
}

/** Module-level, not a closure in the dialer: the socket keeps its options (see sharedBufferReads). */
const noHostNameCheck = (): undefined => undefined;

/**
 * mTLS to a meshed endpoint: TLS 1.3, our leaf as the client certificate, the trust bundle as
 * the only CAs, and the server's SPIFFE ID checked against the one the config expects.
 */
export function tlsConnector(o: TlsConnectorOptions): Dial {
  const { host, port } = splitAddress(o.address);
  return (callback) => {
    const secureContext = o.context();
    if (!secureContext) {
      queueMicrotask(() => callback(new NoIdentityError('this proxy has no valid certificate yet'), null));
      return;
    }
    // tls.connect takes `onread` as net.connect does (Node's docs); @types/node does not list it there.
    const reads = sharedBufferReads();
    const options: tls.ConnectionOptions & Pick<net.TcpNetConnectOpts, 'onread'> = {
      host,
      port,
      onread: reads,
      secureContext,
      minVersion: 'TLSv1.3' as const,
      ALPNProtocols: ['http/1.1'],
      rejectUnauthorized: true,
      // Leaves carry a SPIFFE ID, not a host name: the identity check below replaces this one.
      checkServerIdentity: noHostNameCheck,
    };
    const socket = tls.connect(options);
    reads.socket = socket;
    socket.setNoDelay(true);
    let settled = false;
    const settle = (err: Error | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('secureConnect', onSecure);
      socket.off('error', onError);
      if (err) {
        socket.destroy();
        callback(err, null);
      } else callback(null, socket);
    };
    const onError = (err: Error & { code?: string }) => {
      o.onHandshakeFailure?.(err.code ?? 'error');
      settle(err);
    };
    const onSecure = () => {
      const got = spiffeIdOfCert(socket.getPeerX509Certificate());
      if (got !== o.expected) {
        o.onHandshakeFailure?.('identity-mismatch');
        return settle(new IdentityMismatchError(o.expected, got));
      }
      socket.setKeepAlive(true, 60_000);
      settle(null);
    };
    const timer = setTimeout(() => settle(new ConnectTimeoutError(`TLS connect to ${o.address} timed out after ${o.timeoutMs} ms`)), o.timeoutMs);
    socket.once('secureConnect', onSecure);
    socket.once('error', onError);
  };
}
