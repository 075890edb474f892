// The control plane's composition root: builds the CA source, Certify, metrics and admin server
// from injected parts and runs them. Guarantees: ready only while a CA is loaded and Certify serves; close() stops everything.

/*
 * Start order: admin listens (live; not ready) → the CA state is loaded from the store (retried
 * while unreachable, and while missing if waitForCa; an invalid state or a trust-domain mismatch
 * is fatal) →
 * the serving certificate is issued (and onCa told) → Certify listens → ready.
 * While running: the store is re-read every reloadIntervalMs; a new version (issuer or anchor
 * rotated by the CLI) replaces the CA in force atomically, re-issues the serving certificate and tells onCa.
 * A failed reload keeps the last good state (reported in /ready, not fatal). The serving
 * certificate (lifetime: the CA's leaf TTL, not --leaf-ttl, which is for workloads) is also re-issued
 * at 70 % of its life.
 *
 * Seams for later issues: `routes` mounts more handlers on the Certify port (the config stream,
 * e.g. '/v1/config'), and `services` starts more components once the CA is loaded (the local
 * folder config source, the webhook). Both get nothing global: they are built by the caller.
 */

import type { AddressInfo } from 'node:net';
import type http from 'node:http';
import type { Tracer } from '@opentelemetry/api';
import { Registry } from 'prom-client';
import type { Clock } from '../api/runtime.ts';
import type { WallClock } from './ca/index.ts';
import { createAdminServer, listen } from './admin.ts';
import { CertifyService, DEFAULT_AUDIENCE } from './certify/certify.ts';
import { createCertifyServer, type CertifyServer, type Route } from './certify/server.ts';
import { DEFAULT_SERVING_NAMES, makeServingCredentials, servingRenewAtMs, type ServingCredentials, type ServingNames } from './certify/serving-cert.ts';
import type { TokenReviewer } from './certify/token-reviewer.ts';
import { CaMetrics } from './metrics.ts';
import { CaStoreError, type CaDocument } from './store/ca-document.ts';
import type { CaStore } from './store/ca-store.ts';

export interface HostPort {
  host: string;
  port: number;
}

export type Log = (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

/** A component started once the CA is loaded (config stream, webhook: later issues). */
export interface ControlPlaneService {
  readonly name: string;
  start(ctx: { ca: () => CaDocument | undefined }): Promise<void>;
  /** Reasons it is not ready ([] when it is). */
  notReady(): string[];
  close(): Promise<void>;
}

export interface ControlPlaneOptions {
  store: CaStore;
  /** Must equal the stored CA's trust domain (a mismatch is fatal). */
  trustDomain: string;
  listen: HostPort;
  adminListen: HostPort;
  /** Leaf lifetime; default and cap: the CA state's leafTtlMs (24 h unless set at init). */
  leafTtlMs?: number;
  /** Kubernetes proof; undefined: only bootstrap tokens are accepted. */
  reviewer?: TokenReviewer;
  audience?: string;
  servingNames?: ServingNames;
  /** How often the store is re-read (default 10 s). */
  reloadIntervalMs?: number;
  /**
   * Keep retrying while the stored CA does not exist yet (a Secret `meshlet install` will create).
   * Default false: a missing CA is fatal (a mistyped --ca-file). Unreachable stores are always retried.
   */
  waitForCa?: boolean;
  /** First retry delay while the CA cannot be loaded; doubles up to 10 s (default 500 ms). */
  loadRetryMs?: number;
  wallClock: WallClock;
  clock: Clock;
  registry?: Registry;
  log: Log;
  routes?: Readonly<Record<string, Route>>;
  services?: readonly ControlPlaneService[];
  /** More fields for /ready (the Kubernetes source's informers). */
  readyStatus?: () => Record<string, unknown>;
  /** Read-only JSON documents on the admin port (`/proxies` for `meshlet proxy-status`). */
  documents?: Readonly<Record<string, () => unknown>>;
  /** Spans for certify requests (control-plane/tracing.ts). */
  tracer?: Tracer;
  /**
   * Called, synchronously, each time a CA state is put in force: the first load (before Certify
   * and the `routes` on its port serve) and every rotation. What the caller derives from it (the
   * trust bundle in pushed config) is so in place before any proxy is served with that state.
   */
  onCa?: (doc: CaDocument) => void;
}

export interface ControlPlane {
  readonly admin: AddressInfo;
  readonly metrics: CaMetrics;
  /** Resolves with Certify's address once serving; rejects on a fatal start error. */
  readonly started: Promise<AddressInfo>;
  current(): CaDocument | undefined;
  /** Re-read the store now; true when a new version was put in force. */
  reload(): Promise<boolean>;
  close(): Promise<void>;
}

export async function startControlPlane(o: ControlPlaneOptions): Promise<ControlPlane> {
  const metrics = new CaMetrics(o.registry ?? new Registry());
  const names = o.servingNames ?? DEFAULT_SERVING_NAMES;
  let doc: CaDocument | undefined;
  let version: string | undefined;
  let serving: ServingCredentials | undefined;
  let certifyServer: CertifyServer | undefined;
  let certifyAddr: AddressInfo | undefined;
  let lastLoadError: string | undefined;
  let closing = false;
  // Every wait is one of these, so close() can end them all at once.
  const timers = new Map<NodeJS.Timeout, () => void>();
  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const t = setTimeout(() => {
        timers.delete(t);
        resolve();
      }, ms);
      timers.set(t, resolve);
    });

  const service = new CertifyService({ ca: () => doc, refresh: () => reloadOnce(), reviewer: o.reviewer, audience: o.audience ?? DEFAULT_AUDIENCE, leafTtlMs: o.leafTtlMs, wallClock: o.wallClock, clock: o.clock, metrics, tracer: o.tracer });

  const notReady = (): string[] => {
    const r: string[] = [];
    if (closing) r.push('shutting down');
    if (!doc) r.push(`CA state not loaded from ${o.store.where}${lastLoadError ? `: ${lastLoadError}` : ''}`);
    else if (!doc.state.issuer.validAt(o.wallClock.nowMs())) r.push(`issuer ${doc.state.issuer.subject} is not valid now: rotate it (meshlet identity rotate-issuer)`);
    if (!certifyAddr) r.push('Certify is not listening yet');
    for (const s of o.services ?? []) r.push(...s.notReady().map((x) => `${s.name}: ${x}`));
    return r;
  };
  const adminServer: http.Server = createAdminServer({
    registry: metrics.registry,
    notReady,
    status: () => ({
      ca: doc && { source: o.store.where, trustDomain: doc.state.trustDomain, issuerSerial: doc.state.issuer.serialHex, anchors: doc.state.nextAnchor ? 2 : doc.state.previousAnchorPem ? 2 : 1 },
      servingCertificate: serving && { identity: serving.identity.uri, serial: serving.serialHex, notAfter: new Date(serving.notAfterMs).toISOString() },
      lastLoadError: lastLoadError ?? null,
      ...o.readyStatus?.(),
    }),
    ...(o.documents ? { documents: o.documents } : {}),
  });
  const admin = await listen(adminServer, o.adminListen.host, o.adminListen.port);

  /** Put a loaded document in force: checks, metrics, serving certificate. */
  const apply = (next: CaDocument, nextVersion: string): void => {
    if (next.state.trustDomain !== o.trustDomain) {
      throw new CaStoreError('bad-state', `${o.store.where} is for trust domain ${next.state.trustDomain}, but this control plane serves ${o.trustDomain} (pass --trust-domain ${next.state.trustDomain})`);
    }
    if (o.leafTtlMs !== undefined && o.leafTtlMs > next.state.leafTtlMs) {
      throw new CaStoreError('bad-state', `--leaf-ttl ${o.leafTtlMs} ms is longer than the CA's leaf TTL ${next.state.leafTtlMs} ms (anchor removal waits that long); lower --leaf-ttl`);
    }
    const creds = makeServingCredentials(next.state, names, { now: o.wallClock.nowMs() });
    doc = next;
    version = nextVersion;
    metrics.observeState(next.state);
    serving = creds;
    certifyServer?.setCredentials(creds);
    o.onCa?.(next);
  };

  const reload = async (): Promise<boolean> => {
    let loaded;
    try {
      loaded = await o.store.load();
    } catch (e) {
      lastLoadError = (e as Error).message;
      o.log('warn', 'CA state reload failed; keeping the state in force', { source: o.store.where, error: lastLoadError });
      return false;
    }
    if (loaded.version === version) {
      lastLoadError = undefined;
      return false;
    }
    try {
      apply(loaded.doc, loaded.version);
    } catch (e) {
      lastLoadError = (e as Error).message;
      o.log('error', 'new CA state refused; keeping the state in force', { source: o.store.where, error: lastLoadError });
      return false;
    }
    lastLoadError = undefined;
    o.log('info', 'CA state reloaded', { source: o.store.where, issuer: doc?.state.issuer.serialHex, bundle: doc && (doc.state.nextAnchor || doc.state.previousAnchorPem ? 2 : 1) });
    return true;
  };

  /** One reload at a time: the periodic one and Certify's (a bootstrap token meeting no key) share it. */
  let reloading: Promise<boolean> | undefined;
  const reloadOnce = (): Promise<boolean> => (reloading ??= reload().finally(() => (reloading = undefined)));

  const boot = async (): Promise<AddressInfo> => {
    let delay = o.loadRetryMs ?? 500;
    for (;;) {
      if (closing) throw new Error('closed before the CA was loaded');
      try {
        const loaded = await o.store.load();
        apply(loaded.doc, loaded.version);
        lastLoadError = undefined;
        break;
      } catch (e) {
        // A state that is there but wrong needs a person; a missing or unreachable one may appear.
        if (e instanceof CaStoreError && (e.code === 'bad-state' || (e.code === 'not-found' && !o.waitForCa))) throw e;
        lastLoadError = (e as Error).message;
        o.log('warn', 'CA state not loaded; retrying', { source: o.store.where, error: lastLoadError, retryInMs: delay });
        await sleep(delay);
        delay = Math.min(delay * 2, 10_000);
      }
    }
    if (closing) throw new Error('closed before Certify started');
    certifyServer = createCertifyServer({ service, credentials: serving as ServingCredentials, routes: o.routes });
    const addr = await certifyServer.listen(o.listen.host, o.listen.port);
    for (const s of o.services ?? []) await s.start({ ca: () => doc });
    certifyAddr = addr;
    o.log('info', 'Certify serving', {
      listen: `${addr.address}:${addr.port}`, trustDomain: doc?.state.trustDomain, source: o.store.where, identity: serving?.identity.uri,
      kubernetesProof: o.reviewer !== undefined, bootstrapProof: doc?.bootstrapKey !== undefined,
    });
    void reloadLoop();
    void renewLoop();
    return addr;
  };

  const reloadLoop = async (): Promise<void> => {
    for (;;) {
      await sleep(o.reloadIntervalMs ?? 10_000);
      if (closing) return;
      await reloadOnce();
    }
  };
  const renewLoop = async (): Promise<void> => {
    for (;;) {
      if (closing) return;
      const due = serving ? servingRenewAtMs(serving) - o.wallClock.nowMs() : 60_000;
      // Re-checked at least every minute: a reload may have renewed it meanwhile.
      await sleep(Math.max(1_000, Math.min(due, 60_000)));
      if (closing || !doc || !serving || o.wallClock.nowMs() < servingRenewAtMs(serving)) continue;
      try {
        serving = makeServingCredentials(doc.state, names, { now: o.wallClock.nowMs() });
        certifyServer?.setCredentials(serving);
        o.log('info', 'serving certificate renewed', { serial: serving.serialHex, notAfter: new Date(serving.notAfterMs).toISOString() });
      } catch (e) {
        o.log('error', 'serving certificate renewal failed; retrying', { error: (e as Error).message });
      }
    }
  };

  const started = boot();
  started.catch(() => {}); // the caller awaits `started`; avoid an unhandled rejection meanwhile

  return {
    admin,
    metrics,
    started,
    current: () => doc,
    reload: reloadOnce,
    close: async () => {
      if (closing) return;
      closing = true;
      for (const [t, wake] of timers) {
        clearTimeout(t);
        wake();
      }
      timers.clear();
      await Promise.all([
        certifyServer?.close(),
        ...(o.services ?? []).map((s) => s.close()),
        new Promise<void>((resolve) => {
          adminServer.close(() => resolve());
          adminServer.closeIdleConnections();
        }),
      ]);
    },
  };
}
