// inbound/app-port.ts, pure: MESHLET_APP_PORTS and MESHLET_INBOUND_PORT_MAP parsing, the
// meshlet-dst-port decision, and the dispatch to per-port pipelines (the header over mTLS only;
// plaintext and headerless requests go to the app port of the listener they arrived on).
import t from 'tap';
import type { Exchange, Handler, UpstreamResponse } from '../../proxy/http/exchange.ts';
import { appPortOf, byAppPort, parseAppPorts } from '../../proxy/inbound/app-port.ts';
import { ProxyError } from '../../proxy/errors.ts';

/** An exchange as byAppPort reads it: the peer and the request head's fields. */
const ex = (tls: boolean, header?: string) => ({ peer: { tls, identity: tls ? 'spiffe://cluster.local/ns/a/sa/b' : '' }, head: { get: (name: string) => (name === 'meshlet-dst-port' ? header : undefined) } }) as unknown as Exchange;

t.test('parseAppPorts: the --app port first, then the list; bad values throw', (t) => {
  t.same(parseAppPorts(undefined, 8080, 4143).ports, [8080]);
  t.same(parseAppPorts('', 8080, 4143).ports, [8080]);
  t.same(parseAppPorts(' 9090, 8080 ,9090,', 8080, 4143).ports, [8080, 9090], 'trimmed, deduplicated, --app first');
  t.throws(() => parseAppPorts('8080,http', 8080, 4143), /MESHLET_APP_PORTS: "http" is not a TCP port/);
  t.throws(() => parseAppPorts('8080,70000', 8080, 4143), /"70000"/);
  t.throws(() => parseAppPorts('8080,080', 8080, 4143), /"080"/);
  t.throws(() => parseAppPorts('9090', 8080, 4143), /must include the --app port 8080/);
  t.end();
});

t.test('parseAppPorts: MESHLET_INBOUND_PORT_MAP gives app ports after the first a listener of their own', (t) => {
  const ports = parseAppPorts('8080,9090,9091', 8080, 4143, '9090=4144, 9091=4145');
  t.same(ports.listeners, [{ appPort: 9090, proxyPort: 4144 }, { appPort: 9091, proxyPort: 4145 }]);
  t.same([...ports.byProxyPort], [[4143, 8080], [4144, 9090], [4145, 9091]], 'each proxy port names its app port');
  t.same(parseAppPorts('8080,9090', 8080, 4143, '').listeners, [], 'empty: every app port on --inbound-listen');
  t.same(parseAppPorts('8080,9090', 8080, 4143).listeners, []);
  const bad: Array<[string, RegExp]> = [
    ['9090', /"9090": expected APP_PORT=PROXY_PORT/],
    ['9090=x', /"9090=x": expected APP_PORT=PROXY_PORT/],
    ['9090 = 4144', /"9090 = 4144": expected APP_PORT=PROXY_PORT/],
    ['9090=70000', /"9090=70000"/],
    ['8080=4144', /the --app port 8080 is served on --inbound-listen \(port 4143\)/],
    ['7070=4144', /7070 is not in MESHLET_APP_PORTS \(8080, 9090\)/],
    ['9090=4144,9090=4145', /app port 9090 is mapped twice/],
    ['9090=8080', /8080 is an app port; the proxy cannot listen on it/],
    ['9090=4143', /proxy port 4143 is already taken by --inbound-listen/],
  ];
  for (const [map, message] of bad) t.throws(() => parseAppPorts('8080,9090', 8080, 4143, map), message, map);
  t.throws(() => parseAppPorts('8080,9090,9091', 8080, 4143, '9090=4144,9091=4144'), /proxy port 4144 is already taken by app port 9090/);
  t.throws(() => parseAppPorts('8080,9090', 8080, undefined, '9090=4144'), /needs the inbound side \(--inbound-listen is off\)/);
  const own = { '--outbound-listen': 4140, '--admin-listen': 4191 };
  t.throws(() => parseAppPorts('8080,9090', 8080, 4143, '9090=4140', own), /"9090=4140": proxy port 4140 is already the proxy's --outbound-listen port/);
  t.throws(() => parseAppPorts('8080,9090', 8080, 4143, '9090=4191', own), /"9090=4191": proxy port 4191 is already the proxy's --admin-listen port/);
  t.same(parseAppPorts('8080,9090', 8080, 4143, '9090=4144', { '--outbound-listen': undefined, '--admin-listen': 4191 }).listeners, [{ appPort: 9090, proxyPort: 4144 }], 'outbound off: nothing to collide with');
  t.end();
});

t.test('appPortOf: absent, the first port and the proxy inbound port mean the first; others must be listed', (t) => {
  const ports = parseAppPorts('8080,9090', 8080, 4143);
  t.equal(appPortOf(undefined, ports), 8080);
  t.equal(appPortOf('8080', ports), 8080);
  t.equal(appPortOf('4143', ports), 8080, 'dialled the proxy directly (local mesh without iptables)');
  t.equal(appPortOf('9090', ports), 9090);
  for (const bad of ['7070', '', 'x', '9090, 8080', '09090', '99999']) {
    const e = appPortOf(bad, ports);
    t.ok(e instanceof ProxyError && e.code === 'bad-request' && e.status === 400, `"${bad}" → 400`);
    t.match((e as ProxyError).message, /is not one of this workload's app ports \(8080, 9090\)/);
  }
  t.end();
});

t.test("appPortOf on an app port's own listener: absent means that port; the header still names any", (t) => {
  const ports = parseAppPorts('8080,9090', 8080, 4143, '9090=4144');
  t.equal(appPortOf(undefined, ports, 9090), 9090, 'plaintext or headerless: the listener says');
  t.equal(appPortOf('9090', ports, 9090), 9090);
  t.equal(appPortOf('4144', ports, 8080), 9090, "a caller that dialled the 9090 listener's port directly");
  t.equal(appPortOf('8080', ports, 9090), 8080, 'an mTLS caller names another port: the header decides');
  t.equal(appPortOf('4143', ports, 9090), 8080);
  t.ok(appPortOf('7070', ports, 9090) instanceof ProxyError);
  t.end();
});

t.test("byAppPort on the 9090 listener: plaintext and headerless to 9090, an mTLS header where it says", async (t) => {
  const ports = parseAppPorts('8080,9090', 8080, 4143, '9090=4144');
  const got: number[] = [];
  const to = (p: number): Handler => () => {
    got.push(p);
    return Promise.resolve({} as UpstreamResponse);
  };
  const h = byAppPort(ports, new Map([[8080, to(8080)], [9090, to(9090)]]), 9090);
  await h(ex(false));
  await h(ex(false, '8080'));
  await h(ex(true));
  await h(ex(true, '9090'));
  await h(ex(true, '8080'));
  await h(ex(true, '4144'));
  await h(ex(true, '4143'));
  t.same(got, [9090, 9090, 9090, 9090, 8080, 9090, 8080], "a plaintext client's header is ignored; an mTLS caller's is honoured (a proxy port means its app port)");
  await t.rejects(h(ex(true, '7070')), { code: 'bad-request' });
});

t.test("byAppPort: mTLS requests go to their port's pipeline; plaintext to the first", async (t) => {
  const ports = parseAppPorts('8080,9090', 8080, 4143);
  const got: number[] = [];
  const to = (p: number): Handler => () => {
    got.push(p);
    return Promise.resolve({} as UpstreamResponse);
  };
  const h = byAppPort(ports, new Map([[8080, to(8080)], [9090, to(9090)]]));
  await h(ex(true));
  await h(ex(true, '9090'));
  await h(ex(true, '8080'));
  await h(ex(false, '9090'));
  t.same(got, [8080, 9090, 8080, 8080]);
  await t.rejects(h(ex(true, '7070')), { code: 'bad-request' });
  t.same(got, [8080, 9090, 8080, 8080], 'a refused request reaches no pipeline');
});
