// Hop-by-hop header handling (RFC 9110 §7.6.1) on raw header lists: names keep their case,
// connection-specific fields and any field named in Connection are dropped.

/**
 * Always hop-by-hop, plus Host (set per hop) and Expect (this hop answers 100-continue itself).
 * Lower-case. Content-Length stays: bodies are forwarded with the framing they came with.
 */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade', 'trailer', 'proxy-authenticate', 'proxy-authorization', 'host', 'expect']);

/** Set by an outbound proxy for the inbound proxy it calls (inbound/app-port.ts); never forwarded as received. */
const DST_PORT_HEADER = 'meshlet-dst-port';
/** Set by a caller (a meshed ingress) to name the destination service instead of Host; never forwarded. */
export const DST_OVERRIDE_HEADER = 'meshlet-dst-override';

/** Tracing headers this hop rewrites. */
const TRACE_HEADERS = new Set(['traceparent', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid', 'x-b3-sampled', 'x-b3-flags', 'b3']);

/**
 * A request's trace fields: forwarded as received ('keep', responses), replaced by this hop's
 * ('replace': a valid traceparent came in, its tracestate travels on), or replaced with the
 * caller's tracestate discarded ('restart': no valid traceparent came in, and W3C Trace Context
 * says a tracestate without one is invalid and MUST be discarded).
 */
export type TraceFields = 'keep' | 'replace' | 'restart';

/** Fields as parsed: raw [name, value, ...] and their lower-case names (http1/head.ts). */
export interface RawFields {
  readonly raw: readonly string[];
  readonly lower: readonly string[];
}

function connectionTokens(f: RawFields): Set<string> | undefined {
  let tokens: Set<string> | undefined;
  const lower = f.lower;
  for (let i = 0; i < lower.length; i++) {
    if (lower[i] === 'connection') {
      for (const t of f.raw[2 * i + 1]!.split(',')) {
        const v = t.trim().toLowerCase();
        if (v) (tokens ??= new Set()).add(v);
      }
    }
  }
  return tokens;
}

/** Request headers to forward upstream: hop-by-hop, Host and meshlet-dst-port removed (both are set separately). */
export function forwardRequestHeaders(f: RawFields, trace: TraceFields): string[] {
  const named = connectionTokens(f);
  const dropTrace = trace !== 'keep';
  const dropState = trace === 'restart';
  const out: string[] = [];
  const lower = f.lower;
  const raw = f.raw;
  for (let i = 0; i < lower.length; i++) {
    const l = lower[i]!;
    if (HOP_BY_HOP.has(l) || named?.has(l) || (dropTrace && TRACE_HEADERS.has(l)) || (dropState && l === 'tracestate') || l === DST_PORT_HEADER || l === DST_OVERRIDE_HEADER) continue;
    out.push(raw[2 * i]!, raw[2 * i + 1]!);
  }
  return out;
}

/**
 * Response headers to forward to the client: hop-by-hop removed. Repeated Content-Length fields
 * (head.ts accepts them only when every value is the same) go on as one (RFC 9110 §8.6): the next
 * hop may refuse the repetition.
 */
export function forwardResponseHeaders(f: RawFields): string[] {
  const out = forwardRequestHeaders(f, 'keep');
  const lower = f.lower;
  const first = lower.indexOf('content-length');
  if (first === -1 || lower.lastIndexOf('content-length') === first) return out;
  const length = f.raw[2 * first + 1]!.split(',')[0]!.trim();
  const kept: string[] = [];
  for (let i = 0; i < out.length; i += 2) if (out[i]!.toLowerCase() !== 'content-length') kept.push(out[i]!, out[i + 1]!);
  kept.push('content-length', length);
  return kept;
}
