// Inbound accept, before HTTP: looks at the first byte of a connection. A TLS ClientHello goes
// through mTLS (a client certificate chaining to the trust bundle is required; the peer's SPIFFE
// ID is recorded on the socket); plaintext is let in only where the port is permissive (or the
// proxy runs without identity). Everything else is refused at the handshake.
import net from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import type { Peer } from '../http/exchange.ts';
import { spiffeIdOfCert, type TlsMaterial } from '../identity/identity.ts';

const PEER = Symbol('meshlet.peer');
const PLAINTEXT: Peer = Object.freeze({ identity: '', tls: false });

/** The peer recorded for a connection (plaintext when none was). */
export function peerOf(socket: net.Socket): Peer {
  return (socket as net.Socket & { [PEER]?: Peer })[PEER] ?? PLAINTEXT;
}

export interface AcceptOptions {
  /** Serves HTTP/1.1 on a connection let in (the inbound listener). */
  http: { accept(socket: net.Socket): void };
  /** Serves HTTP/2 on an mTLS connection whose client chose ALPN h2; absent: only http/1.1 is offered. */
  http2?: { accept(socket: net.Socket, peer: Peer): void };
  /** The current TLS material; undefined while the proxy has no certificate. */
  material: () => TlsMaterial | undefined;
  /** Identity is configured: plaintext only where permissive. False: plaintext mode. */
  identityEnabled: boolean;
  /** Whether plaintext is accepted now (the app port is permissive in the config in force). */
  permissive: () => boolean;
  onRefused: (reason: string) => void;
  /** How long a connection may take to send its first byte and, for TLS, finish the handshake (default 10 s). */
  handshakeTimeoutMs?: number;
}

const TLS_HANDSHAKE = 0x16;
export const HANDSHAKE_TIMEOUT_MS = 10_000;

/** A connection's remote end, the same on the raw socket and on the TLS socket that wraps it. */
const remoteKey = (s: net.Socket): string => `${s.remoteAddress}|${s.remotePort}`;

export class InboundAcceptor {
  readonly server: net.Server;
  readonly #o: AcceptOptions;
  readonly #tls: tls.Server;
  #context: TlsMaterial | undefined;
  /** Raw sockets still in their TLS handshake, by remote end: the TLS server hands back only its own socket. */
  readonly #handshaking = new Map<string, { socket: net.Socket; timer: NodeJS.Timeout }>();

  constructor(o: AcceptOptions) {
    this.#o = o;
    // A client that offers h2 (a meshlet proxy's HTTP/2 sessions) gets it; one that offers http/1.1, or nothing, gets HTTP/1.1.
    this.#tls = tls.createServer({ requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3', ALPNProtocols: o.http2 ? ['h2', 'http/1.1'] : ['http/1.1'] });
    this.#tls.on('secureConnection', (s: TLSSocket) => {
      this.#handshakeDone(s);
      const identity = spiffeIdOfCert(s.getPeerX509Certificate());
      if (!identity) {
        o.onRefused('no-spiffe-id');
        s.destroy();
        return;
      }
      const peer: Peer = Object.freeze({ identity, tls: true });
      (s as TLSSocket & { [PEER]?: Peer })[PEER] = peer;
      if (s.alpnProtocol === 'h2' && o.http2) o.http2.accept(s, peer);
      else o.http.accept(s);
    });
    this.#tls.on('tlsClientError', (err: Error & { code?: string }, s: TLSSocket) => {
      o.onRefused((s as TLSSocket & { authorizationError?: string }).authorizationError ?? err.code ?? 'handshake-error');
      // The TLS socket is gone; the connection under it is not closed with it.
      this.#handshakeDone(s)?.destroy();
    });
    this.server = net.createServer({ noDelay: true }, (socket) => this.#accept(socket));
  }

  /** The handshake of the connection under `s` ended (either way): stop its deadline; its raw socket. */
  #handshakeDone(s: net.Socket): net.Socket | undefined {
    const key = remoteKey(s);
    const h = this.#handshaking.get(key);
    if (!h) return undefined;
    clearTimeout(h.timer);
    this.#handshaking.delete(key);
    return h.socket;
  }

  #accept(socket: net.Socket): void {
    socket.once('error', () => socket.destroy());
    // A connection that sends nothing, or never finishes its TLS handshake, is closed (it would hold a socket forever).
    const key = remoteKey(socket);
    const timer = setTimeout(() => {
      this.#handshaking.delete(key);
      this.#o.onRefused('handshake-timeout');
      socket.destroy();
    }, this.#o.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS);
    this.#handshaking.set(key, { socket, timer });
    socket.once('close', () => {
      if (this.#handshaking.get(key)?.socket === socket) this.#handshakeDone(socket);
    });
    socket.once('data', (chunk: Buffer) => {
      socket.pause();
      socket.unshift(chunk);
      if (chunk[0] === TLS_HANDSHAKE && this.#o.identityEnabled) {
        const m = this.#o.material();
        if (!m) {
          this.#handshakeDone(socket);
          this.#o.onRefused('no-certificate');
          socket.destroy();
          return;
        }
        if (m !== this.#context) {
          // A renewal: new handshakes use the new leaf and bundle; established ones keep theirs.
          this.#tls.setSecureContext(m.options);
          this.#context = m;
        }
        this.#tls.emit('connection', socket);
        return;
      }
      this.#handshakeDone(socket);
      if (this.#o.identityEnabled && !this.#o.permissive()) {
        this.#o.onRefused(chunk[0] === TLS_HANDSHAKE ? 'tls-without-identity' : 'plaintext-on-strict-port');
        socket.destroy();
        return;
      }
      this.#o.http.accept(socket);
      socket.resume();
    });
  }

  listen(host: string, port: number): Promise<net.AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => resolve(this.server.address() as net.AddressInfo));
    });
  }

  close(): void {
    this.server.close();
    this.#tls.close();
  }
}
