// HTTP/2 client sessions, one per endpoint, every request to it a stream on that one connection:
// h2 over mTLS (ALPN h2, the endpoint's SPIFFE ID checked) to a meshed endpoint's proxy, h2c
// (prior knowledge) to an unmeshed endpoint or the local app. Guarantees: a session is handed out
// only once connected (and for mTLS, once the peer's identity matched); a closed, failed or
// GOAWAY'd session is replaced by the next request; an idle one closes; an old one is retired
// gracefully (in-flight streams finish) so new connections pick up a renewed certificate.
import type { ClientHttp2Session } from 'node:http2';
import net from 'node:net';
import tls, { type SecureContext } from 'node:tls';
import { ConnectTimeoutError, IdentityMismatchError, NoIdentityError, splitAddress } from '../http/connector.ts';
import { spiffeIdOfCert } from '../identity/identity.ts';
import { nodeHttp2 } from './node-http2.ts';

export interface H2SessionOptions {
  /** The proxy's current client context (leaf + bundle); undefined: no identity (mTLS endpoints fail). */
  context: () => SecureContext | undefined;
  /** Monotonic milliseconds. */
  now: () => number;
  /** Reports failed handshakes by reason, for metrics. */
  onHandshakeFailure?: (reason: string) => void;
  /** A session without streams for this long is closed (default 30 s, as the HTTP/1 pools). */
  idleMs?: number;
  /** A session older than this takes no new streams (default 10 min). */
  maxAgeMs?: number;
}

/** The endpoint's proxy finished the handshake without choosing h2: it proxies HTTP/1.1 only. */
export class NoHttp2Error extends Error {
  readonly code = 'MESHLET_NO_HTTP2';
}

interface Entry {
  readonly ready: Promise<ClientHttp2Session>;
  readonly born: number;
  session: ClientHttp2Session | undefined;
}

const noHostNameCheck = (): undefined => undefined;

export class H2Sessions {
  readonly #o: H2SessionOptions;
  readonly #entries = new Map<string, Entry>();

  constructor(o: H2SessionOptions) {
    this.#o = o;
  }

  /** Open sessions (connected or connecting). */
  get size(): number {
    return this.#entries.size;
  }

  /** The session to `address`: mTLS expecting `expected` when given, h2c otherwise; `lookup` resolves its name, if not dns.lookup (outbound/passthrough.ts). */
  get(address: string, expected: string | undefined, connectTimeoutMs: number, lookup?: net.LookupFunction): Promise<ClientHttp2Session> {
    const key = expected === undefined ? address : `${address} ${expected}`;
    const e = this.#entries.get(key);
    if (e) {
      const s = e.session;
      if (s === undefined) return e.ready;
      if (!s.closed && !s.destroyed && this.#o.now() - e.born < (this.#o.maxAgeMs ?? 600_000)) return e.ready;
      this.#entries.delete(key);
      if (!s.closed) s.close();
    }
    const entry: Entry = { ready: this.#connect(key, address, expected, connectTimeoutMs, lookup), born: this.#o.now(), session: undefined };
    this.#entries.set(key, entry);
    entry.ready.then(
      (s) => (entry.session = s),
      () => {
        if (this.#entries.get(key) === entry) this.#entries.delete(key);
      },
    );
    return entry.ready;
  }

  /** Close every session: GOAWAY, in-flight streams finish. */
  close(): void {
    for (const e of this.#entries.values()) e.ready.then((s) => s.close(), () => {});
    this.#entries.clear();
  }

  /** Destroy every session now. */
  destroy(): void {
    for (const e of this.#entries.values()) e.ready.then((s) => s.destroy(), () => {});
    this.#entries.clear();
  }

  #connect(key: string, address: string, expected: string | undefined, timeoutMs: number, lookup: net.LookupFunction | undefined): Promise<ClientHttp2Session> {
    return new Promise((resolve, reject) => {
      const { host, port } = splitAddress(address);
      let socket: net.Socket;
      let checked: Error | undefined;
      if (expected === undefined) socket = net.connect({ host, port, noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000, ...(lookup ? { lookup } : {}) });
      else {
        const secureContext = this.#o.context();
        if (!secureContext) {
          reject(new NoIdentityError('this proxy has no valid certificate yet'));
          return;
        }
        const t = tls.connect({ host, port, secureContext, minVersion: 'TLSv1.3', ALPNProtocols: ['h2'], rejectUnauthorized: true, checkServerIdentity: noHostNameCheck });
        t.setNoDelay(true);
        // Before the session's own listener: a wrong peer never sees the preface or a request.
        t.once('secureConnect', () => {
          const got = spiffeIdOfCert(t.getPeerX509Certificate());
          if (got !== expected) {
            this.#o.onHandshakeFailure?.('identity-mismatch');
            checked = new IdentityMismatchError(expected, got);
          } else if (t.alpnProtocol !== 'h2') checked = new NoHttp2Error(`the proxy of ${address} did not accept HTTP/2 (ALPN h2); it may run a meshlet older than HTTP/2 support`);
          if (checked) t.destroy(checked);
          else t.setKeepAlive(true, 60_000);
        });
        socket = t;
      }
      const session = nodeHttp2().connect(`${expected === undefined ? 'http' : 'https'}://${address}`, { createConnection: () => socket });
      let settled = false;
      const fail = (err: Error & { code?: string }) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (expected !== undefined && !checked && err.code !== 'ECONNREFUSED') this.#o.onHandshakeFailure?.(err.code ?? 'error');
        session.destroy();
        if (err.code === 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL') {
          // The endpoint's TLS listener offers http/1.1 only (a meshlet older than HTTP/2 support).
          const e = new Error(`the proxy of ${address} does not accept HTTP/2 (no ALPN h2; it may run a meshlet older than HTTP/2 support): upgrade it, or make this client use HTTP/1.1`) as Error & { code?: string };
          e.code = err.code;
          reject(e);
          return;
        }
        reject(checked ?? err);
      };
      const timer = setTimeout(() => fail(new ConnectTimeoutError(`${expected === undefined ? '' : 'TLS '}connect to ${address} timed out after ${timeoutMs} ms`)), timeoutMs);
      session.once('error', fail);
      session.once('connect', () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        session.off('error', fail);
        // Errors after connect end the session; its streams see them. The next request opens another.
        session.on('error', () => {});
        const forget = () => {
          const e = this.#entries.get(key);
          if (e?.session === session) this.#entries.delete(key);
        };
        session.once('close', forget);
        session.once('goaway', forget);
        session.setTimeout(this.#o.idleMs ?? 30_000, () => session.close());
        resolve(session);
      });
    });
  }
}
