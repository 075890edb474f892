// What a proxy's admin endpoints answer, shared by the proxy (which writes them) and the CLI
// (which reads them: `meshlet diagnose`).

/** One response the proxy made itself (an entry of GET /errors). */
export interface RecentError {
  /** Wall-clock time, ms since the epoch. */
  at: number;
  direction: 'inbound' | 'outbound';
  /** The stable proxy error code (proxy/errors.ts). */
  reason: string;
  message: string;
  /** Host the request named (outbound) or "" (inbound). */
  authority: string;
  /** The destination service (outbound: the backend picked, if any; inbound: this workload's). */
  service: string;
  /** The endpoint address tried last, or "". */
  endpoint: string;
  /** The peer's SPIFFE ID (inbound mTLS), or "". */
  peer: string;
  attempts: number;
}

/** GET /errors: the ring of the last errors, and the last error of each reason. */
export interface ErrorsDocument {
  /** Errors recorded since the proxy started. */
  total: number;
  errors: RecentError[];
  lastByReason: RecentError[];
}
