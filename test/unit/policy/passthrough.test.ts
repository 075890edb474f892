// Which hosts outside the mesh the proxy passes through (outbound/passthrough.ts), and the state
// it keeps for them: one service per host:port with the mesh's default retries, no timeouts and no
// breaker; the least recently used go past 256 hosts, their pools closed.
import t from 'tap';
import { BlockList } from 'node:net';
import { ManualClock, seededRandom } from '../../../api/runtime.ts';
import { externalLookup, Passthrough, PASSTHROUGH, passthroughRefusal, portOfAuthority } from '../../../proxy/outbound/passthrough.ts';
import { destinationOf } from '../../../proxy/outbound/destination.ts';
import { compile, StateRegistry } from '../../../proxy/config/compile.ts';
import { ProxyError } from '../../../proxy/errors.ts';

const ownAddresses = new BlockList();
ownAddresses.addAddress('10.1.0.9', 'ipv4');
ownAddresses.addAddress('fd00::9', 'ipv6');
const OWN = { ports: new Set([4140, 4143, 4191]), addresses: ownAddresses };
/** compile() asks the factory for a pool per endpoint and never uses it. */
const noPools = { create: () => ({}), close: () => {} };
const EMPTY = compile({ version: 'v', services: [] }, new StateRegistry(new ManualClock(), seededRandom(1), noPools));

t.test("the Host's port, 80 when it names none", async (t) => {
  t.equal(portOfAuthority('api.example.com'), 80);
  t.equal(portOfAuthority('api.example.com:8080'), 8080);
  t.equal(portOfAuthority('[fd00::1]'), 80);
  t.equal(portOfAuthority('[fd00::1]:9000'), 9000);
  for (const bad of ['a.example:0', 'a.example:65536', 'a.example:', 'a.example:8o', 'a.example:+80', 'a.example:123456', 'a.example:80:18080', 'fd00::1:80']) t.equal(portOfAuthority(bad), undefined, bad);
});

t.test('hosts outside the mesh pass; loopback, own ports and cluster names never do', async (t) => {
  for (const [host, port] of [['api.partner.example', 80], ['10.0.0.7', 8080], ['[fd00::7]', 80], ['es-0.es.shop.pod.cluster.local', 9200], ['a.b', 1], ['10.0.0.7', 4191]] as const) {
    t.equal(passthroughRefusal(host, port, OWN), undefined, `${host}:${port} passes`);
  }
  const refused: Array<[string, number | undefined, RegExp]> = [
    ['127.0.0.1', 80, /loopback/],
    ['127.1.2.3', 8080, /loopback/],
    ['0.0.0.0', 80, /loopback/],
    ['[::1]', 80, /loopback/],
    ['[::]', 80, /loopback/],
    ['[0:0:0:0:0:0:0:1]', 80, /loopback/],
    ['[::ffff:127.0.0.1]', 80, /loopback/],
    // Other spellings of the same addresses: the address decides, not its text.
    ['[0::1]', 80, /loopback/],
    ['[0::]', 80, /loopback/],
    ['[::ffff:7f00:1]', 80, /loopback/],
    ['[0:0:0:0:0:ffff:127.0.0.1]', 80, /loopback/],
    ['localhost', 80, /loopback/],
    ['app.localhost', 80, /loopback/],
    ['api', 80, /single-label name means a Service of the cluster/],
    ['api.shop.svc', 80, /cluster Service name/],
    ['api.shop.svc.cluster.local', 80, /cluster Service name/],
    ['api.partner.example', 4140, /port 4140 is one of this proxy's own/],
    ['10.1.0.9', 4191, /10\.1\.0\.9:4191 is this proxy's own/],
    ['[fd00:0::9]', 4143, /is this proxy's own/],
    ['api.partner.example', undefined, /no valid port/],
  ];
  for (const [host, port, why] of refused) t.match(passthroughRefusal(host, port, OWN), why, `${host}:${port}`);
});

const lookup = externalLookup();
/** What externalLookup answers for `name`. */
const resolve = (name: string, all: boolean) =>
  new Promise<{ err: NodeJS.ErrnoException | null; address: unknown }>((res) => lookup(name, { all }, (err, address) => res({ err, address })));

t.test('a name resolved to a loopback address is refused when dialled, whatever spells it', async (t) => {
  // getaddrinfo parses these itself (no resolver needed); `localhost` is in every /etc/hosts.
  for (const name of ['127.1', '0x7f.1', '0177.0.0.1', '0.0', 'localhost']) {
    for (const all of [false, true]) {
      const { err } = await resolve(name, all);
      t.ok(err instanceof ProxyError && err.code === 'no-route' && /it resolves to (127\.0\.0\.1|0\.0\.0\.0|::1), a loopback address/.test(err.message), `${name} (all: ${all}): ${err?.message}`);
    }
  }
  const ok = await resolve('10.1.2.3', true);
  t.same([ok.err, ok.address], [null, [{ address: '10.1.2.3', family: 4 }]], 'another address resolves as dns.lookup does');
});

/** A client factory that records what it made and closed. */
function recordingClients() {
  const made: string[] = [];
  const closed: string[] = [];
  return { made, closed, factory: { create: (e: { address: string }) => (made.push(e.address), { address: e.address }), close: (c: unknown) => closed.push((c as { address: string }).address) } };
}

t.test('one service per host:port, kept while used; the 257th host closes the least recently used', async (t) => {
  const c = recordingClients();
  const p = new Passthrough(c.factory, new ManualClock(), seededRandom(1), OWN, true);
  const a = p.serviceFor(EMPTY, 'api.partner.example', 'api.partner.example');
  if (a instanceof ProxyError) throw a;
  t.equal(a.name, PASSTHROUGH, 'labelled passthrough in metrics, whatever the host');
  t.same(a.endpoints.map((e) => [e.address, e.identity]), [['api.partner.example:80', undefined]], 'plaintext to the host on port 80');
  t.equal(p.serviceFor(EMPTY, 'api.partner.example', 'api.partner.example:80'), a, 'the same host and port: the same service (pool, budget)');
  const other = p.serviceFor(EMPTY, 'api.partner.example', 'api.partner.example:8080');
  t.not(other, a, 'another port: another service');
  const route = a.routes[0]!;
  t.same(route.timeouts, { connect: 5000, perTry: 0, request: 0 }, 'no per-try or request timeout; 5 s to resolve and connect');
  t.equal(route.retry.attempts, 3, "the mesh's default retries");
  t.same([...route.retry.statuses], [502, 503, 504]);
  t.equal(route.backends.length, 1);
  t.equal(route.backends[0]!.service, a);
  const ep = a.endpoints[0]!;
  for (let i = 0; i < 50; i++) ep.accrual.onResult(false, ep.accrual.onDispatch());
  t.ok(ep.accrual.isAvailable(), 'no breaker: 50 failures in a row eject nothing');

  t.same(c.closed, []);
  for (let i = 0; i < 254; i++) p.serviceFor(EMPTY, `h${i}.example`, `h${i}.example`);
  t.same(c.closed, [], '256 hosts kept');
  p.serviceFor(EMPTY, 'api.partner.example', 'api.partner.example'); // used again: now the most recent
  p.serviceFor(EMPTY, 'h-new.example', 'h-new.example');
  t.same(c.closed, ['api.partner.example:8080'], 'the least recently used one is closed');
  t.equal(p.serviceFor(EMPTY, 'api.partner.example', 'api.partner.example'), a, 'the one used since stays');
  p.closeAll();
  t.equal(c.closed.length, 257, 'closeAll closes every pool');
});

t.test('destinationOf: the config first, then passthrough; an override must name a service of the config', async (t) => {
  const c = recordingClients();
  const cfg = compile({ version: 'v', services: [{ name: 'api.shop', hosts: ['api'], endpoints: [{ address: '10.0.0.1:8080' }] }] }, new StateRegistry(new ManualClock(), seededRandom(1), c.factory));
  const p = new Passthrough(c.factory, new ManualClock(), seededRandom(1), OWN, true);
  const known = destinationOf(cfg, 'api', 'api', undefined, p);
  t.equal((known as { name: string }).name, 'api.shop', 'a host of the config is its service, never passed through');
  t.equal((destinationOf(cfg, 'ext.example', 'ext.example', undefined, p) as { name: string }).name, PASSTHROUGH);
  const off = destinationOf(cfg, 'ext.example', 'ext.example', undefined, undefined);
  t.ok(off instanceof ProxyError && off.code === 'no-route' && /no service for host "ext.example"/.test(off.message), 'without passthrough: 404 no-route');
  const typo = destinationOf(cfg, 'apii', 'apii', undefined, p);
  t.ok(typo instanceof ProxyError && typo.code === 'no-route' && /not passed through: a single-label name/.test(typo.message), 'an unknown short name stays a 404 that says why');
  const over = destinationOf(cfg, 'ext.example', 'ext.example', 'other.example', p);
  t.ok(over instanceof ProxyError && /"other.example" \(meshlet-dst-override\)/.test(over.message), 'an override naming no service is a 404, not passed through');
});

t.test("a Pod's IP that names no service: to that Pod with its identity, on the Host's port, passthrough or not", async (t) => {
  const doc = { version: 'v', services: [{ name: 'api.shop', hosts: ['10.96.0.12'], endpoints: [{ address: '10.1.0.7:8080', identity: 'spiffe://cluster.local/ns/shop/sa/api', labels: { workload: 'api', namespace: 'shop' } }, { address: '10.1.0.8:8080' }] }] };
  const cfg = compile(doc, new StateRegistry(new ManualClock(), seededRandom(1), noPools));
  for (const external of [true, false]) {
    const c = recordingClients();
    const p = new Passthrough(c.factory, new ManualClock(), seededRandom(1), OWN, external);
    const svc = destinationOf(cfg, '10.1.0.7', '10.1.0.7:9090', undefined, p);
    if (svc instanceof ProxyError) throw svc;
    t.equal(svc.name, 'api.shop', `labelled with the endpoint's service (passthrough ${external})`);
    const ep = svc.endpoints[0]!;
    t.same([ep.address, ep.identity, ep.labels], ['10.1.0.7:9090', 'spiffe://cluster.local/ns/shop/sa/api', { workload: 'api', namespace: 'shop' }], 'mTLS to that Pod on the port the Host names');
    t.same(svc.routes[0]!.timeouts, { connect: 1000, perTry: 10_000, request: 15_000 }, "a mesh destination: the mesh's default timeouts");
    const unmeshed = destinationOf(cfg, '10.1.0.8', '10.1.0.8:9090', undefined, p);
    if (external) t.equal((unmeshed as { name: string }).name, PASSTHROUGH, 'an endpoint without identity: plaintext, as any host outside the mesh');
    else t.ok(unmeshed instanceof ProxyError && unmeshed.code === 'no-route', 'an endpoint without identity, passthrough off: 404');
    const admin = destinationOf(cfg, '10.1.0.7', '10.1.0.7:4191', undefined, p);
    t.equal((admin as { name: string }).name, 'api.shop', "another Pod's proxy port (a meshed Prometheus scraping it) is that Pod's");
    const own = destinationOf(cfg, '10.1.0.9', '10.1.0.9:4191', undefined, p);
    t.ok(own instanceof ProxyError && own.code === 'no-route' && (!external || /is this proxy's own/.test(own.message)), "never this proxy's own address and port");
  }
  t.equal((destinationOf(cfg, '10.96.0.12', '10.96.0.12', undefined, undefined) as { name: string }).name, 'api.shop', 'a host of the config is still its service');
});
