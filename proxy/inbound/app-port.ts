// Inbound stage 0: which of the app's ports a request is for. iptables REDIRECT hides the port a
// connection was meant for (Node cannot read SO_ORIGINAL_DST), so each app port after the first is
// redirected to an inbound listener of its own (MESHLET_INBOUND_PORT_MAP): the listener a
// connection arrives on names its app port, plaintext included. A meshed caller's outbound side
// also names the port it dialled in `meshlet-dst-port`; honoured only over mTLS and only for one of
// the app's ports (else 400), it takes a request to that port whichever listener it arrived on.
import type { Handler } from '../http/exchange.ts';
import { ProxyError } from '../errors.ts';

/** Set by the outbound side on mTLS requests; removed from every request a proxy forwards. */
export const DST_PORT_HEADER = 'meshlet-dst-port';

/** An inbound listener of its own for an app port after the first. */
export interface AppPortListener {
  readonly appPort: number;
  /** The proxy port it listens on (on --inbound-listen's host), where intercept.sh redirects the app port. */
  readonly proxyPort: number;
}

export interface AppPorts {
  /** The --app port, served by --inbound-listen. */
  readonly first: number;
  /** `first` as the header carries it (compared without parsing). */
  readonly firstText: string;
  /** Every app port, `first` included, in the order given. */
  readonly ports: readonly number[];
  /** --inbound-listen's port (undefined when it is off). */
  readonly inboundPort: number | undefined;
  /** The extra listeners (MESHLET_INBOUND_PORT_MAP), in the order given. */
  readonly listeners: readonly AppPortListener[];
  /** Proxy port → app port, --inbound-listen's port included: a caller that dialled a listener directly (no iptables) means its app port. */
  readonly byProxyPort: ReadonlyMap<number, number>;
  /** For error messages. */
  readonly listing: string;
}

const portOrNaN = (s: string): number => (/^[1-9][0-9]{0,4}$/.test(s) && Number(s) <= 65535 ? Number(s) : NaN);
const itemsOf = (value: string | undefined): string[] => (value ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');

/**
 * MESHLET_APP_PORTS (comma list, set by the injector beside `--app 127.0.0.1:<first port>`) and
 * MESHLET_INBOUND_PORT_MAP (comma list of APP=PROXY for app ports after the first) → the app's
 * ports and their listeners. Unset or empty: the --app port alone, on --inbound-listen. Throws on
 * anything else than ports, a list that leaves out the --app port, or a map the listeners could
 * not follow (a port mapped twice, onto an app port, onto --inbound-listen's port or onto another
 * of the proxy's own listeners in `ownPorts`, e.g. `{ '--admin-listen': 4191 }`).
 */
export function parseAppPorts(value: string | undefined, appPort: number, inboundPort: number | undefined, mapValue?: string, ownPorts: Readonly<Record<string, number | undefined>> = {}): AppPorts {
  const ports = [appPort];
  const items = itemsOf(value);
  for (const item of items) {
    const p = portOrNaN(item);
    if (Number.isNaN(p)) throw new Error(`MESHLET_APP_PORTS: "${item}" is not a TCP port (1-65535)`);
    if (!ports.includes(p)) ports.push(p);
  }
  if (items.length > 0 && !items.includes(String(appPort))) throw new Error(`MESHLET_APP_PORTS (${value}) must include the --app port ${appPort}`);
  const listeners: AppPortListener[] = [];
  const byProxyPort = new Map<number, number>(inboundPort === undefined ? [] : [[inboundPort, appPort]]);
  const map = itemsOf(mapValue);
  if (map.length > 0 && inboundPort === undefined) throw new Error('MESHLET_INBOUND_PORT_MAP needs the inbound side (--inbound-listen is off)');
  for (const item of map) {
    const eq = item.indexOf('=');
    const a = eq < 0 ? NaN : portOrNaN(item.slice(0, eq));
    const p = eq < 0 ? NaN : portOrNaN(item.slice(eq + 1));
    const bad = (why: string) => new Error(`MESHLET_INBOUND_PORT_MAP: "${item}": ${why}`);
    if (Number.isNaN(a) || Number.isNaN(p)) throw bad('expected APP_PORT=PROXY_PORT (TCP ports, 1-65535)');
    if (a === appPort) throw bad(`the --app port ${appPort} is served on --inbound-listen (port ${inboundPort})`);
    if (!ports.includes(a)) throw bad(`${a} is not in MESHLET_APP_PORTS (${ports.join(', ')})`);
    if (listeners.some((l) => l.appPort === a)) throw bad(`app port ${a} is mapped twice`);
    if (ports.includes(p)) throw bad(`${p} is an app port; the proxy cannot listen on it`);
    // Else the listen fails with EADDRINUSE blamed on the app or on the admin listener, not on the map.
    const own = Object.keys(ownPorts).find((flag) => ownPorts[flag] === p);
    if (own !== undefined) throw bad(`proxy port ${p} is already the proxy's ${own} port`);
    if (byProxyPort.has(p)) throw bad(`proxy port ${p} is already taken by ${p === inboundPort ? '--inbound-listen' : `app port ${byProxyPort.get(p)}`}`);
    listeners.push(Object.freeze({ appPort: a, proxyPort: p }));
    byProxyPort.set(p, a);
  }
  return Object.freeze({ first: appPort, firstText: String(appPort), ports: Object.freeze(ports), inboundPort, listeners: Object.freeze(listeners), byProxyPort, listing: ports.join(', ') });
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
 * header) means `own`, the app port of the listener the request arrived on (default the first);
 * a proxy listener's port means that listener's app port. Pure.
 */
export function appPortOf(value: string | undefined, ports: AppPorts, own: number = ports.first): number | ProxyError {
  if (value === undefined) return own;
  if (value === ports.firstText) return ports.first;
  const p = portNumber(value);
  if (ports.ports.includes(p)) return p;
  const viaListener = ports.byProxyPort.get(p);
  if (viaListener !== undefined) return viaListener;
  return new ProxyError('bad-request', `${DST_PORT_HEADER} "${value}" is not one of this workload's app ports (${ports.listing})`);
}

/** The header's value when the request may use it (an mTLS peer), else undefined. */
function dstPortOf(ex: Parameters<Handler>[0]): string | undefined {
  if (!ex.peer.tls) return undefined;
  return ex.head.get(DST_PORT_HEADER);
}

/**
 * A listener's pipeline entry: hands each request to the pipeline of its app port, `own` (the
 * listener's app port) unless an mTLS caller names another. The common cases (no header, the
 * listener's app port, or its proxy port as a caller that dialled the proxy directly sends it)
 * cost a property read and a string compare, no parse, no allocation.
 */
export function byAppPort(ports: AppPorts, pipelines: ReadonlyMap<number, Handler>, own: number = ports.first): Handler {
  const mine = pipelines.get(own)!;
  const ownText = String(own);
  const proxyPort = own === ports.first ? ports.inboundPort : ports.listeners.find((l) => l.appPort === own)?.proxyPort;
  const proxyText = proxyPort === undefined ? ownText : String(proxyPort);
  return (ex) => {
    const v = dstPortOf(ex);
    if (v === undefined || v === ownText || v === proxyText) return mine(ex);
    const p = appPortOf(v, ports, own);
    if (typeof p !== 'number') return Promise.reject(p);
    return p === own ? mine(ex) : pipelines.get(p)!(ex);
  };
}
