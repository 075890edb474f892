// The composition root: builds clock, random source, registry, tracer, config store, the two
// pipelines and the admin server, and hands each part what it needs. Nothing global.
import { Pool, type Dial } from './http1/client.ts';
import type { RequestHead } from './http1/head.ts';
import type { Clock, Random } from '../api/runtime.ts';
import type { PodLabels } from '../api/pod-labels.ts';
import { DEFAULT_TIMEOUTS, StateRegistry, type ClientFactory } from './config/compile.ts';
import { ConfigStore } from './config/store.ts';
import { FileConfigSource } from './config/file-source.ts';
import { StreamConfigSource } from './config/stream-source.ts';
import { Listener, targetOf, type Workload } from './http/listener.ts';
import { DST_OVERRIDE_HEADER } from './http/headers.ts';
import { compose, type Exchange } from './http/exchange.ts';
import { Deadlines } from './http/deadlines.ts';
import { makeUpgradeHandler, type UpgradeTarget } from './http/upgrade.ts';
import { tcpConnector, tlsConnector } from './http/connector.ts';
import { IdentityManager, type CertifyTransport, type WallClock } from './identity/identity.ts';
import { InboundAcceptor, peerOf } from './inbound/accept.ts';
import { ProxyError } from './errors.ts';
import { destination, destinationOf } from './outbound/destination.ts';
import { Passthrough, PASSTHROUGH } from './outbound/passthrough.ts';
import { route } from './outbound/route.ts';
import { retry } from './outbound/retry.ts';
import { backendAdmits, split } from './outbound/split.ts';
import { concurrency } from './outbound/concurrency.ts';
import { balance } from './outbound/balance.ts';
import { endpoint } from './outbound/endpoint.ts';
import { authorization, inboundDecision } from './inbound/authorize.ts';
import { app } from './inbound/app.ts';
import { NO_PROBES, type ProbePaths } from '../api/probe-paths.ts';
import type { DefaultInboundPolicy } from '../api/default-inbound-policy.ts';
import { byAppPort, appPortOf, DST_PORT_HEADER, parseAppPorts, type AppPorts } from './inbound/app-port.ts';
import { matchRoute, pathOf } from './policy/route-match.ts';
import { pickAdmitting } from './policy/split.ts';
import { pickP2C } from './policy/balancer.ts';
import { ProxyMetrics } from './telemetry/metrics.ts';
import { BatchedAccessLog, nullAccessLog, type AccessLog } from './telemetry/access-log.ts';
import { RecentErrors } from './telemetry/recent-errors.ts';
import type { Tracing } from './telemetry/trace.ts';
import { adminServer, listenAdmin } from './admin.ts';
import { H2Listener } from './http2/server.ts';
import { H2Sessions } from './http2/sessions.ts';
import { h2App, h2Endpoint, h2RetryHooks, h2Verdict } from './http2/forward.ts';
import { BlockList, type AddressInfo, type LookupFunction } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Writable } from 'node:stream';

export interface HostPort {
  host: string;
  port: number;
}

export interface ProxyOptions {
  self: Workload;
  /** Config from a file (watched); undefined: from the control plane's stream (needs certify). */
  configFile: string | undefined;
  /** The control plane's config stream (with identity); used when there is no configFile. */
  configStream: { urls: readonly string[]; controlPlaneIdentity: string; pod: string; refuseVersion?: RegExp; labels?: () => PodLabels; namespaces?: readonly string[] } | undefined;
  outbound: HostPort | undefined;
  inbound: HostPort | undefined;
  /** The local application the inbound side forwards to. */
  app: HostPort;
  /**
   * Every port of the app and the extra inbound listeners (MESHLET_APP_PORTS and
   * MESHLET_INBOUND_PORT_MAP, parsed by parseAppPorts); a meshed caller may also pick a port with
   * `meshlet-dst-port`. Default: `app.port` alone, on `inbound`.
   */
  appPorts?: AppPorts;
  /** The kubelet's httpGet probe paths by app port (MESHLET_PROBE_PATHS): plaintext GETs of them pass a strict port. */
  probes?: ProbePaths;
  /**
   * The Pod's own default inbound policy (MESHLET_DEFAULT_INBOUND_POLICY): replaces the config's
   * inbound.defaultPolicy; all-unauthenticated also makes every app port take plaintext. Unset: the config decides.
   */
  defaultInboundPolicy?: DefaultInboundPolicy;
  /**
   * Pass requests for hosts outside the mesh through to the host itself (outbound/passthrough.ts;
   * MESHLET_OUTBOUND_PASSTHROUGH, which the injector sets). Default false: a 404 `no-route`.
   */
  outboundPassthrough?: boolean;
  admin: HostPort;
  clock: Clock;
  random: Random;
  tracing: Tracing;
  accessLog: Writable | undefined;
  maxHeaderSize: number;
  log: (msg: string, fields?: Record<string, unknown>) => void;
  /** Where the workload identity comes from (mTLS); undefined runs the proxy in plaintext mode. */
  certify: CertifyTransport | undefined;
  wallClock: WallClock;
}

export interface RunningProxy {
  outbound: AddressInfo | undefined;
  /** The first app port's inbound listener (--inbound-listen). */
  inbound: AddressInfo | undefined;
  /** Every inbound listener and the app port it serves, the first one's first. */
  inboundListeners: ReadonlyArray<{ appPort: number; address: AddressInfo }>;
  admin: AddressInfo;
  store: ConfigStore;
  metrics: ProxyMetrics;
  /** Stop accepting, finish in-flight requests (up to graceMs), close everything. */
  drain(graceMs: number): Promise<void>;
}

/**
 * Idle upstream connections: kept 30 s, or what the server's Keep-Alive hint says (less a second,
 * at most 60 s). A busy one silent for 300 s (a stalled body) is given up.
 */
const POOL_TIMEOUTS = { keepAliveTimeoutMs: 30_000, keepAliveMaxTimeoutMs: 60_000, silenceTimeoutMs: 300_000 };

/**
 * How to reach an endpoint: mTLS with its SPIFFE ID checked when the config names one, plain TCP
 * otherwise; an endpoint that expects an identity never gets plaintext (a proxy without identity
 * gets the error instead). Shared by the connection pools and WebSocket upgrades.
 */
function connectorFor(identity: IdentityManager | undefined, address: string, expected: string | undefined, connectTimeout: number, onHandshakeFailure: (reason: string) => void, lookup?: LookupFunction): Dial | ProxyError {
  if (!expected) return tcpConnector(address, connectTimeout, lookup);
  if (!identity) return new ProxyError('tls-failed', `endpoint ${address} expects identity ${expected}, but this proxy runs without identity (no --control-plane)`, { beforeRequest: true });
  return tlsConnector({ address, timeoutMs: connectTimeout, expected, context: () => identity.current?.clientContext, onHandshakeFailure });
}

/**
 * Connection pools per endpoint: mTLS with the endpoint's SPIFFE ID checked when the config names
 * one, plain TCP otherwise. An endpoint that expects an identity never gets plaintext: its pool
 * fails every request with the reason (a configuration this proxy cannot serve).
 */
export function endpointPools(identity: IdentityManager | undefined, clock: Clock, onHandshakeFailure: (reason: string) => void): ClientFactory {
  return {
    create({ address, identity: expected, connectTimeout, lookup }): Pool {
      const connect = connectorFor(identity, address, expected, connectTimeout, onHandshakeFailure, lookup);
      const dial: Dial = connect instanceof ProxyError ? (cb) => queueMicrotask(() => cb(connect, null)) : connect;
      return new Pool(dial, { now: () => clock.now(), ...POOL_TIMEOUTS });
    },
    close(client) {
      (client as Pool).close();
    },
  };
}

/** This host's addresses (a Pod's IPs), as the network interfaces have them at start. */
function localAddresses(): BlockList {
  const list = new BlockList();
  for (const addrs of Object.values(networkInterfaces())) for (const a of addrs ?? []) list.addAddress(a.address, a.family === 'IPv4' ? 'ipv4' : 'ipv6');
  return list;
}

/** An inbound listener: its own acceptor (mTLS or plaintext) and HTTP server, for one app port. */
interface InboundListener {
  appPort: number;
  listener: Listener;
  acceptor: InboundAcceptor;
  address: AddressInfo;
}

/** An inbound upgrade's: the app's connect and answer as for any route; the whole exchange is the caller's proxy's to bound. */
const INBOUND_UPGRADE_TIMEOUTS = { connect: DEFAULT_TIMEOUTS.connect, perTry: DEFAULT_TIMEOUTS.perTry, request: 0 };

/** Whether an app port accepts plaintext under a config. */
function permissive(cfg: { inbound: { ports: ReadonlyMap<number, { permissive?: boolean }> } } | undefined, port: number): boolean {
  return cfg?.inbound.ports.get(port)?.permissive === true;
}

export async function startProxy(o: ProxyOptions): Promise<RunningProxy> {
  const identity = o.certify
    ? new IdentityManager(o.certify, o.wallClock, o.random, {
        renewed: (m) => {
          metrics.renewals.labels('ok').inc();
          metrics.leafExpiry.reset();
          metrics.leafExpiry.labels(m.identity).set(m.notAfterMs / 1000);
          o.log('certificate issued', { identity: m.identity, notAfter: new Date(m.notAfterMs).toISOString() });
        },
        failed: (err, failures) => {
          metrics.renewals.labels('failed').inc();
          o.log('certificate request failed; retrying', { level: 'warn', error: err.message, failures });
        },
      })
    : undefined;
  const metrics = new ProxyMetrics({
    clock: o.clock,
    collect: (m) => {
      m.breakerState.reset();
      for (const ep of state.endpoints()) {
        const s = ep.accrual.state;
        m.breakerState.labels(ep.service, ep.address).set(s === 'closed' ? 0 : s === 'open' ? 1 : 2);
      }
    },
  });
  const pools = endpointPools(identity, o.clock, (reason) => metrics.tlsHandshakeFailures.labels('outbound', reason).inc());
  const state = new StateRegistry(o.clock, o.random, pools);
  // The proxy's own listening ports (as they bind) on its own addresses: never a passed-through request's destination.
  const ownPorts = new Set<number>();
  const passthrough = new Passthrough(pools, o.clock, o.random, { ports: ownPorts, addresses: localAddresses() }, o.outboundPassthrough === true);
  const store = new ConfigStore(state, {
    applied: (cfg) => {
      metrics.configUpdates.labels('applied').inc();
      metrics.configInfo.reset();
      metrics.configInfo.labels(cfg.version).set(1);
      // Per-service resilience counters exist from 0, so rates and alerts see "none" rather than nothing.
      for (const name of cfg.services.keys()) {
        metrics.budgetExhausted.labels(name).inc(0);
        metrics.loadShed.labels(name).inc(0);
        metrics.ejections.labels(name).inc(0);
      }
      void metrics.forgetServices({ has: (name) => name === PASSTHROUGH || cfg.services.has(name) });
      o.log('config applied', { version: cfg.version });
    },
    refused: (problems, source) => {
      metrics.configUpdates.labels('refused').inc();
      o.log('config refused; keeping the last good one', { level: 'warn', source, problems });
    },
    restored: (version, source) => o.log('config source is back to the config in force; refusal cleared', { source, version }),
  });
  let source: { close(): void };
  let stream: StreamConfigSource | undefined;
  if (o.configFile) {
    const file = new FileConfigSource(o.configFile, store);
    await file.load();
    file.watch(() => {});
    source = file;
  } else if (o.configStream && identity) {
    stream = new StreamConfigSource({
      urls: o.configStream.urls,
      controlPlaneIdentity: o.configStream.controlPlaneIdentity,
      context: () => identity.current?.clientContext,
      store,
      self: { workload: o.self.workload, namespace: o.self.namespace, pod: o.configStream.pod, services: [o.self.service], ...(o.configStream.namespaces ? { namespaces: o.configStream.namespaces } : {}) },
      random: o.random,
      log: o.log,
      ...(o.configStream.refuseVersion ? { refuseVersion: o.configStream.refuseVersion } : {}),
      ...(o.configStream.labels ? { labels: o.configStream.labels } : {}),
      onState: (up) => {
        metrics.controlPlaneConnected.set(up ? 1 : 0);
        o.log(up ? 'config stream connected' : 'config stream lost; serving the last good config', up ? {} : { level: 'warn' });
      },
    });
    identity.onFirst(() => stream!.start());
    source = stream;
  } else throw new Error('no config source: give --config FILE, or --control-plane (with an identity) to stream config');

  const accessLog: AccessLog = o.accessLog ? new BatchedAccessLog(o.accessLog) : nullAccessLog;
  const recentErrors = new RecentErrors(o.wallClock);
  const common = { clock: o.clock, store, metrics, accessLog, tracing: o.tracing, self: o.self, maxHeaderSize: o.maxHeaderSize, recentErrors };

  let outbound: Listener | undefined;
  let outAddr: AddressInfo | undefined;
  /** An upgrade's upstream connection: mTLS checking `expected` when the endpoint names one, like its pool's. */
  const upgradeDial = (address: string, expected: string | undefined, timeouts: { connect: number; perTry: number; request: number }, lookup?: LookupFunction): UpgradeTarget => {
    const connect = connectorFor(identity, address, expected, timeouts.connect, (reason) => metrics.tlsHandshakeFailures.labels('outbound', reason).inc(), lookup);
    if (connect instanceof ProxyError) return { error: connect };
    return { address, ...(expected ? { dstPort: address.slice(address.lastIndexOf(':') + 1) } : {}), dial: connect, responseTimeoutMs: timeouts.perTry, requestTimeoutMs: timeouts.request };
  };
  // The request path's timers (per-try and whole-request timeouts, an upgrade's wait for its answer), on the injected clock.
  const deadlines = new Deadlines(o.clock);
  // HTTP/2: one session per endpoint (h2 over mTLS to a meshed endpoint's proxy, h2c otherwise)
  // and one per app port inbound (h2c); the HTTP/2 listeners are closed with their HTTP/1 ones.
  const h2Sessions = new H2Sessions({ context: () => identity?.current?.clientContext, now: () => o.clock.now(), onHandshakeFailure: (reason) => metrics.tlsHandshakeFailures.labels('outbound', reason).inc() });
  const h2Listeners: H2Listener[] = [];
  const record = { clock: o.clock, metrics, accessLog, tracing: o.tracing, self: o.self, recentErrors };
  if (o.outbound) {
    const handler = compose(
      [destination(passthrough), route, retry(o.random, metrics, deadlines), split(o.random), concurrency(metrics), balance(o.clock, o.random, metrics)],
      endpoint(o.clock, deadlines),
    );
    const pick = (req: RequestHead, cfg: Parameters<Parameters<typeof makeUpgradeHandler>[0]>[1]): UpgradeTarget => {
      const t = targetOf(req.target, req.host);
      const svc = destinationOf(cfg, t.host, t.authority, req.get(DST_OVERRIDE_HEADER), passthrough);
      if (svc instanceof ProxyError) return { error: svc };
      const r = matchRoute(svc.routes, { method: req.method, path: pathOf(t.target), headers: req });
      // Labelled as a plain request to the same place would be (listener.ts #done): the backend, else the service.
      const none = { service: svc.name, workload: '', namespace: '', tls: false };
      if (!r) return { error: new ProxyError('no-route', `no route of "${svc.name}" matches`), dst: none };
      const b = pickAdmitting(r.backends, o.random, backendAdmits);
      if (!b) return { error: new ProxyError('no-endpoints', 'no backend with weight > 0'), dst: none };
      const ep = pickP2C(b.service.ready.filter((e) => e.accrual.isAvailable()), (e) => e.load, o.random);
      if (!ep) return { error: new ProxyError('no-endpoints', `no available endpoint of "${b.service.name}"`), dst: { ...none, service: b.service.name } };
      const dst = { service: b.service.name, workload: ep.labels['workload'] ?? '', namespace: ep.labels['namespace'] ?? '', tls: ep.identity !== undefined };
      // The upstream's answer to the upgrade (101 or not) is a response head like any other: the
      // route's per-try timeout bounds the wait, its request timeout the whole exchange (body included).
      return { ...upgradeDial(ep.address, ep.identity, r.timeouts, ep.lookup), dst };
    };
    // The same stages for HTTP/2, each told what it cannot read itself: the retry stage how the
    // body is replayed and what a trailers-only gRPC answer says, the balancer when a gRPC answer
    // failed its endpoint (README "HTTP/2 and gRPC").
    const h2Handler = compose(
      [destination(passthrough), route, retry(o.random, metrics, deadlines, h2RetryHooks), split(o.random), concurrency(metrics), balance(o.clock, o.random, metrics, h2Verdict)],
      h2Endpoint(o.clock, deadlines, h2Sessions),
    );
    const outH2 = new H2Listener({ ...record, direction: 'outbound', store, handler: h2Handler });
    h2Listeners.push(outH2);
    outbound = new Listener({ ...common, direction: 'outbound', http2: outH2, handler, upgrade: makeUpgradeHandler(pick, (req) => targetOf(req.target, req.host), { direction: 'outbound', tracing: o.tracing }, deadlines) });
    outAddr = await outbound.listen(o.outbound.host, o.outbound.port);
    ownPorts.add(outAddr.port);
  }

  // One inbound listener per app port that has a proxy port of its own (--inbound-listen for the
  // first, MESHLET_INBOUND_PORT_MAP for the others): a connection's listener says which app port it
  // was for, plaintext included. One pool and one pipeline per app port; the port also decides
  // authorization and permissiveness.
  const inbound: InboundListener[] = [];
  const appPorts = o.appPorts ?? parseAppPorts(undefined, o.app.port, o.inbound?.port);
  const appHost = o.app.host.includes(':') ? `[${o.app.host}]` : o.app.host;
  const appPools = new Map(appPorts.ports.map((p) => [p, new Pool(tcpConnector(`${appHost}:${p}`, 1000), { now: () => o.clock.now(), ...POOL_TIMEOUTS })]));
  const appH2 = new H2Sessions({ context: () => undefined, now: () => o.clock.now() });
  if (o.inbound) {
    const probes = o.probes ?? NO_PROBES;
    // The Pod's all-unauthenticated makes every port permissive; policies guarding a port still decide (plaintext has no identity).
    const podDefault = o.defaultInboundPolicy;
    const plaintext = (cfg: Parameters<typeof permissive>[0], p: number) => identity === undefined || podDefault === 'all-unauthenticated' || permissive(cfg, p);
    const plaintextAllowed = (p: number) => (ex: Exchange) => plaintext(ex.config, p);
    const pipelines = new Map(appPorts.ports.map((p) => [p, compose([authorization(metrics, p, plaintextAllowed(p), probes, podDefault)], app(appPools.get(p)!, `${appHost}:${p}`))]));
    // HTTP/2 streams take the same authorization decision, then go to the app as h2c.
    const h2Pipelines = new Map(appPorts.ports.map((p) => [p, compose([authorization(metrics, p, plaintextAllowed(p), probes, podDefault)], h2App(appH2, `${appHost}:${p}`))]));
    for (const { appPort, proxyPort } of [{ appPort: appPorts.first, proxyPort: o.inbound.port }, ...appPorts.listeners]) {
      const pick = (req: RequestHead, cfg: Parameters<Parameters<typeof makeUpgradeHandler>[0]>[1], peer: { identity: string; tls: boolean }): UpgradeTarget => {
        const port = appPortOf(peer.tls ? req.get(DST_PORT_HEADER) : undefined, appPorts, appPort);
        if (typeof port !== 'number') return { error: port };
        // The plain requests' decision (inbound/authorize.ts): a plaintext connection accepted while
        // the port was permissive gets no upgrade through once it turns strict. No upgrade is a
        // probe (the kubelet never asks for one): a plaintext GET /healthz with Upgrade would open
        // a tunnel to an app that takes WebSockets on every path.
        const target = targetOf(req.target, req.host).target;
        const d = inboundDecision(cfg.inbound, port, peer, { method: req.method, path: pathOf(target), target }, plaintext(cfg, port), NO_PROBES, podDefault);
        metrics.authzDecision(d.policy, d.allowed);
        // No whole-request bound inbound, as for plain inbound requests: the caller's outbound proxy owns it.
        return d.allowed ? upgradeDial(`${o.app.host}:${port}`, undefined, INBOUND_UPGRADE_TIMEOUTS) : { error: new ProxyError('forbidden', d.reason) };
      };
      const inH2 = new H2Listener({ ...record, direction: 'inbound', store, handler: byAppPort(appPorts, h2Pipelines, appPort) });
      h2Listeners.push(inH2);
      const listener = new Listener({ ...common, direction: 'inbound', http2: inH2, handler: byAppPort(appPorts, pipelines, appPort), upgrade: makeUpgradeHandler(pick, (req) => targetOf(req.target, req.host), { direction: 'inbound', tracing: o.tracing }, deadlines), peerOf });
      const acceptor = new InboundAcceptor({
        http: listener,
        http2: inH2,
        material: () => identity?.current,
        identityEnabled: identity !== undefined,
        // Plaintext on this listener is for its app port; where the kubelet probes that port,
        // plaintext connections come in and each request is decided (only probes pass a strict port).
        permissive: () => probes.has(appPort) || podDefault === 'all-unauthenticated' || permissive(store.current, appPort),
        onRefused: (reason) => metrics.tlsHandshakeFailures.labels('inbound', reason).inc(),
      });
      const address = await acceptor.listen(o.inbound.host, proxyPort).catch((err: Error) => {
        throw appPort === appPorts.first ? err : new Error(`the inbound listener of app port ${appPort} (MESHLET_INBOUND_PORT_MAP ${appPort}=${proxyPort}): ${err.message}; is the app, or another process, listening on ${proxyPort}?`);
      });
      inbound.push({ appPort, listener, acceptor, address });
      ownPorts.add(address.port);
    }
  }

  let draining = false;
  const admin = adminServer({ store, metrics, recentErrors, defaultInboundPolicy: o.defaultInboundPolicy, notReady: () => [...(draining ? ['draining'] : []), ...(identity?.notReady() ?? [])], detail: () => ({ identity: identity?.detail() ?? 'plaintext mode (no --control-plane)', ...(stream ? { controlPlane: stream.detail() } : {}) }) });
  void identity?.start();
  const adminAddr = await listenAdmin(admin, o.admin.host, o.admin.port);
  ownPorts.add(adminAddr.port);

  return {
    outbound: outAddr,
    inbound: inbound[0]?.address,
    inboundListeners: inbound.map((l) => ({ appPort: l.appPort, address: l.address })),
    admin: adminAddr,
    store,
    metrics,
    async drain(graceMs) {
      draining = true;
      source.close();
      for (const l of inbound) l.acceptor.close();
      identity?.stop();
      await Promise.all([outbound?.drain(graceMs), ...inbound.map((l) => l.listener.drain(graceMs)), ...h2Listeners.map((l) => l.drain(graceMs))]);
      await accessLog.close();
      admin.close();
      admin.closeAllConnections();
      state.closeAll();
      passthrough.closeAll();
      for (const p of appPools.values()) p.destroy();
      h2Sessions.destroy();
      appH2.destroy();
    },
  };
}
