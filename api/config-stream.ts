// The config stream's wire format, shared by the control plane and the proxy. A proxy holds
// GET /v1/config/stream (mTLS; its identity is its client certificate) and reads NDJSON messages;
// it answers each config with POST /v1/config/ack: the version it runs, or why it refused it.
import type { Problem, ProxyConfig } from './proxy-config.ts';

export const CONFIG_STREAM_PATH = '/v1/config/stream';
export const CONFIG_ACK_PATH = '/v1/config/ack';

/** Query parameters of the stream request: who the proxy is beyond its identity, what it runs. */
export interface StreamParams {
  workload: string;
  namespace: string;
  pod: string;
  /** Services this workload serves (its inbound side), comma-separated on the wire. */
  services: string[];
  /** The version the proxy runs now (resume: nothing is sent until the view differs). */
  version: string;
}

export type StreamMessage =
  | { type: 'hello'; stream: string }
  | { type: 'config'; version: string; config: ProxyConfig }
  | { type: 'ping' };

export interface Ack {
  stream: string;
  version: string;
  ok: boolean;
  problems?: Problem[];
}

export function encodeParams(p: StreamParams): string {
  const q = new URLSearchParams({ workload: p.workload, namespace: p.namespace, pod: p.pod, services: p.services.join(','), version: p.version });
  return `${CONFIG_STREAM_PATH}?${q.toString()}`;
}

export function decodeParams(url: string): StreamParams {
  const q = new URL(url, 'https://x').searchParams;
  return {
    workload: q.get('workload') ?? '',
    namespace: q.get('namespace') ?? '',
    pod: q.get('pod') ?? '',
    services: (q.get('services') ?? '').split(',').filter(Boolean),
    version: q.get('version') ?? '',
  };
}
