// Tests for proxy/policy/retry-decision.ts: which attempts may be retried.
// Pure function: every outcome against methods, statuses, attempts and body replayability.
import { test } from 'tap';
import { DEFAULT_RETRY, isRetryable, type AttemptOutcome, type RetryInput } from '../../../proxy/policy/retry-decision.ts';

const base: RetryInput = {
  method: 'GET',
  attempt: 1,
  maxAttempts: DEFAULT_RETRY.attempts,
  outcome: { kind: 'status', status: 503 },
  statuses: new Set(DEFAULT_RETRY.statuses),
  grpcStatuses: new Set(DEFAULT_RETRY.grpcStatuses),
  methods: new Set(DEFAULT_RETRY.methods),
  bodyReplayable: true,
};
const retry = (over: Partial<RetryInput>) => isRetryable({ ...base, ...over });
const status = (s: number): AttemptOutcome => ({ kind: 'status', status: s });
const grpc = (code: number): AttemptOutcome => ({ kind: 'grpc-status', code });

test('defaults', async (t) => {
  t.same(DEFAULT_RETRY, { attempts: 3, statuses: [502, 503, 504], grpcStatuses: [14], methods: ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE'], maxBufferedBody: 65536 });
  t.ok(Object.isFrozen(DEFAULT_RETRY) && Object.isFrozen(DEFAULT_RETRY.statuses) && Object.isFrozen(DEFAULT_RETRY.grpcStatuses));
});

test('configured statuses only', async (t) => {
  for (const s of [502, 503, 504]) t.equal(retry({ outcome: status(s) }), true, `${s}`);
  for (const s of [200, 404, 500, 501, 505, 429]) t.equal(retry({ outcome: status(s) }), false, `${s}`);
  t.equal(retry({ outcome: status(429), statuses: new Set([429]) }), true, 'a configured 429');
});

test('gRPC: a trailers-only grpc-status, configured codes and methods only (gRPC calls are POST)', async (t) => {
  const post = new Set(['POST']);
  t.equal(retry({ method: 'POST', outcome: grpc(14), methods: post }), true, 'UNAVAILABLE, POST configured');
  t.equal(retry({ method: 'POST', outcome: grpc(14) }), false, 'UNAVAILABLE, default methods (no POST)');
  for (const c of [1, 2, 4, 5, 8, 13]) t.equal(retry({ method: 'POST', outcome: grpc(c), methods: post }), false, `grpc-status ${c} is not retried by default`);
  t.equal(retry({ method: 'POST', outcome: grpc(8), methods: post, grpcStatuses: new Set([8, 14]) }), true, 'a configured RESOURCE_EXHAUSTED');
  t.equal(retry({ method: 'POST', outcome: grpc(14), methods: post, bodyReplayable: false }), false, 'a body sent once is not replayed');
  t.equal(retry({ method: 'POST', outcome: grpc(14), methods: post, statuses: new Set() }), true, 'HTTP statuses do not decide a grpc-status');
});

test('never past maxAttempts', async (t) => {
  t.equal(retry({ attempt: 2, maxAttempts: 3 }), true);
  t.equal(retry({ attempt: 3, maxAttempts: 3 }), false);
  t.equal(retry({ attempt: 1, maxAttempts: 1 }), false, 'attempts 1 disables retries');
  t.equal(retry({ attempt: 5, maxAttempts: 3, outcome: { kind: 'connect-failed' } }), false);
});

test('never when the body cannot be replayed, whatever the outcome', async (t) => {
  for (const outcome of [status(503), { kind: 'connect-failed' }, { kind: 'reset-before-response' }, { kind: 'timeout' }] as AttemptOutcome[]) {
    t.equal(retry({ outcome, bodyReplayable: false }), false, outcome.kind);
  }
});

test('connect failures: any method (nothing was sent)', async (t) => {
  t.equal(retry({ method: 'GET', outcome: { kind: 'connect-failed' } }), true);
  t.equal(retry({ method: 'POST', outcome: { kind: 'connect-failed' } }), true);
  t.equal(retry({ method: 'PATCH', outcome: { kind: 'connect-failed' } }), true);
});

test('resets, timeouts and statuses: configured methods only', async (t) => {
  for (const outcome of [status(503), { kind: 'reset-before-response' }, { kind: 'timeout' }] as AttemptOutcome[]) {
    for (const m of ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']) t.equal(retry({ method: m, outcome }), true, `${m} ${outcome.kind}`);
    for (const m of ['POST', 'PATCH', 'CONNECT', 'get']) t.equal(retry({ method: m, outcome }), false, `${m} ${outcome.kind}`);
    t.equal(retry({ method: 'POST', outcome, methods: new Set(['POST']) }), true, `configured POST ${outcome.kind}`);
    t.equal(retry({ method: 'GET', outcome, methods: new Set() }), false, `no methods configured ${outcome.kind}`);
  }
});
