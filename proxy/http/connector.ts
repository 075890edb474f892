// How the proxy opens upstream connections for undici pools: TCP with no Nagle delay, keep-alive
// probes, and a connect timeout on a real timer (undici's own ticks in ~0.5 s steps).
import net from 'node:net';
import { errors, type buildConnector } from 'undici';

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
