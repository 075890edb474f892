// Hosts outside the mesh, passed through as Istio (outboundTrafficPolicy ALLOW_ANY, its default)
// and Linkerd do: an outbound request whose Host names no service of the config goes to that
// host itself, in plaintext, on the Host's port (80 when it names none), with the mesh's default
// retries (idempotent methods, on connect failures and 502/503/504, under the budget). No request
// or per-try timeout and no breaker: the mesh's defaults are for services it knows, and an
// unmeshed app's external call had neither (an API that answers 500 on purpose is not ejected).
// Node cannot read a connection's original destination (SO_ORIGINAL_DST), so the Host decides
// where the request goes, as it does for every request here.
//
// Not passed through (a 404 `no-route` that says why): names that only the cluster can mean,
// whose Service the config would hold (a single label such as `api`, anything under `.svc`):
// an unknown one is a typo or a Service not pushed yet; a loopback host (`localhost`, 127.0.0.0/8,
// ::1, however spelled, or a name that resolves to one: refused when dialled) or one of this
// proxy's own ports, either of which could send the proxy its own request back. Off unless
// asked (`--outbound-passthrough`); the injector asks for it in a cluster.
//
// Whether passthrough is on or not: a host that is the IP of an endpoint of the config (a Pod
// behind a Service with a cluster IP, called by its IP, on any port) goes to that Pod over mTLS
// with the endpoint's identity, on the Host's port (its proxy is told the port, meshlet-dst-port),
// labelled with that endpoint's service, with the mesh's default timeouts (not the Service's own
// policy: that is its routes'), as Linkerd and Istio reach a Pod IP they know.
//
// One pool, budget and concurrency limit per `host:port`, for the 256 hosts used last; in
// metrics every host outside the mesh is `dst_service="passthrough"` (bounded), the access log
// names the host.
import { lookup as dnsLookup } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import type { Clock, Random } from '../../api/runtime.ts';
import type { ClientFactory, EndpointState, RouteRuntime, RuntimeConfig, ServiceRuntime } from '../config/compile.ts';
import { DEFAULT_BREAKER, DEFAULT_TIMEOUTS, resolveRetry } from '../config/compile.ts';
import { ProxyError } from '../errors.ts';
import { EndpointLoad } from '../policy/balancer.ts';
import { ConcurrencyLimit } from '../policy/concurrency-limit.ts';
import { FailureAccrual } from '../policy/failure-accrual.ts';
import { RetryBudget, DEFAULT_BUDGET } from '../policy/retry-budget.ts';

/** The destination service label of every passed-through request. */
export const PASSTHROUGH = 'passthrough';

/** Connect, DNS lookup included (the proxy resolves the name, as the app would have). */
export const PASSTHROUGH_CONNECT_MS = 5000;

const MAX_HOSTS = 256;

/** Failures in a row before an ejection: never, in practice (no breaker). */
const NO_EJECTION = Number.MAX_SAFE_INTEGER;

/**
 * The port an authority names, 80 when it names none; undefined when it is not a port, or the
 * authority has a second colon outside brackets (`a.example:80:8080`: hostOf reads the host up to
 * the first, so the port must not be read from the last).
 */
export function portOfAuthority(authority: string): number | undefined {
  const colon = authority.lastIndexOf(':');
  if (colon < 0 || colon < authority.lastIndexOf(']')) return 80;
  if (!authority.startsWith('[') && authority.indexOf(':') !== colon) return undefined;
  const p = authority.slice(colon + 1);
  const n = Number(p);
  return /^\d{1,5}$/.test(p) && n >= 1 && n <= 65535 ? n : undefined;
}

const LOOPBACK = 'a loopback address is never passed through (the proxy would call itself)';

/**
 * Loopback and unspecified addresses (0.0.0.0/8, ::, which Linux connects to this host), matched
 * on the address rather than its spelling: `[0::1]` is ::1, `[::ffff:7f00:1]` is 127.0.0.1
 * (BlockList checks an IPv4-mapped address against the IPv4 rules).
 */
const LOCAL = new BlockList();
LOCAL.addSubnet('127.0.0.0', 8, 'ipv4');
LOCAL.addSubnet('0.0.0.0', 8, 'ipv4');
LOCAL.addAddress('::1', 'ipv6');
LOCAL.addAddress('::', 'ipv6');

function isLoopbackOrUnspecified(ip: string): boolean {
  const family = isIP(ip);
  return family !== 0 && LOCAL.check(ip, family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * net.connect's `lookup` for passed-through hosts: dns.lookup, one at a time per name (the
 * requests and retries that ask while it runs get its answer), refusing a name any of whose
 * addresses is loopback or unspecified. The Host's text cannot tell: a name the resolver maps to
 * 127.0.0.1 (an /etc/hosts line, `localhost.`, a public name such as localtest.me), or a spelling
 * of an address getaddrinfo parses itself (`127.1`, `0x7f.1`, `0177.0.0.1`, `0.0`). An IP
 * literal is never looked up: passthroughRefusal has refused those already.
 *
 * One at a time: dns.lookup holds one of libuv's 4 threadpool threads until getaddrinfo answers,
 * which a slow or unreachable DNS server makes seconds, past the connect timeout that gave up on
 * it: every request for that name, and each of their retries, took another thread, and a name
 * /etc/hosts answers at once (any lookup at all) queued behind them until its own connect timed out.
 */
export function externalLookup(): LookupFunction {
  /** The callbacks waiting for each lookup in flight, by name and options. */
  const lookupsInFlight = new Map<string, Array<Parameters<LookupFunction>[2]>>();
  return (hostname, options, callback) => {
    const key = `${hostname} ${JSON.stringify(options)}`;
    const waiting = lookupsInFlight.get(key);
    if (waiting) {
      waiting.push(callback);
      return;
    }
    const callbacks = [callback];
    lookupsInFlight.set(key, callbacks);
    dnsLookup(hostname, options, (err, address, family) => {
      lookupsInFlight.delete(key);
      const local = err ? undefined : (Array.isArray(address) ? address.map((a) => a.address) : [address]).find(isLoopbackOrUnspecified);
      for (const cb of callbacks) {
        if (err) cb(err, address, family);
        else if (local === undefined) cb(null, address, family);
        else cb(new ProxyError('no-route', `no service for host "${hostname}", and it is not passed through: it resolves to ${local}, ${LOOPBACK}`, { beforeRequest: true }), address, family);
      }
    });
  };
}

/** This proxy: its listening ports (filled as they bind) and its host's addresses (the Pod's IPs). */
export interface Own {
  readonly ports: ReadonlySet<number>;
  readonly addresses: BlockList;
}

/**
 * Why a request for `host` (lower-case, as hostOf gives it: an IPv6 literal in brackets) on
 * `port` is not passed through, or undefined when it may be. One of the proxy's own port numbers
 * is refused for a name (it may resolve to this Pod) and for this Pod's own IPs, not for another
 * host's IP: a meshed Prometheus scrapes other Pods' proxies on `<Pod IP>:4191`. Pure.
 */
export function passthroughRefusal(host: string, port: number | undefined, own: Own): string | undefined {
  const ip = host.startsWith('[') ? host.slice(1, -1) : host;
  const family = isIP(ip);
  if (family !== 0) {
    if (isLoopbackOrUnspecified(ip)) return LOOPBACK;
    if (port === undefined) return 'the Host names no valid port';
    if (own.ports.has(port) && own.addresses.check(ip, family === 4 ? 'ipv4' : 'ipv6')) return `${host}:${port} is this proxy's own (it would call itself)`;
    return undefined;
  } else {
    if (host === 'localhost' || host.endsWith('.localhost')) return LOOPBACK;
    if (!host.includes('.')) return 'a single-label name means a Service of the cluster, and the config has none of that name (yet)';
    if (host.endsWith('.svc') || host.includes('.svc.')) return 'a cluster Service name, and the config has no such Service (yet)';
  }
  if (port === undefined) return 'the Host names no valid port';
  if (own.ports.has(port)) return `port ${port} is one of this proxy's own, and the name may be this Pod's (the proxy would call itself)`;
  return undefined;
}

/** The services of hosts outside the mesh, made on first use; the least recently used go past MAX_HOSTS. */
export class Passthrough {
  readonly #clients: ClientFactory;
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #own: Own;
  readonly #external: boolean;
  readonly #lookup = externalLookup();
  /** `host:port` → its service; Map order is use order (oldest first). */
  readonly #services = new Map<string, ServiceRuntime>();
  /** The route of a host outside the mesh, and of a meshed Pod by IP (the mesh's default timeouts). */
  readonly #route: Omit<RouteRuntime, 'backends'>;
  readonly #meshedRoute: Omit<RouteRuntime, 'backends'>;

  /**
   * `own`: the proxy's listening ports (filled as they bind) and addresses; `external`: hosts outside the
   * mesh pass (else only an endpoint's IP does).
   */
  constructor(clients: ClientFactory, clock: Clock, random: Random, own: Own, external: boolean) {
    this.#clients = clients;
    this.#clock = clock;
    this.#random = random;
    this.#own = own;
    this.#external = external;
    this.#route = { name: PASSTHROUGH, service: PASSTHROUGH, match: undefined, timeouts: { connect: PASSTHROUGH_CONNECT_MS, perTry: 0, request: 0 }, retry: resolveRetry() };
    this.#meshedRoute = { ...this.#route, timeouts: { ...DEFAULT_TIMEOUTS } };
  }

  /**
   * The service of `host` (lower-case, no port; no service of `cfg` names it) on the authority's
   * port, or a `no-route` saying why there is none.
   */
  serviceFor(cfg: RuntimeConfig, host: string, authority: string): ServiceRuntime | ProxyError {
    const known = cfg.endpointHosts.get(host);
    const meshed = known?.identity === undefined ? undefined : known;
    if (!meshed && !this.#external) return new ProxyError('no-route', `no service for host "${host}"`);
    const port = portOfAuthority(authority);
    const refused = passthroughRefusal(host, port, this.#own);
    if (refused !== undefined) return new ProxyError('no-route', `no service for host "${host}", and it is not passed through: ${refused}`);
    const address = `${host}:${port}`;
    const key = meshed ? `${address}|${meshed.service}|${meshed.identity}` : address;
    let svc = this.#services.get(key);
    if (svc) {
      this.#services.delete(key);
      this.#services.set(key, svc);
      return svc;
    }
    svc = this.#make(address, meshed);
    this.#services.set(key, svc);
    if (this.#services.size > MAX_HOSTS) {
      const [oldest, old] = this.#services.entries().next().value!;
      this.#services.delete(oldest);
      // In-flight requests on it finish first (ClientFactory.close).
      for (const ep of old.endpoints) this.#clients.close(ep.client);
    }
    return svc;
  }

  /** A service of one endpoint: `address` outside the mesh, or a meshed endpoint's IP on another port (`meshed`: the config's endpoint). */
  #make(address: string, meshed: EndpointState | undefined): ServiceRuntime {
    const name = meshed?.service ?? PASSTHROUGH;
    const ep: EndpointState = {
      key: `${name}|${address}|${meshed?.identity ?? ''}`,
      service: name,
      address,
      identity: meshed?.identity,
      labels: meshed?.labels ?? Object.freeze({}),
      load: new EndpointLoad(this.#clock),
      accrual: new FailureAccrual({ ...DEFAULT_BREAKER, consecutiveFailures: NO_EJECTION }, this.#clock, this.#random),
      client: this.#clients.create({ address, identity: meshed?.identity, connectTimeout: meshed ? DEFAULT_TIMEOUTS.connect : PASSTHROUGH_CONNECT_MS, lookup: meshed ? undefined : this.#lookup }),
      ...(meshed ? {} : { lookup: this.#lookup }),
    };
    const routes: RouteRuntime[] = [];
    const svc: ServiceRuntime = {
      name,
      endpoints: [ep],
      ready: [ep],
      routes,
      limit: new ConcurrencyLimit(DEFAULT_BREAKER.maxInFlight, DEFAULT_BREAKER.maxPending),
      budget: new RetryBudget(DEFAULT_BUDGET, this.#clock),
    };
    routes.push(Object.freeze({ ...(meshed ? this.#meshedRoute : this.#route), service: name, backends: [Object.freeze({ service: svc, weight: 1 })] }));
    return svc;
  }

  closeAll(): void {
    for (const svc of this.#services.values()) for (const ep of svc.endpoints) this.#clients.close(ep.client);
    this.#services.clear();
  }
}
