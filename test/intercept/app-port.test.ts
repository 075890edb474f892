// inbound/app-port.ts, pure: MESHLET_APP_PORTS parsing, the meshlet-dst-port decision, and the
// dispatch to per-port pipelines (mTLS only; plaintext and headerless go to the first port).
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
