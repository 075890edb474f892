// Upgrade (WebSocket) pass-through: after routing picks an endpoint, the request head is written
// to a fresh upstream connection and bytes flow both ways untouched until either side closes.
import net, { type Socket } from 'node:net';
import type { IncomingMessage } from 'node:http';
import type { RuntimeConfig } from '../config/compile.ts';
import type { Peer } from './exchange.ts';
import { PROXY_ERROR_HEADER, type ProxyError } from '../errors.ts';

export type UpgradeHandler = (req: IncomingMessage, socket: Socket, head: Buffer, cfg: RuntimeConfig, peer: Peer) => void;

/** Where an upgrade goes, or the proxy error that refuses it. */
export type UpgradeTarget = { address: string } | { error: ProxyError };

function splitAddress(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(address.slice(i + 1)) };
}

/** Write the request head again, as received (the Upgrade and Connection headers included). */
function requestHead(req: IncomingMessage, target: string): string {
  let head = `${req.method} ${target} HTTP/1.1\r\n`;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) head += `${raw[i]}: ${raw[i + 1]}\r\n`;
  return head + '\r\n';
}

export function makeUpgradeHandler(pick: (req: IncomingMessage, cfg: RuntimeConfig, peer: Peer) => UpgradeTarget, targetOf: (req: IncomingMessage) => string): UpgradeHandler {
  return (req, socket, head, cfg, peer) => {
    const t = pick(req, cfg, peer);
    if ('error' in t) {
      const body = `meshlet: ${t.error.code}: ${t.error.message}\n`;
      socket.end(`HTTP/1.1 ${t.error.status} Error\r\n${PROXY_ERROR_HEADER}: ${t.error.code}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
      return;
    }
    const { host, port } = splitAddress(t.address);
    const upstream = net.connect({ host, port, noDelay: true });
    upstream.once('connect', () => {
      upstream.write(requestHead(req, targetOf(req)));
      if (head.length > 0) upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    const close = () => {
      upstream.destroy();
      socket.destroy();
    };
    upstream.once('error', (err: Error & { code?: string }) => {
      if (!upstream.readyState || upstream.connecting) {
        const body = `meshlet: connect-refused: ${err.message}\n`;
        socket.end(`HTTP/1.1 502 Bad Gateway\r\n${PROXY_ERROR_HEADER}: connect-refused\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
      } else close();
    });
    socket.once('error', close);
    upstream.once('close', close);
    socket.once('close', close);
  };
}
