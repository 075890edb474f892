// How the Kubernetes source is doing, for /ready and /metrics: read from KubernetesSource.status()
// when asked (scrape, probe), so what they say is what the source holds at that moment.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { KubeSourceStatus, WatchedKind } from './kube-source.ts';

/**
 * Why the control plane cannot serve config yet: before the source's first model no proxy gets a
 * view, so a replica in that state should get no proxies (others may have listed). Once it has a
 * model it stays ready through API server outages: it serves the last state it listed (the
 * metrics below, and the informers in /ready, say that it is stale). Pure.
 */
export function kubeNotReady(s: KubeSourceStatus | undefined): string[] {
  if (!s) return ['the Kubernetes config source is not started'];
  if (s.synced) return [];
  const waiting = s.informers.filter((i) => !i.synced && !i.absent);
  const why = [
    ...waiting.map((i) => `${i.kind}${i.lastError ? ` (${i.lastError})` : ''}`),
    ...(s.discoveryError !== undefined ? [`API discovery of HTTPRoutes (${s.discoveryError})`] : []),
  ].join(', ');
  return [`the Kubernetes config source has not listed ${why || 'everything'} yet: no proxy is sent config until it has`];
}

/** The per-kind gauges and restart counter; `status` is read at every scrape. */
export class KubeSourceMetrics {
  readonly #restarts: Counter<'kind'>;
  /** Set at each scrape from `status` (collect). */
  readonly gauges: readonly Gauge[];

  constructor(registry: Registry, status: () => KubeSourceStatus | undefined) {
    const registers = [registry];
    const synced = new Gauge({
      name: 'meshlet_cp_kube_synced',
      help: 'Whether the Kubernetes source has listed every kind once and put a model in force (0: no proxy is sent config).',
      registers,
      collect() {
        this.set(status()?.synced ? 1 : 0);
      },
    });
    const up = new Gauge({
      name: 'meshlet_cp_kube_watch_up',
      help: 'Per kind: 1 while its list and watch run without error; 0 while they fail (the last state listed stays in force) or, for a custom resource, while its CRD is not installed.',
      labelNames: ['kind'],
      registers,
      collect() {
        this.reset();
        for (const i of status()?.informers ?? []) this.labels(i.kind).set(i.watching ? 1 : 0);
      },
    });
    this.gauges = [synced, up];
    this.#restarts = new Counter({ name: 'meshlet_cp_kube_watch_restarts_total', help: 'Kubernetes lists and watches restarted after an error, by kind.', labelNames: ['kind'], registers });
  }

  restarted(kind: WatchedKind): void {
    this.#restarts.labels(kind).inc();
  }
}
