// Writes each TrafficSplit's, AuthorizationPolicy's and ServicePolicy's status (resource-status.ts decides what it
// says) and our entries of each HTTPRoute's status.parents (route-status.ts) through the status
// subresource, only where the object does not carry it yet; failures back off and never reach the push.
import type { ConfigurationOptions, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import type { Clock, Random } from '../../api/runtime.ts';
import { API_GROUP, type ResourceStatus } from '../../api/resources.ts';
import { equalJitter } from '../../api/backoff.ts';
import type { WallClock } from '../ca/wall-clock.ts';
import type { KubeProblem } from './kube-model.ts';
import { STATUS_FIELD_MANAGER, applyBody, desiredStatus, hasStatus, statusTarget, type StatusKind, type StatusTarget } from './resource-status.ts';
import { GATEWAY_API_VERSION, desiredRouteStatus, hasRouteStatus, routeContentKey } from './route-status.ts';

/*
 * How it behaves:
 * - `update(objects, problems)` is called after every rebuild of the Kubernetes source (kube-source.ts
 *   onObjects), with the informers' objects (status included) and the problems /config-problems
 *   lists. It compares what each object should say with what it says; equal: nothing is written.
 *   A model rebuild, a re-list or the echo of our own write changes nothing, so it writes nothing.
 * - Our write's watch event arrives after the write returns; until the cache shows a newer
 *   resourceVersion than the one we wrote over, the object is not written again.
 * - Replicas: every replica runs this, derives the same status from the same API state, and
 *   applies it as the same field manager; lastTransitionTime is carried over while the status
 *   value holds. So two replicas write the same bytes and the second apply changes nothing (when
 *   both write one transition at once, their times may differ by a second: one more write, then
 *   both carry the time that landed). Should two
 *   writers disagree for good (two versions during a rollout wording a message differently), each
 *   rewrite of the same content waits twice as long as the last (rewrite backoff, up to 5 min):
 *   they cannot flap faster than that.
 * - A failed write (RBAC missing, API down) is logged at warn and retried after a jittered
 *   exponential backoff (1 s doubling to 60 s), or at once when what the object should say
 *   changes. At most `concurrency` writes are in flight.
 * - A conflict (409: the object changed since the watch showed it, or was deleted and re-created)
 *   is not retried blindly: the object is written again once the watch shows a newer version.
 * - HTTPRoutes: status.parents is an atomic list (the Gateway API CRD gives it no list type), so a
 *   server-side apply replaces every controller's entries. Ours are written together with the
 *   others' exactly as the watch showed them, with that resourceVersion as a precondition: an
 *   entry another controller wrote meanwhile makes ours a conflict (above), never a loss.
 */

export type StatusPatch = (target: StatusTarget, body: Record<string, unknown>) => Promise<void>;
export type StatusLog = (level: 'info' | 'warn', msg: string, fields: Record<string, unknown>) => void;

export interface Backoff {
  baseMs: number;
  maxMs: number;
}
export const DEFAULT_RETRY: Backoff = { baseMs: 1000, maxMs: 60_000 };
export const DEFAULT_REWRITE: Backoff = { baseMs: 1000, maxMs: 300_000 };
/** A rewrite this long after the last one starts the rewrite backoff over. */
const REWRITE_RESET_MS = 600_000;

export interface StatusWriterOptions {
  patch: StatusPatch;
  /** lastTransitionTime. */
  wallClock: WallClock;
  /** Backoff. */
  clock: Clock;
  random?: Random;
  log: StatusLog;
  concurrency?: number;
  retry?: Backoff;
  rewrite?: Backoff;
}

export interface StatusObjects {
  trafficSplits: readonly unknown[];
  authorizationPolicies: readonly unknown[];
  servicePolicies?: readonly unknown[];
  httpRoutes?: readonly unknown[];
  /** The Services that exist, `name.namespace`: an HTTPRoute's parents and backends. */
  services?: readonly string[];
}

export interface StatusWriterStats {
  written: number;
  failed: number;
}

interface Track {
  uid: string | undefined;
  /** Content (without lastTransitionTime) of the last successful write. */
  lastKey?: string;
  /** Content of the last write tried, successful or not. */
  triedKey?: string;
  /** The resourceVersion the object had when we last wrote it: a cache still showing it has not seen our write. */
  writtenOver?: string | undefined;
  /** Successful writes of lastKey in a row (the first, then rewrites after someone changed it). */
  sameWrites: number;
  lastWriteAt: number;
  failures: number;
  /** No write before this (clock ms): backoff after a failure or a rewrite. */
  notBefore: number;
  inFlight: boolean;
}

interface Job {
  target: StatusTarget;
  /** The server-side apply body. */
  body: Record<string, unknown>;
  /** What it says, without transition times. */
  key: string;
  /** For the log: the (first) Accepted condition written. */
  accepted: { status?: string; reason?: string | undefined } | undefined;
  track: Track;
}

const contentKey = (s: ResourceStatus): string => JSON.stringify({ ...s, conditions: s.conditions?.map((c) => ({ ...c, lastTransitionTime: undefined })) });

/** Exponential, capped, equal jitter (between half the ceiling and the ceiling); `n` >= 1. */
const backoffMs = (n: number, b: Backoff, random: number): number => equalJitter(b.baseMs, b.maxMs, n, random);

const messageOf = (err: unknown): string => {
  const e = err as { code?: unknown; body?: unknown } | null;
  if (e && typeof e === 'object' && typeof e.code === 'number') {
    try {
      const status = JSON.parse(String(e.body)) as { message?: unknown };
      if (typeof status.message === 'string') return `HTTP ${e.code}: ${status.message}`;
    } catch {
      // not a Status body
    }
    return `HTTP ${e.code}`;
  }
  return err instanceof Error ? err.message : String(err);
};

export class StatusWriter {
  readonly #o: StatusWriterOptions;
  readonly #tracks = new Map<string, Track>();
  #objects: StatusObjects = { trafficSplits: [], authorizationPolicies: [] };
  #problems: readonly KubeProblem[] = [];
  #queue: Job[] = [];
  #running = 0;
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Infinity;
  #stopped = false;
  readonly #stats: StatusWriterStats = { written: 0, failed: 0 };

  constructor(o: StatusWriterOptions) {
    this.#o = o;
  }

  /** The objects as the informers hold them and every problem of the last rebuild. */
  update(objects: StatusObjects, problems: readonly KubeProblem[]): void {
    this.#objects = objects;
    this.#problems = problems;
    this.#plan();
  }

  stats(): StatusWriterStats {
    return { ...this.#stats };
  }

  /** Idle: nothing queued or in flight. */
  get idle(): boolean {
    return this.#running === 0 && this.#queue.length === 0;
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#queue = [];
  }

  #plan(): void {
    if (this.#stopped) return;
    const byObject = new Map<string, KubeProblem[]>();
    for (const p of this.#problems) {
      const k = `${p.kind}/${p.namespace}/${p.name}`;
      byObject.set(k, [...(byObject.get(k) ?? []), p]);
    }
    const now = this.#o.clock.now();
    const seen = new Set<string>();
    const queue: Job[] = [];
    let wake = Infinity;
    const services = new Set(this.#objects.services ?? []);
    const visit = (kind: StatusKind, o: unknown) => {
      const target = statusTarget(kind, o);
      if (!target) return;
      const id = `${kind}/${target.namespace}/${target.name}`;
      seen.add(id);
      let track = this.#tracks.get(id);
      if (!track || track.uid !== target.uid) {
        track = { uid: target.uid, sameWrites: 0, lastWriteAt: -Infinity, failures: 0, notBefore: -Infinity, inFlight: false };
        this.#tracks.set(id, track);
      }
      let write: Omit<Job, 'target' | 'track'>;
      if (kind === 'HTTPRoute') {
        const desired = desiredRouteStatus(o, services, byObject.get(id) ?? [], this.#o.wallClock.nowMs());
        if (!desired || hasRouteStatus(o, desired)) {
          track.writtenOver = undefined;
          return;
        }
        write = { body: routeApplyBody(target, desired.parents), key: routeContentKey(desired), accepted: desired.ours[0]?.conditions.find((c) => c.type === 'Accepted') };
      } else {
        const desired = desiredStatus(target, byObject.get(id) ?? [], this.#o.wallClock.nowMs());
        if (hasStatus(target, desired)) {
          track.writtenOver = undefined;
          return;
        }
        write = { body: applyBody(target, desired), key: contentKey(desired), accepted: desired.conditions?.find((c) => c.type === 'Accepted') };
      }
      if (track.inFlight) return; // its completion plans again
      if (track.writtenOver !== undefined && track.writtenOver === target.resourceVersion) return; // our write's event is on its way
      const key = write.key;
      if (key !== track.triedKey) track.notBefore = -Infinity; // something new to say: now, whatever the backoff
      if (now < track.notBefore) {
        wake = Math.min(wake, track.notBefore);
        return;
      }
      queue.push({ target, ...write, track });
    };
    for (const o of this.#objects.trafficSplits) visit('TrafficSplit', o);
    for (const o of this.#objects.authorizationPolicies) visit('AuthorizationPolicy', o);
    for (const o of this.#objects.servicePolicies ?? []) visit('ServicePolicy', o);
    for (const o of this.#objects.httpRoutes ?? []) visit('HTTPRoute', o);
    for (const id of this.#tracks.keys()) if (!seen.has(id)) this.#tracks.delete(id);
    this.#queue = queue;
    this.#arm(wake);
    this.#pump();
  }

  #arm(at: number): void {
    if (at === Infinity || at >= this.#timerAt) return;
    clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#timerAt = Infinity;
      this.#plan();
    }, Math.max(0, at - this.#o.clock.now()));
    this.#timer.unref();
  }

  #pump(): void {
    while (!this.#stopped && this.#running < (this.#o.concurrency ?? 4)) {
      const job = this.#queue.shift();
      if (!job) return;
      if (job.track.inFlight) continue;
      void this.#write(job);
    }
  }

  async #write(job: Job): Promise<void> {
    const { target, body, key, accepted, track } = job;
    const object = `${target.kind}/${target.namespace}/${target.name}`;
    track.inFlight = true;
    track.triedKey = key;
    this.#running++;
    try {
      await this.#o.patch(target, body);
      const now = this.#o.clock.now();
      track.sameWrites = key === track.lastKey && now - track.lastWriteAt < REWRITE_RESET_MS ? track.sameWrites + 1 : 1;
      track.lastKey = key;
      track.lastWriteAt = now;
      track.writtenOver = target.resourceVersion;
      track.failures = 0;
      // The first write of a content may be followed at once by the next content; a rewrite of the same waits.
      track.notBefore = now + backoffMs(track.sameWrites, this.#o.rewrite ?? DEFAULT_REWRITE, 1);
      this.#stats.written++;
      this.#o.log('info', 'resource status written', { object, generation: target.generation ?? null, accepted: accepted?.status, reason: accepted?.reason });
    } catch (err) {
      if ((err as { code?: unknown } | null)?.code === 409) {
        // Someone wrote the object since the watch showed it: write over the next version it shows, not after a backoff.
        track.writtenOver = target.resourceVersion;
        track.notBefore = -Infinity;
        if (!this.#stopped) {
          this.#o.log('info', 'resource status not written: the object changed since the watch showed it; writing again over the version it shows next', { object, error: messageOf(err) });
          this.#arm(this.#o.clock.now());
        }
      } else this.#failed(track, object, err);
    } finally {
      track.inFlight = false;
      this.#running--;
    }
    this.#pump();
  }

  #failed(track: Track, object: string, err: unknown): void {
    track.failures++;
    const delay = backoffMs(track.failures, this.#o.retry ?? DEFAULT_RETRY, (this.#o.random ?? Math.random)());
    track.notBefore = this.#o.clock.now() + delay;
    this.#stats.failed++;
    if (!this.#stopped) {
      this.#o.log('warn', 'cannot write resource status; config pushes are not affected, retrying', { object, error: messageOf(err), retryInMs: delay });
      this.#arm(track.notBefore);
    }
  }
}

// ---- the real API --------------------------------------------------------------------------------

const RESOURCES: Record<StatusKind, { group: string; version: string; plural: string }> = {
  TrafficSplit: { group: API_GROUP, version: 'v1alpha1', plural: 'trafficsplits' },
  AuthorizationPolicy: { group: API_GROUP, version: 'v1alpha1', plural: 'authorizationpolicies' },
  ServicePolicy: { group: API_GROUP, version: 'v1alpha1', plural: 'servicepolicies' },
  HTTPRoute: { group: 'gateway.networking.k8s.io', version: 'v1', plural: 'httproutes' },
};

/**
 * An HTTPRoute's status: every entry of status.parents (the others' as read, then ours), with the
 * uid and the resourceVersion read as preconditions (the list is atomic; see the top of this file).
 */
function routeApplyBody(target: StatusTarget, parents: readonly unknown[]): Record<string, unknown> {
  const preconditions = { ...(target.uid !== undefined ? { uid: target.uid } : {}), ...(target.resourceVersion !== undefined ? { resourceVersion: target.resourceVersion } : {}) };
  return { apiVersion: GATEWAY_API_VERSION, kind: 'HTTPRoute', metadata: { name: target.name, namespace: target.namespace, ...preconditions }, status: { parents } };
}

/**
 * Server-side apply on the status subresource (`PATCH .../<plural>/<name>/status`,
 * application/apply-patch+yaml, fieldManager meshlet-control-plane, force: the status is ours; on an
 * HTTPRoute, the whole atomic status.parents, taken over with the others' entries kept as read).
 * The client library is loaded on the first write.
 */
export function kubeStatusPatch(kc: KubeConfig): StatusPatch {
  let client: Promise<{ custom: CustomObjectsApi; options: ConfigurationOptions }> | undefined;
  return async (target, body) => {
    const { custom, options } = await (client ??= import('@kubernetes/client-node').then((k8s) => ({
      custom: kc.makeApiClient(k8s.CustomObjectsApi),
      options: k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.ServerSideApply),
    })));
    await custom.patchNamespacedCustomObjectStatus(
      { ...RESOURCES[target.kind], namespace: target.namespace, name: target.name, body, fieldManager: STATUS_FIELD_MANAGER, force: true },
      options,
    );
  };
}
