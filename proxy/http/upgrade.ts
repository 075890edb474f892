// Upgrade (WebSocket) pass-through: after routing picks an endpoint, the request head is written
// to a fresh upstream connection (mTLS with the endpoint's identity checked when the config names
// one, like every other request) and bytes flow both ways untouched until either side closes.
import type { Socket } from 'node:net';
import type { RequestHead } from '../http1/head.ts';
import type { RuntimeConfig } from '../config/compile.ts';
import type { Peer } from './exchange.ts';
import { PROXY_ERROR_HEADER, fromUpstreamError, type ProxyError } from '../errors.ts';

export type UpgradeHandler = (req: RequestHead, socket: Socket, head: Buffer, cfg: RuntimeConfig, peer: Peer) => void;

/** Where an upgrade goes, or the proxy error that refuses it. */
export type UpgradeTarget =
  | {
      address: string;
      /** Opens the upstream connection (TCP, or mTLS checking the endpoint's identity). */
      dial: (callback: (err: Error | null, socket: Socket | null) => void) => void;
      /** Sent as `meshlet-dst-port` to a meshed endpoint's inbound proxy (inbound/app-port.ts). */
      dstPort?: string;
    }
  | { error: ProxyError };

const DST_PORT_HEADER = 'meshlet-dst-port';

/** The request head again, as received (Upgrade and Connection included), meshlet-dst-port only as this hop sets it. */
function requestHead(req: RequestHead, target: string, dstPort: string | undefined): string {
  let head = `${req.method} ${target} HTTP/1.1\r\n`;
  const raw = req.raw;
  for (let i = 0; i < raw.length; i += 2) if (req.lower[i / 2] !== DST_PORT_HEADER) head += `${raw[i]}: ${raw[i + 1]}\r\n`;
  if (dstPort !== undefined) head += `${DST_PORT_HEADER}: ${dstPort}\r\n`;
  return head + '\r\n';
}

function refuse(socket: Socket, e: ProxyError): void {
  const body = `meshlet: ${e.code}: ${e.message}\n`;
  socket.end(`HTTP/1.1 ${e.status} Error\r\n${PROXY_ERROR_HEADER}: ${e.code}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
}

export function makeUpgradeHandler(pick: (req: RequestHead, cfg: RuntimeConfig, peer: Peer) => UpgradeTarget, targetOf: (req: RequestHead) => string): UpgradeHandler {
  return (req, socket, head, cfg, peer) => {
    const t = pick(req, cfg, peer);
    if ('error' in t) return refuse(socket, t.error);
    socket.once('error', () => socket.destroy());
    t.dial((err, upstream) => {
      if (err || !upstream) return refuse(socket, fromUpstreamError(err, false));
      if (socket.destroyed) return upstream.destroy();
      upstream.write(requestHead(req, targetOf(req), t.dstPort));
      if (head.length > 0) upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
      const close = () => {
        upstream.destroy();
        socket.destroy();
      };
      upstream.once('error', close);
      upstream.once('close', close);
      socket.once('close', close);
    });
  };
}
