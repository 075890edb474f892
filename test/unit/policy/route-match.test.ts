// Tests for proxy/policy/route-match.ts: path/method/header matching, route order, pathOf.
// Pure functions over literal request heads.
import { test } from 'tap';
import type { RouteMatch } from '../../../api/proxy-config.ts';
import { matchRoute, pathOf, routesOf, type RequestHead } from '../../../proxy/policy/route-match.ts';

/** A request whose fields are a plain record (lower-case names), looked up as the proxy's parsed head is. */
const req = (path: string, method = 'GET', headers: Record<string, string | string[] | undefined> = {}): RequestHead => ({ method, path, headers: { get: (n) => (Object.hasOwn(headers, n) ? headers[n] : undefined) } });
const one = (match: RouteMatch | undefined, r: RequestHead) => matchRoute([{ match }], r) !== undefined;

test('absent or empty match matches everything', async (t) => {
  t.ok(one(undefined, req('/x', 'POST')));
  t.ok(one({}, req('/anything', 'DELETE', { a: 'b' })));
  t.ok(one({ headers: [] }, req('/')));
});

test('exact path compares the whole path', async (t) => {
  const m: RouteMatch = { path: { exact: '/api' } };
  t.ok(one(m, req('/api')));
  t.notOk(one(m, req('/api/')));
  t.notOk(one(m, req('/api/x')));
  t.notOk(one(m, req('/ap')));
  t.notOk(one(m, req('/API')), 'case-sensitive');
});

test('prefix matches on segment boundaries', async (t) => {
  for (const prefix of ['/api', '/api/', '/api//']) {
    const m: RouteMatch = { path: { prefix } };
    t.ok(one(m, req('/api')), `${prefix} ~ /api`);
    t.ok(one(m, req('/api/')), `${prefix} ~ /api/`);
    t.ok(one(m, req('/api/x/y')), `${prefix} ~ /api/x/y`);
    t.notOk(one(m, req('/apix')), `${prefix} !~ /apix`);
    t.notOk(one(m, req('/ap')), `${prefix} !~ /ap`);
    t.notOk(one(m, req('/v1/api')), `${prefix} !~ /v1/api`);
  }
  const deep: RouteMatch = { path: { prefix: '/a/b' } };
  t.ok(one(deep, req('/a/b/c')));
  t.notOk(one(deep, req('/a/bc')));
  t.notOk(one(deep, req('/a')));
  const root: RouteMatch = { path: { prefix: '/' } };
  for (const p of ['/', '/x', '/x/y', '*', '']) t.ok(one(root, req(p)), `/ ~ ${JSON.stringify(p)}`);
});

test('method compares exactly', async (t) => {
  t.ok(one({ method: 'POST' }, req('/', 'POST')));
  t.notOk(one({ method: 'POST' }, req('/', 'GET')));
  t.notOk(one({ method: 'POST' }, req('/', 'post')));
});

test('headers: presence, value, case-insensitive names, repeated values', async (t) => {
  t.ok(one({ headers: [{ name: 'x-canary' }] }, req('/', 'GET', { 'x-canary': '' })), 'present with an empty value');
  t.notOk(one({ headers: [{ name: 'x-canary' }] }, req('/', 'GET', { 'x-canary': undefined })), 'undefined is absent');
  t.notOk(one({ headers: [{ name: 'x-canary' }] }, req('/', 'GET', {})));
  t.ok(one({ headers: [{ name: 'X-Canary', value: 'yes' }] }, req('/', 'GET', { 'x-canary': 'yes' })), 'name case-insensitive');
  t.notOk(one({ headers: [{ name: 'x-canary', value: 'yes' }] }, req('/', 'GET', { 'x-canary': 'YES' })), 'value case-sensitive');
  t.notOk(one({ headers: [{ name: 'x-canary', value: 'yes' }] }, req('/', 'GET', { 'x-canary': 'yess' })));
  // Repeated headers: as an array (headersDistinct) or joined by Node with ", ".
  t.ok(one({ headers: [{ name: 'x-v', value: 'b' }] }, req('/', 'GET', { 'x-v': ['a', 'b'] })));
  t.notOk(one({ headers: [{ name: 'x-v', value: 'c' }] }, req('/', 'GET', { 'x-v': ['a', 'b'] })));
  t.ok(one({ headers: [{ name: 'x-v' }] }, req('/', 'GET', { 'x-v': [] })), 'an array is present');
  t.ok(one({ headers: [{ name: 'x-v', value: 'b' }] }, req('/', 'GET', { 'x-v': 'a, b' })));
  t.ok(one({ headers: [{ name: 'x-v', value: 'a' }] }, req('/', 'GET', { 'x-v': 'a,\tb' })));
  t.ok(one({ headers: [{ name: 'x-v', value: 'a, b' }] }, req('/', 'GET', { 'x-v': 'a, b' })), 'the whole value matches too');
  t.notOk(one({ headers: [{ name: 'x-v', value: 'a b' }] }, req('/', 'GET', { 'x-v': 'a, b' })));
  t.notOk(one({ headers: [{ name: 'x-v', value: 'b' }] }, req('/', 'GET', { 'x-v': 'ab, bc' })));
  t.ok(one({ headers: [{ name: 'x-v', value: '' }] }, req('/', 'GET', { 'x-v': 'a,' })), 'an empty element');
  t.notOk(one({ headers: [{ name: 'constructor' }] }, req('/', 'GET', {})), 'no prototype keys');
  const both: RouteMatch = { headers: [{ name: 'a', value: '1' }, { name: 'b' }] };
  t.ok(one(both, req('/', 'GET', { a: '1', b: 'x' })));
  t.notOk(one(both, req('/', 'GET', { a: '1' })), 'every listed header must hold');
});

test('all conditions must hold (AND)', async (t) => {
  const m: RouteMatch = { path: { prefix: '/api' }, method: 'GET', headers: [{ name: 'x-env', value: 'canary' }] };
  t.ok(one(m, req('/api/x', 'GET', { 'x-env': 'canary' })));
  t.notOk(one(m, req('/web', 'GET', { 'x-env': 'canary' })));
  t.notOk(one(m, req('/api/x', 'PUT', { 'x-env': 'canary' })));
  t.notOk(one(m, req('/api/x', 'GET', { 'x-env': 'prod' })));
});

test('routes are tried in order; first match wins; none: undefined', async (t) => {
  const routes: { name: string; match?: RouteMatch }[] = [
    { name: 'canary', match: { headers: [{ name: 'x-canary' }] } },
    { name: 'api', match: { path: { prefix: '/api' } } },
    { name: 'api-exact', match: { path: { exact: '/api/v1' } } },
  ];
  t.equal(matchRoute(routes, req('/api/v1'))?.name, 'api', 'earlier prefix shadows later exact');
  t.equal(matchRoute(routes, req('/api/v1', 'GET', { 'x-canary': '1' }))?.name, 'canary');
  t.equal(matchRoute(routes, req('/web')), undefined);
  t.equal(matchRoute([...routes, { name: 'default' }], req('/web'))?.name, 'default');
  t.equal(matchRoute([], req('/')), undefined);
});

test('pathOf strips query and fragment from every target form', async (t) => {
  const cases: [string, string][] = [
    ['/a', '/a'],
    ['/a?b=1', '/a'],
    ['/a#frag', '/a'],
    ['/a/b?x#y', '/a/b'],
    ['/?q', '/'],
    ['/', '/'],
    ['http://host:8080/a?b', '/a'],
    ['http://host/a/b#c', '/a/b'],
    ['https://host', '/'],
    ['http://host?x=/y', '/'],
    ['http://host#/y', '/'],
    ['http://host:80/', '/'],
    ['*', '*'],
    ['host:443', ''],
  ];
  for (const [target, want] of cases) t.equal(pathOf(target), want, target);
  const s = '/no/query';
  t.equal(pathOf(s), s);
});

test('routesOf: a service without routes has one catch-all route named default', async (t) => {
  t.same(routesOf({}), [{ name: 'default' }]);
  t.equal(matchRoute(routesOf({}), req('/anything', 'DELETE'))?.name, 'default');
  const routes = [{ name: 'a', match: { method: 'GET' as const } }];
  t.equal(routesOf({ routes }), routes, 'routes: as given');
});
