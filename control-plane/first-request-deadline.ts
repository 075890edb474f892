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

export function firstRequestDeadline(server: https.Server, ms: number): void {
  // By remote end: the server hands 'secureConnection' and 'request' only the TLS socket, never the
  // accepted one. The deadline destroys the accepted socket, which closes the connection either way.
  const pending = new Map<string, { socket: Socket; timer: NodeJS.Timeout }>();
  const arm = (key: string, socket: Socket): void => {
    clearTimeout(pending.get(key)?.timer);
    pending.set(key, { socket, timer: setTimeout(() => socket.destroy(), ms) });
  };
  const disarm = (key: string): void => {
    clearTimeout(pending.get(key)?.timer);
    pending.delete(key);
  };
  server.on('connection', (socket: Socket) => {
    const key = remoteKey(socket);
    arm(key, socket);
    socket.once('close', () => {
      if (pending.get(key)?.socket === socket) disarm(key);
    });
  });
  server.on('secureConnection', (tlsSocket: Socket) => {
    const key = remoteKey(tlsSocket);
    const accepted = pending.get(key)?.socket;
    if (accepted) arm(key, accepted); // handshake done: now `ms` for the first request
  });
  server.on('request', (req: IncomingMessage) => disarm(remoteKey(req.socket)));
}
