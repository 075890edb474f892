// The bench's verdicts: which run each target reads (the warm ~1000 rps run for latency and CPU,
// the larger of the two ~1000 rps peaks for RSS), cold numbers reported beside them.
import t from 'tap';
import { PATHS } from '../../../bench/paths.ts';
import { summarize, type ProxySample, type Sample } from '../../../bench/report.ts';
import type { WrkResult } from '../../../bench/wrk.ts';

const run = (p50Ms: number, p99Ms: number, requests = 8000, errors = 0): WrkResult => ({ requests, rps: requests / 8, errors, p50Ms, p90Ms: p99Ms, p99Ms, p999Ms: p99Ms, maxMs: p99Ms });

const proxy = (label: string, o: Partial<ProxySample> = {}): ProxySample => ({
  label,
  idleRssMb: 60,
  cpuColdS: 2,
  cpuSatS: 4,
  cpuRandS: 1,
  peakRssColdMb: 58,
  peakRssSatMb: 70,
  peakRssRandMb: 59,
  ussRandMb: 30,
  ...o,
});

function sample(path: string, round: number, cold: WrkResult, rand: WrkResult, proxies: ProxySample[] = []): Sample {
  return { path, round, cold, sat: run(0.5, 1, path.startsWith('haproxy') ? 200_000 : 120_000), rand, proxies };
}

const samples: Sample[] = [
  sample('direct', 1, run(0.05, 0.2), run(0.05, 0.1)),
  sample('haproxy-2hop', 1, run(0.2, 0.5), run(0.2, 0.4), [proxy('A', { peakRssColdMb: 14, peakRssRandMb: 14 }), proxy('B', { peakRssColdMb: 14, peakRssRandMb: 14 })]),
  sample('meshlet-2hop', 1, run(0.3, 1.7), run(0.3, 0.7), [proxy('A', { peakRssColdMb: 61 }), proxy('B')]),
];
const s = summarize(PATHS, samples);
const meshlet = s.paths.find((p) => p.path === 'meshlet-2hop');
const cmp = s.comparisons.find((c) => c.path === 'meshlet-2hop');

t.test('latency targets read the warm run; the cold run is reported beside it', async (t) => {
  t.equal(meshlet?.p99Ms, 0.7);
  t.equal(meshlet?.p99ColdMs, 1.7);
  t.equal(meshlet?.addedP99Ms?.toFixed(2), '0.60');
  t.equal(meshlet?.addedP99ColdMs?.toFixed(2), '1.50');
  t.equal(cmp?.addedP99Ratio?.toFixed(2), '2.00', '0.6 over HAProxy 0.3');
  t.equal(cmp?.addedP99ColdRatio?.toFixed(2), '5.00', '1.5 over HAProxy 0.3');
  t.equal(cmp?.targets.find((x) => x.name.startsWith('added p99'))?.pass, true, '2.0 is within ≤ 2');
});

t.test('RSS at ~1000 rps is the larger of the cold and warm peaks; CPU per 1000 requests is the warm run', async (t) => {
  t.equal(meshlet?.proxies[0]?.peakRssRandMb, 61, 'A: cold peak 61 over warm 59');
  t.equal(meshlet?.proxies[1]?.peakRssRandMb, 59);
  const rss = cmp?.targets.find((x) => x.name.startsWith('peak RSS'));
  t.equal(rss?.value, 61);
  t.equal(rss?.pass, false);
  t.equal(meshlet?.proxies[0]?.cpuSPer1kRand, 0.125, '1 CPU-s over 8000 requests');
  t.equal(meshlet?.proxies[0]?.cpuSPer1kCold, 0.25);
});

t.test('errors of every run count, the cold one too', async (t) => {
  const bad = summarize(PATHS, [sample('meshlet-2hop', 1, run(0.3, 1.7, 8000, 80), run(0.3, 0.7), [proxy('A'), proxy('B')])]);
  t.equal(bad.paths[0]?.errorRate, 80 / (8000 + 120_000 + 8000));
});

t.test('HTTP/2 paths: added latency over direct-h2, ratios against their HAProxy peer, no targets', async (t) => {
  const both = summarize(PATHS, [
    ...samples,
    sample('direct-h2', 1, run(0.3, 0.5), run(0.3, 0.6)),
    sample('haproxy-h2-2hop', 1, run(0.5, 1.0), run(0.5, 0.9), [proxy('A'), proxy('B')]),
    sample('meshlet-h2-2hop', 1, run(1.5, 3.0), run(1.5, 2.1), [proxy('A'), proxy('B')]),
  ]);
  const h2 = both.paths.find((p) => p.path === 'meshlet-h2-2hop');
  t.equal(h2?.protocol, 'h2');
  t.equal(h2?.addedP99Ms?.toFixed(2), '1.50', '2.1 less direct-h2 0.6, not direct 0.1');
  t.equal(both.paths.find((p) => p.path === 'meshlet-2hop')?.addedP99Ms?.toFixed(2), '0.60', 'HTTP/1.1 still less direct');
  t.equal(both.paths.find((p) => p.path === 'meshlet-2hop')?.protocol, undefined);
  const c = both.comparisons.find((x) => x.path === 'meshlet-h2-2hop');
  t.equal(c?.peer, 'haproxy-h2-2hop');
  t.equal(c?.addedP99Ratio?.toFixed(2), '5.00', '1.5 over HAProxy 0.3');
  t.equal(c?.throughputRatio?.toFixed(2), '0.60');
  t.same(c?.targets, []);
  t.equal(both.comparisons.find((x) => x.path === 'meshlet-2hop')?.targets.length, 5, 'the HTTP/1.1 path keeps its targets');
});
