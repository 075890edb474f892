// The Kubernetes config source: informers over Services, EndpointSlices, Pods, the meshlet CRDs and
// (where installed) HTTPRoute; restarted after errors with jittered backoff; emits a debounced MeshModel only when its hash changes.
import type { KubeConfig, KubernetesListObject, KubernetesObject, V1EndpointSlice, V1Pod, V1Service } from '@kubernetes/client-node';
import type { MeshModel, ModelOptions } from './model.ts';
import { GATEWAY_GROUP, meshModelFromKubernetes, modelHash, type KeptServicePolicies, type KubeObjects, type KubeProblem } from './kube-model.ts';
import { equalJitter } from '../../api/backoff.ts';
import type { StatusObjects } from './status-writer.ts';

/*
 * How it behaves:
 * - Nothing is emitted until every informer has listed once (Services, EndpointSlices, Pods,
 *   TrafficSplits, AuthorizationPolicies, ServicePolicies, and HTTPRoutes when the CRD was there at start): a
 *   partial model (say, Services without their Pods, or without the AuthorizationPolicies) is
 *   never pushed. `start()` resolves with the first model, already passed to onChange.
 * - A custom resource whose list the API server answers 404 before it ever listed is not served
 *   (its CRD is not installed): that is a complete answer, none exist, so it does not hold back
 *   the first model; the error says which CRD to install, and the informer keeps retrying, so the
 *   objects join the model once it is. Any other failure (403: RBAC; 5xx; no answer) says nothing
 *   about what exists: that kind holds back the first model until it lists.
 * - Any add/update/delete schedules a rebuild after `debounceMs` of quiet, at most `maxDelayMs`
 *   after the first event of a burst. The rebuild reads every informer's cache (pure
 *   meshModelFromKubernetes) and calls onChange only when the hash of model + problems differs
 *   from the last one emitted: status writes, Pod status churn and re-lists that change nothing
 *   emit nothing.
 * - A ServicePolicy edit that fails the checks keeps its last valid version in force (kube-model.ts
 *   KeptServicePolicies): the source holds those versions from one rebuild to the next.
 * - After every rebuild, emitted or not, `onObjects` gets the TrafficSplits, AuthorizationPolicies,
 *   ServicePolicies and HTTPRoutes as the informers hold them (status included), the Services of the model and the
 *   problems in force: the status writer (status-writer.ts) compares and writes only what differs.
 * - An informer that reports an error is replaced by a fresh one (a full re-list) after a jittered
 *   exponential delay (planRestart); until the fresh one has listed, the failed one's cache stays
 *   in force (last known state, not an empty one). A periodic resync (`resyncMs`) does the same
 *   replacement with no error: a re-list, cache swapped once the new list is complete.
 * - HTTPRoute (gateway.networking.k8s.io/v1) is watched only while API discovery lists it,
 *   checked at start and every `discoveryMs`; absent is not an error. At start, discovery is
 *   retried until it answers, and the first model waits for it: a model without the HTTPRoutes
 *   would drop their routes from every proxy until the next check.
 */

export const CORE_KINDS = ['Service', 'EndpointSlice', 'Pod', 'TrafficSplit', 'AuthorizationPolicy', 'ServicePolicy'] as const;
export type WatchedKind = (typeof CORE_KINDS)[number] | 'HTTPRoute';
/** The custom resources, by the CRD that serves each: a 404 on their list means that CRD is not installed. */
export const CUSTOM_KINDS: Readonly<Partial<Record<WatchedKind, string>>> = {
  TrafficSplit: 'trafficsplits.meshlet.io',
  AuthorizationPolicy: 'authorizationpolicies.meshlet.io',
  ServicePolicy: 'servicepolicies.meshlet.io',
  HTTPRoute: `httproutes.${GATEWAY_GROUP}`,
};

/** What the source needs of an informer (makeInformer's, adapted; or a fake in tests). */
export interface SourceInformer {
  /** Called on every add, update and delete. */
  onEvent(cb: () => void): void;
  /** Called when the list or the watch fails; the informer does not restart itself. */
  onError(cb: (err: unknown) => void): void;
  /** Lists, then watches; resolves once the list is in the cache and the watch is open (or it failed: see onError). */
  start(): Promise<void>;
  stop(): Promise<void>;
  list(): readonly KubernetesObject[];
}
export type InformerFactory = (kind: WatchedKind) => SourceInformer;

// ---- restarts ------------------------------------------------------------------------------------

export interface RestartPolicy {
  /** Delay ceiling of the first restart; doubles per consecutive failure. */
  baseMs: number;
  maxMs: number;
  /** An informer that ran this long before failing starts over at baseMs. */
  resetAfterMs: number;
  /**
   * The ceiling while the API server does not answer at all (refused, reset, timed out: no HTTP
   * status). Those attempts cost it nothing, and a long ceiling there is how long proxies keep a
   * stale view after it is back (24 s measured after a 30 s outage with maxMs alone). Default: maxMs.
   */
  unreachableMaxMs?: number;
}
export const DEFAULT_RESTART: RestartPolicy = { baseMs: 500, maxMs: 30_000, resetAfterMs: 60_000, unreachableMaxMs: 4_000 };

/**
 * The delay before a restart, and the attempt number to keep for the next one. `attempt` counts
 * consecutive failures (0 for the first); `ranForMs` is how long the failed informer had been
 * synced (0 if it never listed); `unreachable`: the failure had no HTTP answer (the ceiling is then
 * unreachableMaxMs; an answer such as 429 or 503 keeps the full backoff, the API server is busy).
 * Exponential, capped, "equal jitter": between half the ceiling and the ceiling, so replicas
 * restarting together spread out but never hammer at 0 ms. Pure.
 */
export function planRestart(attempt: number, ranForMs: number, policy: RestartPolicy, random: number, unreachable = false): { delayMs: number; attempt: number } {
  const a = ranForMs >= policy.resetAfterMs ? 0 : Math.max(0, attempt);
  const cap = unreachable ? Math.min(policy.maxMs, policy.unreachableMaxMs ?? policy.maxMs) : policy.maxMs;
  return { delayMs: equalJitter(policy.baseMs, cap, a + 1, random), attempt: a + 1 };
}

export interface InformerStatus {
  kind: WatchedKind;
  /** A complete list is in the cache (possibly stale: see `watching`). */
  synced: boolean;
  /** The cache is being kept current: its informer lists and watches without error. */
  watching: boolean;
  /** Never listed, and the API server answered 404: the resource is not served (its CRD is not installed). */
  absent: boolean;
  /** Replacements after errors. */
  restarts: number;
  /** Planned re-lists (resync) that completed. */
  relists: number;
  lastError?: string;
}

interface Entry {
  readonly inf: SourceInformer;
  alive: boolean;
  error?: unknown;
}

export interface ResilientInformerOptions {
  kind: WatchedKind;
  factory: InformerFactory;
  policy?: RestartPolicy;
  random?: () => number;
  /** An event, or a fresh cache swapped in. */
  onChange: () => void;
  onRestart?: (kind: WatchedKind, err: unknown, delayMs: number) => void;
}

/** The HTTP status of a failed list (ApiException's code) or watch (statusCode), if it got an answer. */
export const httpStatusOf = (err: unknown): number | undefined => {
  const e = err as { code?: unknown; statusCode?: unknown } | null;
  if (!e || typeof e !== 'object' || err instanceof DOMException) return undefined; // a DOMException's code is not HTTP's
  const code = typeof e.code === 'number' ? e.code : e.statusCode;
  return typeof code === 'number' && code >= 100 && code < 600 ? code : undefined;
};

/** One line: the client's ApiException carries the whole response (headers too); keep code and Status message. */
const messageOf = (err: unknown): string => {
  const e = err as { code?: unknown; body?: unknown } | null;
  if (e && typeof e === 'object' && typeof e.code === 'number' && typeof e.body === 'string') {
    try {
      const status = JSON.parse(e.body) as { message?: unknown };
      if (typeof status.message === 'string') return `HTTP ${e.code}: ${status.message}`;
    } catch {
      // not a Status body
    }
    return `HTTP ${e.code}`;
  }
  // undici's 'fetch failed' says where and why in its cause (connect ECONNREFUSED 10.0.0.1:443).
  if (err instanceof Error) return err.cause instanceof Error && err.cause.message ? `${err.message}: ${err.cause.message}` : err.message;
  if (typeof err === 'object' && err !== null && 'message' in err) return String((err as { message: unknown }).message);
  return String(err);
};

/** One kind's informer, restarted with backoff after errors and re-listed on demand; its cache outlives failures. */
export class ResilientInformer {
  readonly kind: WatchedKind;
  readonly #o: ResilientInformerOptions;
  readonly #policy: RestartPolicy;
  #current: Entry | undefined;
  #pending: Entry | undefined;
  #syncedAt = 0;
  #attempt = 0;
  /** The last failure had no HTTP answer (the API server unreachable). */
  #unreachable = false;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #restarts = 0;
  #relists = 0;
  #relisting = false;
  #lastError: string | undefined;
  #absent = false;
  readonly #firstSync: Promise<void>;
  #resolveSync!: () => void;
  #rejectSync!: (e: Error) => void;

  constructor(o: ResilientInformerOptions) {
    this.kind = o.kind;
    this.#o = o;
    this.#policy = o.policy ?? DEFAULT_RESTART;
    this.#firstSync = new Promise<void>((resolve, reject) => {
      this.#resolveSync = resolve;
      this.#rejectSync = reject;
    });
    this.#firstSync.catch(() => {}); // awaited by start() callers only
  }

  /** Starts; resolves on the first complete list (retrying until then), rejects if stopped first. */
  start(): Promise<void> {
    if (!this.#current && !this.#pending && !this.#timer && !this.#stopped) void this.#launch();
    return this.#firstSync;
  }

  get synced(): boolean {
    return this.#current !== undefined;
  }

  /** Never listed, and the last answer that said anything was 404 (the resource is not served). */
  get absent(): boolean {
    return this.#absent;
  }

  /** The cache in force: the last informer that listed completely (possibly failed since, until replaced). */
  list(): readonly KubernetesObject[] {
    return this.#current?.inf.list() ?? [];
  }

  /** Re-list now with a fresh informer; the current cache serves until the new list is complete. */
  relist(): void {
    if (this.#stopped || !this.#current || this.#pending || this.#timer) return;
    this.#relisting = true;
    void this.#launch();
  }

  status(): InformerStatus {
    return {
      kind: this.kind,
      synced: this.synced,
      watching: this.#current?.alive === true,
      absent: this.#absent,
      restarts: this.#restarts,
      relists: this.#relists,
      ...(this.#lastError !== undefined ? { lastError: this.#lastError } : {}),
    };
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#rejectSync(new Error(`${this.kind} informer stopped before its first list`));
    await Promise.all([this.#current, this.#pending].map((e) => (e ? this.#retire(e) : undefined)));
  }

  async #retire(e: Entry): Promise<void> {
    e.alive = false;
    try {
      await e.inf.stop();
    } catch {
      // already gone
    }
  }

  async #launch(): Promise<void> {
    this.#timer = undefined;
    if (this.#stopped) return;
    let entry: Entry;
    try {
      entry = { inf: this.#o.factory(this.kind), alive: true };
    } catch (err) {
      this.#relisting = false;
      this.#fail(undefined, err);
      return;
    }
    this.#pending = entry;
    entry.inf.onEvent(() => {
      if (entry.alive && this.#current === entry && !this.#stopped) this.#o.onChange();
    });
    entry.inf.onError((err) => {
      if (!entry.alive || this.#stopped) return; // a retired informer (stop() aborts its watch)
      if (this.#pending === entry) entry.error ??= err ?? new Error('informer error');
      else this.#fail(entry, err);
    });
    try {
      await entry.inf.start();
    } catch (err) {
      entry.error ??= err ?? new Error('informer start failed');
    }
    if (this.#stopped || this.#pending !== entry) {
      void this.#retire(entry);
      return;
    }
    this.#pending = undefined;
    const relisting = this.#relisting;
    this.#relisting = false;
    if (entry.error !== undefined) {
      this.#fail(entry, entry.error);
      return;
    }
    const old = this.#current;
    this.#current = entry;
    this.#absent = false;
    this.#syncedAt = performance.now();
    if (relisting) this.#relists++;
    if (old) void this.#retire(old);
    this.#resolveSync();
    this.#o.onChange();
  }

  #fail(entry: Entry | undefined, err: unknown): void {
    if (entry) void this.#retire(entry); // its cache stays readable while it is #current
    this.#lastError = messageOf(err);
    // 404 before any list: not served. Other errors (an outage meanwhile) leave the answer as it was.
    if (this.#current === undefined && httpStatusOf(err) === 404) this.#absent = true;
    if (this.#stopped || this.#pending || this.#timer) return; // a replacement is already on its way
    const ranFor = entry && entry === this.#current ? performance.now() - this.#syncedAt : 0;
    const unreachable = httpStatusOf(err) === undefined;
    // The API server answers again (a 429 or 503 while it starts): its backoff starts over, rather
    // than at the ceiling the outage's attempts reached.
    if (this.#unreachable && !unreachable) this.#attempt = 0;
    this.#unreachable = unreachable;
    const plan = planRestart(this.#attempt, ranFor, this.#policy, (this.#o.random ?? Math.random)(), unreachable);
    this.#attempt = plan.attempt;
    this.#restarts++;
    this.#o.onRestart?.(this.kind, err, plan.delayMs);
    this.#timer = setTimeout(() => void this.#launch(), plan.delayMs);
  }
}

// ---- the source ----------------------------------------------------------------------------------

export interface KubeSourceError {
  /** Which informer, `discovery` (the HTTPRoute check) or `onChange`/`onObjects` (the callback threw). */
  source: WatchedKind | 'discovery' | 'onChange' | 'onObjects';
  error: unknown;
  /** The error in one line (`HTTP 429: storage is (re)initializing`), for logs. */
  message: string;
  /** For informer errors: when the replacement starts. */
  restartInMs?: number;
}

export interface KubernetesSourceOptions {
  /** Credentials; required unless `informerFactory` and `hasHTTPRoute` are given. */
  kc?: KubeConfig;
  /** Watch one namespace only (default: the whole cluster). */
  namespace?: string;
  /** Trust domain, cluster domain, trust bundle, mesh default policy. */
  model?: ModelOptions;
  onChange: (model: MeshModel, problems: readonly KubeProblem[]) => void;
  /** After every rebuild (emitted or not): the meshlet CRs and HTTPRoutes as held, the Services, and the problems in force (what /config-problems lists). */
  onObjects?: (objects: StatusObjects, problems: readonly KubeProblem[]) => void;
  onError?: (e: KubeSourceError) => void;
  /** Quiet time before a rebuild (default 100 ms)... */
  debounceMs?: number;
  /** ...but never later than this after the first change of a burst (default 500 ms). */
  maxDelayMs?: number;
  /** Re-list every informer this often (default 10 min; 0: never). */
  resyncMs?: number;
  /** Re-check whether HTTPRoute is served this often (default 60 s; 0: only at start). */
  discoveryMs?: number;
  restart?: RestartPolicy;
  random?: () => number;
  /** Tests: informers that are not makeInformer's. */
  informerFactory?: InformerFactory;
  /** Tests: whether gateway.networking.k8s.io/v1 httproutes is served. */
  hasHTTPRoute?: () => Promise<boolean>;
}

export interface KubeSourceStatus {
  /** Every gating informer has listed and a model was emitted. */
  synced: boolean;
  /** Whether HTTPRoutes are watched (the Gateway API CRD is installed). */
  httpRoutes: boolean;
  /** onChange calls so far. */
  emits: number;
  informers: InformerStatus[];
  /** Before the first model: why API discovery (is HTTPRoute served?) has not answered, if it has not. */
  discoveryError?: string;
}

export class KubernetesSource {
  readonly #o: KubernetesSourceOptions;
  readonly #informers = new Map<WatchedKind, ResilientInformer>();
  /** Kinds that must have listed before anything is emitted (HTTPRoute only if found at start). */
  readonly #gating = new Set<WatchedKind>(CORE_KINDS);
  #factory: InformerFactory | undefined;
  #hasHTTPRoute: (() => Promise<boolean>) | undefined;
  #modelOptions: ModelOptions;
  #model: MeshModel | undefined;
  #problems: readonly KubeProblem[] = [];
  #hash: string | undefined;
  #kept: KeptServicePolicies = new Map();
  #emits = 0;
  #started = false;
  #stopped = false;
  #timer: NodeJS.Timeout | undefined;
  #burstStart: number | undefined;
  #intervals: NodeJS.Timeout[] = [];
  #discovering = false;
  /** Every gating informer is started: the first model may go once they have listed. */
  #launched = false;
  /** While discovery has not answered at start: why. */
  #discoveryError: string | undefined;
  /** Ends the wait between discovery attempts (stop()). */
  #wake: (() => void) | undefined;
  readonly #first = Promise.withResolvers<MeshModel>();

  constructor(o: KubernetesSourceOptions) {
    if (!o.kc && (!o.informerFactory || !o.hasHTTPRoute)) throw new Error('KubernetesSource needs kc, or both informerFactory and hasHTTPRoute');
    this.#o = o;
    this.#modelOptions = { ...o.model };
    this.#first.promise.catch(() => {}); // awaited by start() only
  }

  /** The model last emitted (undefined before the first sync). */
  get model(): MeshModel | undefined {
    return this.#model;
  }

  get problems(): readonly KubeProblem[] {
    return this.#problems;
  }

  status(): KubeSourceStatus {
    return {
      synced: this.#model !== undefined,
      httpRoutes: this.#informers.has('HTTPRoute'),
      emits: this.#emits,
      informers: [...this.#informers.values()].map((i) => i.status()),
      ...(this.#model === undefined && this.#discoveryError !== undefined ? { discoveryError: this.#discoveryError } : {}),
    };
  }

  /** Start watching; resolves with the first model (already passed to onChange) once every informer has listed. */
  async start(): Promise<MeshModel> {
    if (this.#started) throw new Error('KubernetesSource already started');
    this.#started = true;
    if (this.#o.kc) {
      const client = await kubeClient(this.#o.kc, this.#o.namespace);
      this.#factory = this.#o.informerFactory ?? client.factory;
      this.#hasHTTPRoute = this.#o.hasHTTPRoute ?? client.hasHTTPRoute;
    } else {
      this.#factory = this.#o.informerFactory;
      this.#hasHTTPRoute = this.#o.hasHTTPRoute;
    }
    if (this.#stopped) throw new Error('KubernetesSource stopped while starting');
    for (const kind of CORE_KINDS) this.#add(kind).start().catch(() => {}); // rejects only when stopped
    // The first model waits for discovery's answer too: without it (the API server down or
    // starting) the model would go out without the HTTPRoutes, dropping their routes from
    // proxies that run them until the next check (discoveryMs).
    const routes = await this.#discoverAtStart();
    if (this.#stopped) throw new Error('KubernetesSource stopped while starting');
    if (routes) {
      this.#gating.add('HTTPRoute');
      this.#add('HTTPRoute').start().catch(() => {});
    }
    this.#launched = true;
    this.#checkFirst();
    const first = await this.#first.promise;
    const resync = this.#o.resyncMs ?? 600_000;
    if (resync > 0) this.#intervals.push(setInterval(() => this.resync(), resync).unref());
    const discovery = this.#o.discoveryMs ?? 60_000;
    if (discovery > 0) this.#intervals.push(setInterval(() => void this.#checkRoutes(), discovery).unref());
    return first;
  }

  /** Re-list every informer now (what the periodic resync does); emits only if the re-listed state differs. */
  resync(): void {
    for (const i of this.#informers.values()) i.relist();
  }

  /** New model options (the trust bundle after a CA rotation); emits if the model changes. */
  setModelOptions(opts: ModelOptions): void {
    this.#modelOptions = { ...opts };
    this.#schedule();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#first.reject(new Error('KubernetesSource stopped while starting'));
    this.#wake?.();
    clearTimeout(this.#timer);
    for (const t of this.#intervals) clearInterval(t);
    this.#intervals = [];
    await Promise.all([...this.#informers.values()].map((i) => i.stop()));
  }

  #add(kind: WatchedKind): ResilientInformer {
    const crd = CUSTOM_KINDS[kind];
    const inf: ResilientInformer = new ResilientInformer({
      kind,
      factory: this.#factory!,
      ...(this.#o.restart ? { policy: this.#o.restart } : {}),
      ...(this.#o.random ? { random: this.#o.random } : {}),
      onChange: () => this.#schedule(),
      onRestart: (k, error, restartInMs) => {
        const install = `the CRD ${crd} is not installed (kubectl apply -k manifests/, or meshlet install)`;
        const message = crd === undefined || httpStatusOf(error) !== 404
          ? messageOf(error)
          : inf.absent
            ? `${messageOf(error)}: ${install}; the mesh has no ${k} until it is, and picks them up once it is`
            : `${messageOf(error)}: ${install} any more; the ${k} objects listed last stay in force until it is`;
        this.#report({ source: k, error, message, restartInMs });
        this.#checkFirst(); // a kind found not served may be the last one the first model waited for
      },
    });
    this.#informers.set(kind, inf);
    return inf;
  }

  #report(e: KubeSourceError): void {
    try {
      this.#o.onError?.(e);
    } catch {
      // a logging hook must not break the source
    }
  }

  /** Discovery until it answers (retried as an informer is, while stopped: false). */
  async #discoverAtStart(): Promise<boolean> {
    const policy = this.#o.restart ?? DEFAULT_RESTART;
    for (let attempt = 0; !this.#stopped; ) {
      try {
        const served = await this.#hasHTTPRoute!();
        this.#discoveryError = undefined;
        return served;
      } catch (error) {
        const plan = planRestart(attempt, 0, policy, (this.#o.random ?? Math.random)(), httpStatusOf(error) === undefined);
        attempt = plan.attempt;
        this.#discoveryError = messageOf(error);
        this.#report({ source: 'discovery', error, message: `${this.#discoveryError}: cannot tell whether HTTPRoutes are served; the first model waits for the answer`, restartInMs: plan.delayMs });
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, plan.delayMs);
          this.#wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.#wake = undefined;
      }
    }
    return false;
  }

  async #routesServed(): Promise<boolean> {
    try {
      return await this.#hasHTTPRoute!();
    } catch (error) {
      this.#report({ source: 'discovery', error, message: messageOf(error) });
      return this.#informers.has('HTTPRoute'); // unknown: keep what we have
    }
  }

  async #checkRoutes(): Promise<void> {
    if (this.#discovering || this.#stopped) return;
    this.#discovering = true;
    try {
      const served = await this.#routesServed();
      const watched = this.#informers.get('HTTPRoute');
      if (this.#stopped) return;
      if (served && !watched) {
        // Not gating: routes join the model once listed; until then the rest keeps flowing.
        this.#add('HTTPRoute').start().catch(() => {});
      } else if (!served && watched) {
        this.#informers.delete('HTTPRoute');
        this.#gating.delete('HTTPRoute');
        await watched.stop();
        this.#schedule();
      }
    } finally {
      this.#discovering = false;
    }
  }

  /** Every gating kind listed, or (a custom resource) is known not to be served. */
  #synced(): boolean {
    for (const kind of this.#gating) {
      const inf = this.#informers.get(kind);
      if (!inf?.synced && !(CUSTOM_KINDS[kind] !== undefined && inf?.absent)) return false;
    }
    return true;
  }

  /** Before the first model: emit it (at once, no debounce) as soon as every gating kind has answered. */
  #checkFirst(): void {
    if (!this.#launched || this.#stopped || this.#model !== undefined || !this.#synced()) return;
    this.#flush();
    if (this.#model !== undefined) this.#first.resolve(this.#model);
  }

  #schedule(): void {
    if (this.#stopped) return;
    if (this.#model === undefined) return this.#checkFirst();
    const now = performance.now();
    this.#burstStart ??= now;
    const debounce = this.#o.debounceMs ?? 100;
    const bound = this.#o.maxDelayMs ?? 500;
    const due = Math.min(now + debounce, this.#burstStart + bound);
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#flush(), Math.max(0, due - now));
  }

  #objects(): KubeObjects {
    const list = (kind: WatchedKind) => this.#informers.get(kind)?.list() ?? [];
    return {
      services: list('Service') as V1Service[],
      endpointSlices: list('EndpointSlice') as V1EndpointSlice[],
      pods: list('Pod') as V1Pod[],
      trafficSplits: list('TrafficSplit'),
      authorizationPolicies: list('AuthorizationPolicy'),
      servicePolicies: list('ServicePolicy'),
      httpRoutes: list('HTTPRoute'),
    };
  }

  #flush(): void {
    this.#timer = undefined;
    this.#burstStart = undefined;
    if (this.#stopped || !this.#synced()) return;
    const objects = this.#objects();
    const { model, problems, kept } = meshModelFromKubernetes(objects, this.#modelOptions, this.#kept);
    this.#kept = kept;
    const hash = modelHash(model, problems);
    if (hash !== this.#hash) {
      this.#hash = hash;
      this.#model = model;
      this.#problems = problems;
      this.#emits++;
      try {
        this.#o.onChange(model, problems);
      } catch (error) {
        this.#report({ source: 'onChange', error, message: messageOf(error) });
      }
    }
    try {
      const services = (this.#model ?? model).services.map((x) => `${x.name}.${x.namespace}`);
      const { trafficSplits, authorizationPolicies, servicePolicies, httpRoutes } = objects;
      this.#o.onObjects?.({ trafficSplits, authorizationPolicies, servicePolicies: servicePolicies ?? [], httpRoutes, services }, this.#problems);
    } catch (error) {
      this.#report({ source: 'onObjects', error, message: messageOf(error) });
    }
  }
}

// ---- the real client -----------------------------------------------------------------------------

interface KubeClient {
  factory: InformerFactory;
  hasHTTPRoute: () => Promise<boolean>;
}

/** makeInformer-backed informers and the discovery check (the client library is loaded here, lazily). */
async function kubeClient(kc: KubeConfig, namespace: string | undefined): Promise<KubeClient> {
  const k8s = await import('@kubernetes/client-node');
  const { fetch } = await import('undici');
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const discovery = kc.makeApiClient(k8s.DiscoveryV1Api);
  const custom = kc.makeApiClient(k8s.CustomObjectsApi);
  const ns = namespace;
  const nsPath = ns ? `/namespaces/${encodeURIComponent(ns)}` : '';
  type Lister = () => Promise<KubernetesListObject<KubernetesObject>>;
  const cr = (group: string, version: string, plural: string): { path: string; list: Lister } => ({
    path: `/apis/${group}/${version}${nsPath}/${plural}`,
    list: () => (ns ? custom.listNamespacedCustomObject({ group, version, namespace: ns, plural }) : custom.listClusterCustomObject({ group, version, plural })) as Promise<KubernetesListObject<KubernetesObject>>,
  });
  const resources: Record<WatchedKind, { path: string; list: Lister }> = {
    Service: { path: `/api/v1${nsPath}/services`, list: () => (ns ? core.listNamespacedService({ namespace: ns }) : core.listServiceForAllNamespaces()) },
    EndpointSlice: {
      path: `/apis/discovery.k8s.io/v1${nsPath}/endpointslices`,
      list: () => (ns ? discovery.listNamespacedEndpointSlice({ namespace: ns }) : discovery.listEndpointSliceForAllNamespaces()),
    },
    Pod: { path: `/api/v1${nsPath}/pods`, list: () => (ns ? core.listNamespacedPod({ namespace: ns }) : core.listPodForAllNamespaces()) },
    TrafficSplit: cr('meshlet.io', 'v1alpha1', 'trafficsplits'),
    AuthorizationPolicy: cr('meshlet.io', 'v1alpha1', 'authorizationpolicies'),
    ServicePolicy: cr('meshlet.io', 'v1alpha1', 'servicepolicies'),
    HTTPRoute: cr(GATEWAY_GROUP, 'v1', 'httproutes'),
  };
  const factory: InformerFactory = (kind) => {
    const inf = k8s.makeInformer<KubernetesObject>(kc, resources[kind].path, resources[kind].list);
    return {
      onEvent: (cb) => {
        for (const verb of [k8s.ADD, k8s.UPDATE, k8s.DELETE] as const) inf.on(verb, () => cb());
      },
      onError: (cb) => inf.on(k8s.ERROR, (err?: unknown) => cb(err)),
      start: () => inf.start(),
      stop: () => inf.stop(),
      list: () => inf.list(),
    };
  };
  // API discovery (allowed to every authenticated user): 404 means the group/version is not served.
  const hasHTTPRoute = async (): Promise<boolean> => {
    const server = kc.getCurrentCluster()?.server;
    if (!server) throw new Error('no current cluster in the kubeconfig');
    const ctx = new k8s.RequestContext(`${server}/apis/${GATEWAY_GROUP}/v1`, k8s.HttpMethod.GET);
    await kc.applySecurityAuthentication(ctx);
    const res = await fetch(ctx.getUrl(), { headers: ctx.getHeaders(), dispatcher: ctx.getDispatcher(), signal: AbortSignal.timeout(10_000) });
    if (res.status === 404) {
      await res.body?.cancel();
      return false;
    }
    if (res.status !== 200) {
      await res.body?.cancel();
      throw new Error(`API discovery of ${GATEWAY_GROUP}/v1: HTTP ${res.status}`);
    }
    const list = (await res.json()) as { resources?: Array<{ name?: string }> };
    return (list.resources ?? []).some((r) => r.name === 'httproutes');
  };
  return { factory, hasHTTPRoute };
}
