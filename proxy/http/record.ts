// The end of every request, HTTP/1 (http/listener.ts) or HTTP/2 (http2/server.ts): one count in
// the request metrics, one access-log line, one /errors entry for a proxy error, one span end.
// Guarantees: the same labels and fields whichever protocol carried the request.
import type { Clock } from '../../api/runtime.ts';
import type { Direction, Exchange, Peer } from './exchange.ts';
import type { ProxyMetrics } from '../telemetry/metrics.ts';
import type { AccessLog } from '../telemetry/access-log.ts';
import type { RecentErrors } from '../telemetry/recent-errors.ts';
import type { Tracing } from '../telemetry/trace.ts';
import type { UpgradeDestination } from './upgrade.ts';

export interface Workload {
  workload: string;
  namespace: string;
  /** This workload's own service name (inbound destination label). */
  service: string;
}

/** What a listener records with. */
export interface RecordDeps {
  readonly direction: Direction;
  readonly clock: Clock;
  readonly metrics: ProxyMetrics;
  readonly accessLog: AccessLog;
  readonly tracing: Tracing;
  readonly self: Workload;
  readonly recentErrors?: RecentErrors | undefined;
}

export const PLAINTEXT: Peer = Object.freeze({ identity: '', tls: false });

/**
 * A finished exchange: `status` is the status sent (0: none), `ok` the listener's verdict
 * (HTTP/1: a whole response under 500 and no proxy error; HTTP/2 adds grpc-status 0 for gRPC).
 */
export function recordExchange(d: RecordDeps, ex: Exchange, status: number, ok: boolean): void {
  const err = ex.error;
  const durMs = d.clock.now() - ex.startMs;
  const reason = err?.code ?? (ex.clientGone ? 'client-gone' : '');
  if (err) d.metrics.proxyErrors.labels(d.direction, err.code).inc();
  const outbound = d.direction === 'outbound';
  const dst = outbound ? (ex.backend?.name ?? ex.service?.name ?? 'unknown') : d.self.service;
  const dstEp = ex.endpoint;
  if (err) d.recentErrors?.record({ direction: d.direction, reason: err.code, message: err.message, authority: ex.authority, service: dst, endpoint: dstEp?.address ?? '', peer: ex.peer.identity, attempts: ex.attempts });
  d.metrics.observe(
    {
      direction: d.direction,
      src_workload: outbound ? d.self.workload : '',
      src_namespace: outbound ? d.self.namespace : '',
      src_identity: ex.peer.identity,
      dst_service: dst,
      dst_workload: outbound ? (dstEp?.labels['workload'] ?? '') : d.self.workload,
      dst_namespace: outbound ? (dstEp?.labels['namespace'] ?? '') : d.self.namespace,
      status_code: String(status),
      classification: ok ? 'success' : 'failure',
      error_reason: reason,
      tls: outbound ? (dstEp?.identity ? 'true' : 'false') : ex.peer.tls ? 'true' : 'false',
    },
    durMs / 1000,
  );
  if (d.accessLog.enabled) d.accessLog.write({
    ts: new Date().toISOString(),
    direction: d.direction,
    method: ex.method,
    authority: ex.hostHeader,
    path: ex.path,
    status,
    duration_ms: Math.round(durMs * 1000) / 1000,
    upstream: dstEp?.address ?? ex.appAddress ?? '',
    attempts: ex.attempts,
    error: reason,
    trace_id: ex.span.traceId,
    peer: ex.peer.identity,
    route: ex.route?.name ?? '',
    dst_service: dst,
  });
  if (d.tracing.exporting) ex.span.end({ status, errorReason: reason, attributes: { 'meshlet.attempts': ex.attempts, 'server.address': ex.authority, 'meshlet.dst_service': dst, 'url.path': ex.path } });
}

/** A request measured without an exchange (answered before routing, or an upgrade). */
export interface OtherRequest {
  method: string;
  authority: string;
  path: string;
  status: number;
  /** A ProxyErrorCode, 'client-gone', or '' (none). */
  code: string;
  durMs: number;
  upstream?: string | undefined;
  traceId?: string | undefined;
  peer?: Peer | undefined;
  dst?: UpgradeDestination | undefined;
}

/**
 * A request measured without an exchange: answered before routing (a head refused, no config,
 * no host), or an upgrade (measured when the client has its answer). One access-log line and
 * one count in the request metrics, like every other request.
 */
export function recordOther(d: RecordDeps, o: OtherRequest): void {
  const outbound = d.direction === 'outbound';
  const dst = outbound ? (o.dst?.service ?? 'unknown') : d.self.service;
  const peer = o.peer ?? PLAINTEXT;
  d.metrics.observe(
    {
      direction: d.direction,
      src_workload: outbound ? d.self.workload : '',
      src_namespace: outbound ? d.self.namespace : '',
      src_identity: peer.identity,
      dst_service: dst,
      dst_workload: outbound ? (o.dst?.workload ?? '') : d.self.workload,
      dst_namespace: outbound ? (o.dst?.namespace ?? '') : d.self.namespace,
      status_code: String(o.status),
      classification: o.status > 0 && o.status < 500 && !o.code ? 'success' : 'failure',
      error_reason: o.code,
      tls: (outbound ? o.dst?.tls : peer.tls) ? 'true' : 'false',
    },
    o.durMs / 1000,
  );
  if (d.accessLog.enabled) d.accessLog.write({ ts: new Date().toISOString(), direction: d.direction, method: o.method, authority: o.authority, path: o.path, status: o.status, duration_ms: Math.round(o.durMs * 1000) / 1000, upstream: o.upstream ?? '', attempts: o.upstream ? 1 : 0, error: o.code, trace_id: o.traceId ?? '', peer: peer.identity, route: '', dst_service: dst });
}
