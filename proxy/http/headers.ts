// Hop-by-hop header handling (RFC 9110 §7.6.1) on raw header lists: names keep their case,
// connection-specific fields and any field named in Connection are dropped.

/** Always hop-by-hop, plus headers undici must compute itself. Lower-case. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade', 'trailer', 'proxy-authenticate', 'proxy-authorization', 'host']);

/** Set by an outbound proxy for the inbound proxy it calls (inbound/app-port.ts); never forwarded as received. */
const DST_PORT_HEADER = 'meshlet-dst-port';

/** Tracing headers this hop rewrites. */
const TRACE_HEADERS = new Set(['traceparent', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid', 'x-b3-sampled', 'x-b3-flags', 'b3']);

function connectionTokens(raw: readonly string[]): Set<string> | undefined {
  let tokens: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 10 && raw[i]!.toLowerCase() === 'connection') {
      for (const t of raw[i + 1]!.split(',')) {
        const v = t.trim().toLowerCase();
        if (v) (tokens ??= new Set()).add(v);
      }
    }
  }
  return tokens;
}

/** Request headers to forward upstream: hop-by-hop, Host and meshlet-dst-port removed (both are set separately). */
export function forwardRequestHeaders(raw: readonly string[], dropTrace: boolean): string[] {
  const named = connectionTokens(raw);
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || named?.has(lower) || (dropTrace && TRACE_HEADERS.has(lower)) || lower === DST_PORT_HEADER) continue;
    out.push(name, raw[i + 1]!);
  }
  return out;
}

/** Response headers from undici's raw Buffer list, hop-by-hop removed. */
export function forwardResponseHeaders(raw: readonly (Buffer | string)[]): string[] {
  const strs: string[] = [];
  for (let i = 0; i < raw.length; i++) {
    const v = raw[i]!;
    strs.push(typeof v === 'string' ? v : v.toString('latin1'));
  }
  const named = connectionTokens(strs);
  const out: string[] = [];
  for (let i = 0; i < strs.length; i += 2) {
    const lower = strs[i]!.toLowerCase();
    if (HOP_BY_HOP.has(lower) || named?.has(lower)) continue;
    out.push(strs[i]!, strs[i + 1]!);
  }
  return out;
}

/** Whether the client asked for an upgrade we pass through (WebSocket and friends). */
export function isUpgrade(headers: Record<string, string | string[] | undefined>): boolean {
  const c = headers['connection'];
  return typeof headers['upgrade'] === 'string' && typeof c === 'string' && /(^|,)\s*upgrade\s*(,|$)/i.test(c);
}
