// Before any request, on an HTTPS listener (Certify, the injector webhook): a connection must finish
// its TLS handshake within `ms` of being accepted, then start its first request within `ms` more.
//
// Node's headersTimeout only counts once a request has begun, and its TLS handshake timeout is 120 s:
// without this a client that completes the handshake and sends nothing is kept forever. Later requests
// on a kept-alive connection are bounded by the server's keepAliveTimeout/headersTimeout as before.

import type { IncomingMessage } from 'node:http';
import type https from 'node:https';
import type { Socket } from 'node:net';

/** A connection's remote end: the same on the accepted TCP socket and on the TLS socket Node wraps it in. */
const remoteKey = (s: Socket): string => `${s.remoteAddress}|${s.remotePort}`;

/** What a connection the deadline closed had not done in time. */
export type DeadlinePhase = 'handshake' | 'request';

/**
 * The error the deadline destroys a connection with, so the server's 'tlsClientError' (during the
 * handshake) or 'clientError' (after it) sees what happened instead of Node's "socket hang up".
 */
export class FirstRequestDeadlineError extends Error {
  readonly code = 'ERR_FIRST_REQUEST_DEADLINE';
  readonly phase: DeadlinePhase;
  constructor(phase: DeadlinePhase, ms: number) {
    super(`closed: no ${phase === 'handshake' ? 'TLS handshake' : 'request'} within ${ms / 1000} s`);
    this.phase = phase;
  }
}

/** `onClose`: told once per connection the deadline closes (never for one that made a request in time). */
export function firstRequestDeadline(server: https.Server, ms: number, onClose?: (e: FirstRequestDeadlineError, remote: string | undefined) => void): void {
  // By remote end: the server hands 'secureConnection' and 'request' only the TLS socket, never the
  // accepted one. The deadline destroys the accepted socket, which closes the connection either way.
  const pending = new Map<string, { socket: Socket; timer: NodeJS.Timeout }>();
  const arm = (key: string, socket: Socket, phase: DeadlinePhase): void => {
    clearTimeout(pending.get(key)?.timer);
    const expire = () => {
      const e = new FirstRequestDeadlineError(phase, ms);
      onClose?.(e, socket.remoteAddress);
      socket.destroy(e);
    };
    pending.set(key, { socket, timer: setTimeout(expire, ms) });
  };
  const disarm = (key: string): void => {
    clearTimeout(pending.get(key)?.timer);
    pending.delete(key);
  };
  server.on('connection', (socket: Socket) => {
    const key = remoteKey(socket);
    arm(key, socket, 'handshake');
    socket.once('close', () => {
      if (pending.get(key)?.socket === socket) disarm(key);
    });
  });
  server.on('secureConnection', (tlsSocket: Socket) => {
    const key = remoteKey(tlsSocket);
    const accepted = pending.get(key)?.socket;
    if (accepted) arm(key, accepted, 'request'); // handshake done: now `ms` for the first request
  });
  server.on('request', (req: IncomingMessage) => disarm(remoteKey(req.socket)));
}
