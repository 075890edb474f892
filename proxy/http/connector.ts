// How the proxy opens upstream connections for undici pools: TCP (unmeshed endpoints) or mTLS with
// the endpoint's SPIFFE ID checked; no Nagle delay, keep-alive probes, connect timeouts on real
// timers (undici's own tick in ~0.5 s steps).
import net from 'node:net';
import tls, { type SecureContext } from 'node:tls';
import { errors, type buildConnector } from 'undici';
import { spiffeIdOfCert } from '../identity/identity.ts';

export function tcpConnector(timeoutMs: number): buildConnector.connector {
  return (opts, callback) => {
    const host = opts.hostname.startsWith('[') ? opts.hostname.slice(1, -1) : opts.hostname;
    const socket = net.connect({ host, port: Number(opts.port), noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000 });
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
    const timer = setTimeout(() => settle(new errors.ConnectTimeoutError(`connect to ${opts.hostname}:${opts.port} timed out after ${timeoutMs} ms`)), timeoutMs);
    socket.once('connect', onConnect);
    socket.once('error', settle);
    return socket;
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
  timeoutMs: number;
  /** The SPIFFE ID the endpoint must present. */
  expected: string;
  /** The proxy's current client context (leaf + bundle), read for every new connection. */
  context: () => SecureContext | undefined;
  /** Reports failed handshakes by reason, for metrics. */
  onHandshakeFailure?: (reason: string) => void;
}

/**
 * mTLS to a meshed endpoint: TLS 1.3, our leaf as the client certificate, the trust bundle as
 * the only CAs, and the server's SPIFFE ID checked against the one the config expects.
 */
export function tlsConnector(o: TlsConnectorOptions): buildConnector.connector {
  return (opts, callback) => {
    const host = opts.hostname.startsWith('[') ? opts.hostname.slice(1, -1) : opts.hostname;
    const secureContext = o.context();
    if (!secureContext) {
      queueMicrotask(() => callback(new NoIdentityError('this proxy has no valid certificate yet'), null));
      return undefined as unknown as net.Socket;
    }
    const socket = tls.connect({
      host,
      port: Number(opts.port),
      secureContext,
      minVersion: 'TLSv1.3' as const,
      ALPNProtocols: ['http/1.1'],
      rejectUnauthorized: true,
      // Leaves carry a SPIFFE ID, not a host name: the identity check below replaces this one.
      checkServerIdentity: () => undefined,
    });
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
    const timer = setTimeout(() => settle(new errors.ConnectTimeoutError(`TLS connect to ${opts.hostname}:${opts.port} timed out after ${o.timeoutMs} ms`)), o.timeoutMs);
    socket.once('secureConnect', onSecure);
    socket.once('error', onError);
    return socket;
  };
}
