// Trace context per hop: reads W3C traceparent/tracestate or B3 from the request, opens a new
// span for this hop and writes its ids downstream. Costs a few string ops when not exporting.
import { randomFillSync } from 'node:crypto';
import type { Tracer } from '@opentelemetry/api';

export interface ParentContext {
  traceId: string;
  spanId: string;
  sampled: boolean;
  /** A valid traceparent, or B3 when the traceparent was missing or invalid (its tracestate is then discarded). */
  source: 'traceparent' | 'b3';
}

export interface HopSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly sampled: boolean;
  /** Ends the span (exporting tracer only). */
  end(attrs: SpanEnd): void;
}

export interface SpanEnd {
  status: number;
  errorReason: string;
  attributes: Record<string, string | number>;
}

export interface Tracing {
  /** False when spans go nowhere: callers skip building span attributes. */
  readonly exporting: boolean;
  start(name: string, kind: 'server' | 'client', parent: ParentContext | undefined, attributes: Record<string, string | number>): HopSpan;
}

const HEX = /^[0-9a-f]+$/;
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
  return { traceId, spanId, sampled: ((last <= 57 ? last - 48 : last - 87) & 1) === 1, source: 'traceparent' };
}

/** Request fields by lower-case name (http1/head.ts Fields). */
export interface FieldLookup {
  get(lower: string): string | undefined;
}

/** Parse B3 (single `b3` header or X-B3-* multi headers). 64-bit trace ids are left-padded. */
export function parseB3(headers: FieldLookup): ParentContext | undefined {
  const single = headers.get('b3');
  let traceId: string | undefined;
  let spanId: string | undefined;
  let sampled = false;
  if (typeof single === 'string') {
    const parts = single.split('-');
    [traceId, spanId] = parts;
    sampled = parts[2] === '1' || parts[2] === 'd';
  } else {
    traceId = headers.get('x-b3-traceid');
    spanId = headers.get('x-b3-spanid');
    sampled = headers.get('x-b3-sampled') === '1' || headers.get('x-b3-flags') === '1';
  }
  if (!traceId || !spanId) return undefined;
  traceId = traceId.toLowerCase();
  spanId = spanId.toLowerCase();
  if (traceId.length === 16) traceId = '0000000000000000' + traceId;
  if (traceId.length !== 32 || spanId.length !== 16 || !HEX.test(traceId) || !HEX.test(spanId)) return undefined;
  return { traceId, spanId, sampled, source: 'b3' };
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
    return new IdOnlySpan(parent?.traceId ?? this.#ids.hex(16), this.#ids.hex(8), parent?.sampled ?? false);
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
    const ctx = parent
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
        span.setAttribute('http.response.status_code', e.status);
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
 * trace was continued from B3 (the traceparent was missing or invalid, whether sent or not).
 */
export function pushPropagationHeaders(out: string[], span: HopSpan, parent: ParentContext | undefined): void {
  out.push('traceparent', `00-${span.traceId}-${span.spanId}-${span.sampled ? '01' : '00'}`);
  if (parent?.source === 'b3') out.push('x-b3-traceid', span.traceId, 'x-b3-spanid', span.spanId, 'x-b3-sampled', span.sampled ? '1' : '0');
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
