// prom-client's default process and Node metrics for the proxy and the control plane, with one
// change: the event loop's busy time instead of the lag gauges.
import { Counter, Gauge, collectDefaultMetrics, type Registry } from 'prom-client';
import { performance } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';

/**
 * prom-client's default process and Node metrics, with the event loop's busy time in place of its
 * lag gauges. Those sample the loop with a 10 ms timer: 100 wake-ups a second in every process,
 * idle or not (~0.6 % of a core for each sidecar), and a p99 that never reads below 10 ms,
 * because Node's monitorEventLoopDelay records the whole timer interval. Their timer is parked
 * (the precision is the longest a timer can wait) and the gauges are dropped; the busy time comes
 * from counters Node keeps anyway (performance.eventLoopUtilization), so it costs nothing between
 * scrapes, and rate() of it is the loop's utilization: 1 means saturated, whatever the interval.
 */
export function defaultMetrics(registry: Registry, prefix: string): void {
  collectDefaultMetrics({ register: registry, prefix, eventLoopMonitoringPrecision: 2 ** 31 - 1 });
  for (const m of registry.getMetricsAsArray()) if (m.name.startsWith(`${prefix}nodejs_eventloop_lag`)) registry.removeSingleMetric(m.name);
  // The heap's cap (--max-old-space-size and the young generation): heap use near it means the
  // process is about to fail with "JavaScript heap out of memory" (a view too large for the cap).
  const limit: Gauge = new Gauge({
    name: `${prefix}nodejs_heap_size_limit_bytes`,
    help: 'The V8 heap size limit (the old-generation cap, --max-old-space-size, plus the young generation).',
    registers: [registry],
    collect() {
      limit.set(getHeapStatistics().heap_size_limit);
    },
  });
  let counted = 0;
  const busy: Counter = new Counter({
    name: `${prefix}nodejs_eventloop_busy_seconds_total`,
    help: 'Time the event loop spent running code rather than waiting for I/O; its rate is the loop utilization (1 = saturated).',
    registers: [registry],
    collect() {
      const seconds = performance.eventLoopUtilization().active / 1000;
      if (seconds > counted) busy.inc(seconds - counted);
      counted = seconds;
    },
  });
}
