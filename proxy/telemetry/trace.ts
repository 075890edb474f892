// Trace context per hop: reads W3C traceparent/tracestate or B3 from the request, opens a new
// span for this hop and writes its ids downstream. Costs a few string ops when not exporting.
import { randomFillSync } from 'node:crypto';
import type { Tracer } from '@opentelemetry/api';

export interface ParentContext {
  /** 32 lower-case hex digits; '' when B3 sent only a sampling decision (the trace starts here). */
  traceId: string;
  /** 16 lower-case hex digits; '' with traceId. */
  spanId: string;
  /** The caller's sampling decision; undefined when B3 left it to the receiver (no sampling flag). */
  sampled: boolean | undefined;
  /** B3 debug (`X-B3-Flags: 1`, `b3: ...-d`): sampled, and passed on as debug. */
  debug: boolean;
  /**
   * A valid traceparent, or when that was missing or invalid (its tracestate is then discarded)
   * B3: the X-B3-* headers ('b3') or the single `b3` header ('b3-single'), passed on in that form.
   */
  source: 'traceparent' | 'b3' | 'b3-single';
}

export interface HopSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly sampled: boolean;
  /** Ends the span (exporting tracer only). */
  end(attrs: SpanEnd): void;
}

export interface SpanEnd {
  /** The response status sent; 0 when there was no response. */
  status: number;
  errorReason: string;
  attributes: Record<string, string | number>;
}

export interface Tracing {
  /** False when spans go nowhere: callers skip building span attributes. */
  readonly exporting: boolean;
  start(name: string, kind: 'server' | 'client', parent: ParentContext | undefined, attributes: Record<string, string | number>): HopSpan;
}

const ZERO_TRACE = '00000000000000000000000000000000';
const ZERO_SPAN = '0000000000000000';

/** Whether s[from, to) is lower-case hex: a loop over char codes, no regex or slice per request. */
function isLowerHex(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}

/**
 * Parse a W3C traceparent `vv-<32 hex trace id>-<16 hex span id>-ff`, lower-case hex. Version ff is
 * invalid; 00 is exactly 55 characters; a later version is read as 00 and may go on after the
 * flags only with '-'. All-zero ids are invalid. Invalid: undefined (the trace restarts).
 */
export function parseTraceparent(v: string | undefined): ParentContext | undefined {
  if (v === undefined || v.length < 55 || v[2] !== '-' || v[35] !== '-' || v[52] !== '-') return undefined;
  if (!isLowerHex(v, 0, 2) || (v[0] === 'f' && v[1] === 'f')) return undefined;
  if (v[0] === '0' && v[1] === '0' ? v.length !== 55 : v.length > 55 && v[55] !== '-') return undefined;
  if (!isLowerHex(v, 3, 35) || !isLowerHex(v, 36, 52) || !isLowerHex(v, 53, 55)) return undefined;
  const traceId = v.slice(3, 35);
  const spanId = v.slice(36, 52);
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return undefined;
  // Sampled is bit 0 of the flags: the low bit of their last hex digit.
  const last = v.charCodeAt(54);
  return { traceId, spanId, sampled: ((last <= 57 ? last - 48 : last - 87) & 1) === 1, debug: false, source: 'traceparent' };
}

/** Request fields by lower-case name (http1/head.ts Fields). */
export interface FieldLookup {
  get(lower: string): string | undefined;
}

/** A B3 context from its parts: ids lower-cased and checked (a 64-bit trace id left-padded), or undefined. */
function b3Context(traceId: string | undefined, spanId: string | undefined, sampled: boolean | undefined, debug: boolean, source: 'b3' | 'b3-single'): ParentContext | undefined {
  if (traceId === undefined && spanId === undefined) {
    // A sampling decision alone (`b3: 0`, `X-B3-Sampled: 1`): a new trace here, with that decision.
    return sampled === undefined ? undefined : { traceId: '', spanId: '', sampled, debug, source };
  }
  if (traceId === undefined || spanId === undefined) return undefined;
  traceId = traceId.toLowerCase();
  spanId = spanId.toLowerCase();
  if (traceId.length === 16) traceId = ZERO_SPAN + traceId;
  if (traceId.length !== 32 || spanId.length !== 16 || !isLowerHex(traceId, 0, 32) || !isLowerHex(spanId, 0, 16)) return undefined;
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return undefined;
  return { traceId, spanId, sampled, debug, source };
}

/**
 * Parse B3 (https://github.com/openzipkin/b3-propagation): the single `b3` header
 * `{trace}-{span}[-{1|0|d}[-{parent}]]` or a sampling state alone (`1`, `0`, `d`), else the
 * X-B3-* headers (X-B3-Sampled `1|0`, or legacy `true|false`; X-B3-Flags `1` is debug). No
 * sampling state means the receiver decides (sampled undefined); debug implies sampled.
 */
export function parseB3(headers: FieldLookup): ParentContext | undefined {
  const single = headers.get('b3');
  let sampled: boolean | undefined;
  let debug = false;
  if (single !== undefined) {
    const parts = single.split('-');
    const n = parts.length;
    if (n > 4) return undefined;
    const state = n === 1 ? parts[0] : parts[2];
    if (state === 'd') sampled = debug = true;
    else if (state === '1') sampled = true;
    else if (state === '0') sampled = false;
    else if (state !== undefined) return undefined;
    return n === 1 ? b3Context(undefined, undefined, sampled, debug, 'b3-single') : b3Context(parts[0], parts[1], sampled, debug, 'b3-single');
  }
  debug = headers.get('x-b3-flags') === '1';
  const s = headers.get('x-b3-sampled');
  if (debug || s === '1' || s === 'true') sampled = true;
  else if (s === '0' || s === 'false') sampled = false;
  else if (s !== undefined) return undefined;
  return b3Context(headers.get('x-b3-traceid'), headers.get('x-b3-spanid'), sampled, debug, 'b3');
}

export function extractParent(headers: FieldLookup): ParentContext | undefined {
  return parseTraceparent(headers.get('traceparent')) ?? parseB3(headers);
}

/**
 * Random hex ids from a pooled buffer: one randomFill and one hex encoding per 4 KiB (256 trace
 * ids or 512 span ids); an id is a slice of that text. Encoding each id on its own called into
 * C++ two or three times a request (~0.9 % of a proxy's CPU samples at ~1000 rps).
 */
export class IdSource {
  readonly #pool = Buffer.alloc(4096);
  #hex = '';
  #off = 0;
  hex(bytes: 8 | 16): string {
    const chars = bytes * 2;
    if (this.#off + chars > this.#hex.length) {
      randomFillSync(this.#pool);
      this.#hex = this.#pool.toString('hex');
      this.#off = 0;
    }
    const s = this.#hex.slice(this.#off, this.#off + chars);
    this.#off += chars;
    return s;
  }
}

/** A hop's ids when nothing is exported (one small object per request, no closures). */
class IdOnlySpan implements HopSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly sampled: boolean;
  constructor(traceId: string, spanId: string, sampled: boolean) {
    this.traceId = traceId;
    this.spanId = spanId;
    this.sampled = sampled;
  }
  end(): void {}
}

/** Propagation only: new span ids per hop, nothing exported. */
export class IdOnlyTracing implements Tracing {
  readonly exporting = false;
  readonly #ids: IdSource;
  constructor(ids = new IdSource()) {
    this.#ids = ids;
  }
  start(_name: string, _kind: 'server' | 'client', parent: ParentContext | undefined): HopSpan {
    // A new trace (no parent, or B3 with a sampling decision alone) takes new ids; nothing is
    // sampled here unless the caller said so (a deferred B3 decision included).
    return new IdOnlySpan(parent?.traceId || this.#ids.hex(16), this.#ids.hex(8), parent?.sampled ?? false);
  }
}

/** Exporting tracing through @opentelemetry/api (an SDK must be registered). */
export class OtelTracing implements Tracing {
  readonly exporting = true;
  readonly #tracer: Tracer;
  readonly #api: typeof import('@opentelemetry/api');
  constructor(api: typeof import('@opentelemetry/api'), tracer: Tracer) {
    this.#api = api;
    this.#tracer = tracer;
  }
  start(name: string, kind: 'server' | 'client', parent: ParentContext | undefined, attributes: Record<string, string | number>): HopSpan {
    const api = this.#api;
    // A deferred B3 decision reaches the sampler as an unsampled remote parent (as OpenTelemetry's
    // own B3 propagator reads it); B3 with a sampling decision alone starts a new trace.
    const ctx = parent?.traceId
      ? api.trace.setSpanContext(api.ROOT_CONTEXT, { traceId: parent.traceId, spanId: parent.spanId, traceFlags: parent.sampled ? 1 : 0, isRemote: true })
      : api.ROOT_CONTEXT;
    const span = this.#tracer.startSpan(name, { kind: kind === 'server' ? api.SpanKind.SERVER : api.SpanKind.CLIENT, attributes }, ctx);
    const sc = span.spanContext();
    return {
      traceId: sc.traceId,
      spanId: sc.spanId,
      sampled: (sc.traceFlags & 1) === 1,
      end(e: SpanEnd) {
        span.setAttributes(e.attributes);
        // No response (status 0: the client went, or none was sent): the semantic conventions omit the attribute.
        if (e.status > 0) span.setAttribute('http.response.status_code', e.status);
        if (e.errorReason) {
          span.setAttribute('meshlet.proxy_error', e.errorReason);
          span.setAttribute('error.type', e.errorReason);
        } else if (e.status >= 500) {
          span.setAttribute('error.type', String(e.status));
        }
        if (e.status >= 500 || e.errorReason) span.setStatus({ code: api.SpanStatusCode.ERROR, message: e.errorReason || String(e.status) });
        span.end();
      },
    };
  }
}

/**
 * Append the headers to send downstream for this hop's span: traceparent always, B3 when the
 * trace was continued from B3 (the traceparent was missing or invalid, whether sent or not), in
 * the form it came in. Debug stays debug (it implies sampled, so no sampled flag beside it); a
 * decision B3 left to the receiver stays so (no flag; traceparent carries this hop's own).
 */
export function pushPropagationHeaders(out: string[], span: HopSpan, parent: ParentContext | undefined): void {
  out.push('traceparent', `00-${span.traceId}-${span.spanId}-${span.sampled ? '01' : '00'}`);
  if (parent === undefined || parent.source === 'traceparent') return;
  if (parent.source === 'b3-single') {
    let state = '';
    if (parent.debug) state = '-d';
    else if (parent.sampled !== undefined) state = span.sampled ? '-1' : '-0';
    out.push('b3', `${span.traceId}-${span.spanId}${state}`);
    return;
  }
  out.push('x-b3-traceid', span.traceId, 'x-b3-spanid', span.spanId);
  if (parent.debug) out.push('x-b3-flags', '1');
  else if (parent.sampled !== undefined) out.push('x-b3-sampled', span.sampled ? '1' : '0');
}

/** Start the OpenTelemetry SDK when the standard OTEL_* variables ask for it; else id-only tracing. */
export async function tracingFromEnv(env: NodeJS.ProcessEnv, serviceName: string): Promise<{ tracing: Tracing; shutdown: () => Promise<void> }> {
  const wants = env['OTEL_EXPORTER_OTLP_ENDPOINT'] || env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT'] || (env['OTEL_TRACES_EXPORTER'] && env['OTEL_TRACES_EXPORTER'] !== 'none');
  if (!wants || env['OTEL_SDK_DISABLED'] === 'true') return { tracing: new IdOnlyTracing(), shutdown: async () => {} };
  const api = await import('@opentelemetry/api');
  const { NodeSDK } = await import('@opentelemetry/sdk-node');
  if (!env['OTEL_SERVICE_NAME']) env['OTEL_SERVICE_NAME'] = serviceName;
  const sdk = new NodeSDK({ instrumentations: [] });
  sdk.start();
  return { tracing: new OtelTracing(api, api.trace.getTracer('meshlet-proxy')), shutdown: () => sdk.shutdown() };
}
