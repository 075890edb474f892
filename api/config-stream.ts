// The config stream's wire format, shared by the control plane and the proxy. A proxy holds
// GET /v1/config/stream (mTLS; its identity is its client certificate) and reads NDJSON messages;
// it answers each config with POST /v1/config/ack: the version it runs, or why it refused it.
import type { Inbound, Problem, ProxyConfig, Service } from './proxy-config.ts';
import { decodeLabels, encodeLabels, type PodLabels } from './pod-labels.ts';

export const CONFIG_STREAM_PATH = '/v1/config/stream';
export const CONFIG_ACK_PATH = '/v1/config/ack';

/** Query parameters of the stream request: who the proxy is beyond its identity, what it runs. */
export interface StreamParams {
  workload: string;
  namespace: string;
  pod: string;
  /** Services this workload serves (its inbound side), comma-separated on the wire. */
  services: string[];
  /**
   * The Pod's labels (an injected proxy reads them from its downward-API file at each connect): the
   * control plane adds the Services of the proxy's namespace whose selector matches them to
   * `services`. Undefined: not sent (a proxy injected before labels were reported, or not in a Pod).
   */
  labels?: PodLabels | undefined;
  /** The version the proxy runs now (resume: nothing is sent until the view differs). */
  version: string;
}

/**
 * What changed from the view `base` to the view `version`: services added or changed (whole),
 * services removed (by name), and the inbound side or trust bundle when they changed (null:
 * removed). The control plane sends one instead of the full config when it is much smaller and
 * the proxy ACKed (or was sent) `base`; a proxy that does not run `base` NACKs it with a problem
 * at `/base`, and gets the full config.
 */
export interface ConfigDelta {
  type: 'delta';
  version: string;
  base: string;
  upsert: Service[];
  remove: string[];
  inbound?: Inbound | null;
  trustBundle?: string | null;
}

export type StreamMessage =
  /** `pingMs`: how often the control plane pings an idle stream; a proxy that hears nothing for a few of them reconnects. */
  | { type: 'hello'; stream: string; pingMs?: number }
  | { type: 'config'; version: string; config: ProxyConfig }
  | ConfigDelta
  | { type: 'ping' };

/** The problem path a proxy NACKs a delta with when it does not run the delta's base. */
export const DELTA_BASE_PATH = '/base';

const byName = (a: Service, b: Service): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/**
 * `base` with `delta` applied: the document the full config of `delta.version` would be (services
 * in name order, as views are built). Pure; the result goes through the same validation as a full
 * config. Undefined when `base` is not the delta's base.
 */
export function applyDelta(base: Readonly<ProxyConfig>, delta: ConfigDelta): ProxyConfig | undefined {
  if (base.version !== delta.base) return undefined;
  const services = new Map(base.services.map((x) => [x.name, x]));
  for (const name of delta.remove) services.delete(name);
  for (const x of delta.upsert) services.set(x.name, x);
  const next: ProxyConfig = { version: delta.version, services: [...services.values()].toSorted(byName) };
  const inbound = delta.inbound === undefined ? base.inbound : (delta.inbound ?? undefined);
  const trustBundle = delta.trustBundle === undefined ? base.trustBundle : (delta.trustBundle ?? undefined);
  if (inbound !== undefined) next.inbound = inbound;
  if (trustBundle !== undefined) next.trustBundle = trustBundle;
  return next;
}

export interface Ack {
  stream: string;
  version: string;
  ok: boolean;
  problems?: Problem[];
}

export function encodeParams(p: StreamParams): string {
  const q = new URLSearchParams({ workload: p.workload, namespace: p.namespace, pod: p.pod, services: p.services.join(','), version: p.version });
  if (p.labels !== undefined) q.set('labels', encodeLabels(p.labels));
  return `${CONFIG_STREAM_PATH}?${q.toString()}`;
}

/** The stream request's parameters, or why they cannot be used (malformed or oversized labels). */
export function decodeParams(url: string): { ok: true; params: StreamParams } | { ok: false; problem: string } {
  const q = new URL(url, 'https://x').searchParams;
  const params: StreamParams = {
    workload: q.get('workload') ?? '',
    namespace: q.get('namespace') ?? '',
    pod: q.get('pod') ?? '',
    services: (q.get('services') ?? '').split(',').filter(Boolean),
    version: q.get('version') ?? '',
  };
  const raw = q.get('labels');
  if (raw === null) return { ok: true, params };
  const labels = decodeLabels(raw);
  return labels.ok ? { ok: true, params: { ...params, labels: labels.labels } } : { ok: false, problem: `labels: ${labels.problem}` };
}
