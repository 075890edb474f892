// h2load's output as the bench reads it, from real runs of h2load 1.52 (fixtures/): the summary
// lines, the per-request log's percentiles, and one real run against a node:http2 h2c server.
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { h2load, h2loadArgs, latencies, parseH2loadSummary } from '../../../bench/h2load.ts';

const fixture = (name: string): string => readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');

t.test('the summary of a ~1000 rps run: requests done, failed, the measured seconds', async (t) => {
  // h2load -t1 -c10 -m1 --rps=100 -D1 against nginx h2c
  t.same(parseH2loadSummary(fixture('h2load-rate.txt')), { done: 1000, failed: 0, durationS: 1 });
});

t.test('a saturation run counts done requests, not the status codes line (one more 2xx there than done)', async (t) => {
  // h2load -t1 -c10 -m5 -D2: "352700 done", "352701 2xx"
  t.same(parseH2loadSummary(fixture('h2load-sat.txt')), { done: 352_700, failed: 0, durationS: 2 });
});

t.test('failed streams are errors', async (t) => {
  // nginx's default keepalive_requests (1000) closed each connection mid-run: "Process Request Failure"
  t.same(parseH2loadSummary(fixture('h2load-sat-failed.txt')), { done: 5027, failed: 27, durationS: 2 });
});

t.test('output without the summary (h2load stopped early) is no result', async (t) => {
  const cut = fixture('h2load-rate.txt').split('\nfinished in')[0] ?? '';
  t.ok(cut.includes('Application protocol: h2c'));
  t.equal(parseH2loadSummary(cut), undefined);
  t.equal(parseH2loadSummary(''), undefined);
});

t.test('percentiles from the per-request log, nearest rank', async (t) => {
  const l = latencies(fixture('h2load-rate-log.tsv'));
  // 1000 requests; sorted µs at ranks 500, 900, 990, 999, 1000 (sort -n | awk)
  t.same(l, { p50Ms: 0.237, p90Ms: 0.407, p99Ms: 0.47, p999Ms: 0.499, maxMs: 0.5 });
  t.match(fixture('h2load-rate.txt'), /time for request: +68us +500us/, "h2load's own max is the log's");
  t.equal(latencies(''), undefined);
  t.equal(latencies('1796624132106643\t200\t85\n')?.p99Ms, 0.085, 'one request is every percentile');
});

t.test('the command lines: saturation, and a fixed rate per connection', async (t) => {
  t.same(h2loadArgs({ url: 'http://127.0.0.1:1/', clients: 10, streams: 5, durationS: 8 }, '/tmp/x.log'), ['-t1', '-c10', '-m5', '-D8', '--log-file', '/tmp/x.log', 'http://127.0.0.1:1/']);
  t.same(h2loadArgs({ url: 'http://127.0.0.1:1/', authority: 'upstream', clients: 10, streams: 1, durationS: 3, rpsPerClient: 100 }, 'l'), ['-t1', '-c10', '-m1', '-D3', '--log-file', 'l', '--rps=100', '-H', ':authority: upstream', 'http://127.0.0.1:1/']);
});

t.test('a real run against an h2c server: every request answered, at the asked rate, with the :authority sent', async (t) => {
  const authorities = new Set<string>();
  const server = http2.createServer((req, res) => {
    authorities.add(req.headers[':authority'] ?? '');
    res.end('ok\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as AddressInfo;
  const r = await h2load({ url: `http://127.0.0.1:${port}/`, authority: 'upstream', clients: 2, streams: 1, durationS: 1, rpsPerClient: 50 });
  t.equal(r.errors, 0);
  // At most the asked rate (2 connections × 50 rps × 1 s); a busy machine may send fewer.
  t.ok(r.requests >= 20 && r.requests <= 102, `~100 requests: ${r.requests}`);
  t.ok(r.p50Ms > 0 && r.p50Ms <= r.p99Ms && r.p99Ms <= r.maxMs);
  t.same([...authorities], ['upstream']);
});
