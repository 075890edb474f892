// Inbound stage 0: which of the app's ports a request is for. iptables REDIRECT hides the port a
// connection was meant for (Node cannot read SO_ORIGINAL_DST), so a meshed caller's outbound side
// names the port it dialled in `meshlet-dst-port`. Honoured only over mTLS and only for one of the
// app's ports (else 400); plaintext and headerless requests go to the first app port (--app).
import type { Handler } from '../http/exchange.ts';
import { ProxyError } from '../errors.ts';

/** Set by the outbound side on mTLS requests; removed from every request a proxy forwards. */
export const DST_PORT_HEADER = 'meshlet-dst-port';

export interface AppPorts {
  /** The --app port: plaintext and headerless requests go here. */
  readonly first: number;
  /** `first` as the header carries it (compared without parsing). */
  readonly firstText: string;
  /** Every app port, `first` included, in the order given. */
  readonly ports: readonly number[];
  /** The proxy's own inbound port: a caller that dialled the proxy directly (no iptables) means `first`. */
  readonly inboundPort: number | undefined;
  /** For error messages. */
  readonly listing: string;
}

/**
 * MESHLET_APP_PORTS (comma list, set by the injector beside `--app 127.0.0.1:<first port>`) →
 * the app's ports. Unset or empty: the --app port alone. Throws on anything else than ports, or a
 * list that leaves out the --app port.
 */
export function parseAppPorts(value: string | undefined, appPort: number, inboundPort: number | undefined): AppPorts {
  const ports = [appPort];
  const items = (value ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const item of items) {
    const p = /^[1-9][0-9]{0,4}$/.test(item) ? Number(item) : NaN;
    if (!(p >= 1 && p <= 65535)) throw new Error(`MESHLET_APP_PORTS: "${item}" is not a TCP port (1-65535)`);
    if (!ports.includes(p)) ports.push(p);
  }
  if (items.length > 0 && !items.includes(String(appPort))) throw new Error(`MESHLET_APP_PORTS (${value}) must include the --app port ${appPort}`);
  return Object.freeze({ first: appPort, firstText: String(appPort), ports: Object.freeze(ports), inboundPort, listing: ports.join(', ') });
}

/** A decimal port without sign or leading zero, parsed without allocating; NaN otherwise. */
function portNumber(s: string): number {
  if (s.length === 0 || s.length > 5 || s.charCodeAt(0) === 48 /* 0 */) return NaN;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return NaN;
    n = n * 10 + d;
  }
  return n;
}

/**
 * The app port a `meshlet-dst-port` value names, or the 400 that refuses it. `undefined` (no
 * header) and the proxy's own inbound port mean the first app port. Pure.
 */
export function appPortOf(value: string | undefined, ports: AppPorts): number | ProxyError {
  if (value === undefined || value === ports.firstText) return ports.first;
  const p = portNumber(value);
  if (p === ports.first || p === ports.inboundPort) return ports.first;
  if (ports.ports.includes(p)) return p;
  return new ProxyError('bad-request', `${DST_PORT_HEADER} "${value}" is not one of this workload's app ports (${ports.listing})`);
}

/** The header's value when the request may use it (an mTLS peer), else undefined. */
function dstPortOf(ex: Parameters<Handler>[0]): string | undefined {
  if (!ex.peer.tls) return undefined;
  return ex.head.get(DST_PORT_HEADER);
}

/**
 * The inbound pipeline's entry: hands each request to the pipeline of its app port. The common
 * case (no header, or the first port's value) costs a property read and no allocation.
 */
export function byAppPort(ports: AppPorts, pipelines: ReadonlyMap<number, Handler>): Handler {
  const first = pipelines.get(ports.first)!;
  return (ex) => {
    const v = dstPortOf(ex);
    if (v === undefined) return first(ex);
    const p = appPortOf(v, ports);
    if (typeof p !== 'number') return Promise.reject(p);
    return p === ports.first ? first(ex) : pipelines.get(p)!(ex);
  };
}
