// The config stream's wire format, shared by the control plane and the proxy. A proxy holds
// GET /v1/config/stream (mTLS; its identity is its client certificate) and reads NDJSON messages;
// it answers each config with POST /v1/config/ack: the version it runs, or why it refused it.
import { Type } from '@sinclair/typebox';
import { MAX_CONFIG_BYTES, schemaProblems, ProxyConfig as ProxyConfigSchema, type Inbound, type Problem, type ProxyConfig, type Service } from './proxy-config.ts';
import { decodeLabels, encodeLabels, type PodLabels } from './pod-labels.ts';
import { parseOutboundNamespaces } from './outbound-namespaces.ts';

export const CONFIG_STREAM_PATH = '/v1/config/stream';
export const CONFIG_ACK_PATH = '/v1/config/ack';
/**
 * Most bytes of one stream message (line): a config document at its limit plus the envelope. A
 * proxy drops a stream whose line grows past it and reconnects; the control plane sends no bigger
 * line (it reports the view instead), so a proxy never loops on a view it would drop.
 */
export const MAX_STREAM_LINE_BYTES = MAX_CONFIG_BYTES + 64 * 1024;

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
  /**
   * Namespaces whose services the proxy wants beside its own (api/outbound-namespaces.ts; sorted,
   * once each): its view holds those, its own, and the split backends they route to. Undefined:
   * the whole mesh.
   */
  namespaces?: readonly string[] | undefined;
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

/**
 * The envelope of each message, checked before the proxy reads a field of it: what a config or a
 * delta carries (services, inbound, bundle) is checked by parseProxyConfig once applied, but the
 * delta's lists must be lists (of objects with a name) for applyDelta to merge them. Unknown
 * members are allowed, so a newer control plane may add some.
 */
const Versioned = { version: Type.String({ minLength: 1 }) };
const MESSAGE_SCHEMAS = {
  hello: Type.Object({ type: Type.Literal('hello'), stream: Type.String(), pingMs: Type.Optional(Type.Number()) }),
  ping: Type.Object({ type: Type.Literal('ping') }),
  config: Type.Object({ type: Type.Literal('config'), ...Versioned, config: Type.Unknown() }),
  delta: Type.Object({
    type: Type.Literal('delta'),
    ...Versioned,
    base: Type.String(),
    upsert: Type.Array(Type.Object({ name: Type.String() })),
    remove: Type.Array(Type.String()),
    inbound: Type.Optional(Type.Union([Type.Object({}), Type.Null()])),
    trustBundle: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  }),
} as const;

export type ParsedMessage =
  | { ok: true; message: StreamMessage }
  /** `version`: the config or delta version the message names, when it names one (to NACK it). */
  | { ok: false; version: string | undefined; problems: Problem[] };

/** One line of the stream, checked; never throws. A line that is not one of the messages above is a problem. */
export function parseStreamMessage(line: string): ParsedMessage {
  let m: unknown;
  try {
    m = JSON.parse(line);
  } catch (err) {
    return { ok: false, version: undefined, problems: [{ path: '/', message: `not JSON: ${(err as Error).message}` }] };
  }
  const type = typeof m === 'object' && m !== null ? (m as { type?: unknown }).type : undefined;
  const version = typeof (m as { version?: unknown } | null)?.version === 'string' ? (m as { version: string }).version : undefined;
  if (typeof type !== 'string' || !Object.hasOwn(MESSAGE_SCHEMAS, type)) {
    return { ok: false, version: undefined, problems: [{ path: '/type', message: `expected a message of type ${Object.keys(MESSAGE_SCHEMAS).join(', ')}, got ${JSON.stringify(type) ?? 'nothing'}` }] };
  }
  // One problem per field: a missing list is also "not a list", which says nothing more.
  const problems = schemaProblems(MESSAGE_SCHEMAS[type as keyof typeof MESSAGE_SCHEMAS], m).filter((p, i, all) => all.findIndex((q) => q.path === p.path) === i);
  return problems.length === 0 ? { ok: true, message: m as StreamMessage } : { ok: false, version: type === 'config' || type === 'delta' ? version : undefined, problems };
}

export interface Ack {
  stream: string;
  version: string;
  ok: boolean;
  problems?: Problem[];
}

const AckSchema = Type.Object({
  stream: Type.String(),
  version: Type.String(),
  ok: Type.Boolean(),
  problems: Type.Optional(Type.Array(Type.Object({ path: Type.String(), message: Type.String() }))),
});

/** An ACK body as a proxy posts it, checked before any field is read; never throws. */
export function parseAck(body: string): { ok: true; ack: Ack } | { ok: false; problem: string } {
  let a: unknown;
  try {
    a = JSON.parse(body);
  } catch (err) {
    return { ok: false, problem: `not JSON: ${(err as Error).message}` };
  }
  // One problem per field: a missing string is also "not a string", which says nothing more.
  const problems = schemaProblems(AckSchema, a).filter((p, i, all) => all.findIndex((q) => q.path === p.path) === i);
  if (problems.length > 0) return { ok: false, problem: problems.map((p) => `${p.path || '/'}: ${p.message}`).join('; ') };
  return { ok: true, ack: a as Ack };
}

/** What a refusal's first problem can name: a member of a config or of a delta, or the message's type. */
const NACK_FIELDS: ReadonlySet<string> = new Set([...Object.keys(ProxyConfigSchema.properties), ...Object.keys(MESSAGE_SCHEMAS.delta.properties)]);

/**
 * The field a NACK refused, as a metric label from a closed set: the top-level member its first
 * problem names; `refused` when it names none, `other` for a name outside the wire format (a proxy
 * of another version, a bug), so what proxies send cannot grow the number of series.
 */
export function nackField(problems: readonly Problem[] | undefined): string {
  const field = problems?.[0]?.path.split('/')[1];
  if (!field) return 'refused';
  return NACK_FIELDS.has(field) ? field : 'other';
}

export function encodeParams(p: StreamParams): string {
  const q = new URLSearchParams({ workload: p.workload, namespace: p.namespace, pod: p.pod, services: p.services.join(','), version: p.version });
  if (p.labels !== undefined) q.set('labels', encodeLabels(p.labels));
  if (p.namespaces !== undefined) q.set('namespaces', p.namespaces.join(','));
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
  const ns = q.get('namespaces');
  if (ns !== null) {
    const parsed = parseOutboundNamespaces(ns);
    if (!parsed.ok) return { ok: false, problem: `namespaces: ${parsed.problem}` };
    params.namespaces = parsed.namespaces;
  }
  const raw = q.get('labels');
  if (raw === null) return { ok: true, params };
  const labels = decodeLabels(raw);
  return labels.ok ? { ok: true, params: { ...params, labels: labels.labels } } : { ok: false, problem: `labels: ${labels.problem}` };
}
