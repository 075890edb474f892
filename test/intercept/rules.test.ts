// proxy/intercept/intercept.sh against real iptables in a fresh network namespace: the rules it
// installs, idempotence (a second run leaves iptables-save identical), bad environment (non-zero
// exit, nothing changed), --dry-run, --cleanup, rules it does not own kept, and iptables-legacy.
import t, { type Test } from 'tap';
import { fileURLToPath } from 'node:url';
import { createNetnsPair, plainEnv, requireTools, type NetnsPair } from '../fixtures/netns.ts';
import { inject } from '../../injector/inject.ts';
import { INIT_CONTAINER_NAME, defaultSettings } from '../../injector/settings.ts';

requireTools(['ip', 'iptables', 'iptables-save', 'iptables-restore', 'setpriv', 'unshare', 'mount']);

const SCRIPT = fileURLToPath(new URL('../../proxy/intercept/intercept.sh', import.meta.url));

async function withPod(t: Test, fn: (pair: NetnsPair) => Promise<void>): Promise<void> {
  const pair = await createNetnsPair('mlrules');
  t.teardown(() => pair.cleanup());
  await fn(pair);
}

function run(pair: NetnsPair, env: Record<string, string>, ...args: string[]) {
  return pair.exec(pair.pod, [SCRIPT, ...args], { env: plainEnv(env) });
}

const ENV = { MESHLET_INBOUND_PORTS: '8080,9090', MESHLET_SKIP_OUTBOUND_PORTS: '5432,6000-6010', MESHLET_SKIP_OUTBOUND_CIDRS: '10.96.0.1, 169.254.0.0/16' };

t.test('installs the meshlet chains, and a second run changes nothing', (t) =>
  withPod(t, async (pair) => {
    const pristine = await pair.natRules(pair.pod);
    const first = await run(pair, ENV);
    t.equal(first.code, 0, first.stderr);
    const once = await pair.natRules(pair.pod);
    for (const rule of [
      '-A PREROUTING -p tcp -j MESHLET_INBOUND',
      '-A OUTPUT -p tcp -j MESHLET_OUTPUT',
      '-A MESHLET_INBOUND -p tcp -m tcp --dport 4143 -j RETURN',
      '-A MESHLET_INBOUND -p tcp -m tcp --dport 4191 -j RETURN',
      '-A MESHLET_INBOUND -p tcp -m tcp --dport 8080 -j REDIRECT --to-ports 4143',
      '-A MESHLET_INBOUND -p tcp -m tcp --dport 9090 -j REDIRECT --to-ports 4143',
      '-A MESHLET_OUTPUT -m owner --uid-owner 2102 -j RETURN',
      '-A MESHLET_OUTPUT -o lo -j RETURN',
      '-A MESHLET_OUTPUT -p tcp -m tcp --dport 53 -j RETURN',
      '-A MESHLET_OUTPUT -d 10.96.0.1/32 -j RETURN',
      '-A MESHLET_OUTPUT -d 169.254.0.0/16 -j RETURN',
      '-A MESHLET_OUTPUT -p tcp -m tcp --dport 5432 -j RETURN',
      '-A MESHLET_OUTPUT -p tcp -m tcp --dport 6000:6010 -j RETURN',
      '-A MESHLET_OUTPUT -p tcp -j REDIRECT --to-ports 4140',
    ]) {
      t.ok(once.split('\n').includes(rule), rule);
    }
    t.notSame(once, pristine);
    const all = await pair.allRules(pair.pod);
    const second = await run(pair, ENV);
    t.equal(second.code, 0, second.stderr);
    t.equal(await pair.natRules(pair.pod), once, 'iptables-save is identical after the second run');
    t.equal(await pair.allRules(pair.pod), all, 'every table, not only nat');
    const third = await run(pair, ENV);
    t.equal(third.code, 0, third.stderr);
    t.equal(await pair.natRules(pair.pod), once, 'and after a third');
  }),
);

t.test('a run with other settings replaces the rules (no leftovers, one jump each)', (t) =>
  withPod(t, async (pair) => {
    t.equal((await run(pair, ENV)).code, 0);
    const r = await run(pair, { MESHLET_PROXY_UID: '1337', MESHLET_SKIP_INBOUND_PORTS: '22' });
    t.equal(r.code, 0, r.stderr);
    const rules = (await pair.natRules(pair.pod)).split('\n');
    t.ok(rules.includes('-A MESHLET_OUTPUT -m owner --uid-owner 1337 -j RETURN'));
    t.ok(rules.includes('-A MESHLET_INBOUND -p tcp -m tcp --dport 22 -j RETURN'));
    t.ok(rules.includes('-A MESHLET_INBOUND -p tcp -j REDIRECT --to-ports 4143'), 'no MESHLET_INBOUND_PORTS: every TCP port');
    t.notOk(rules.some((l) => l.includes('2102') || l.includes('5432') || l.includes('--dport 8080')), 'the old rules are gone');
    t.equal(rules.filter((l) => l.endsWith('-j MESHLET_INBOUND')).length, 1);
    t.equal(rules.filter((l) => l.endsWith('-j MESHLET_OUTPUT')).length, 1);
  }),
);

t.test('bad environment: clear error, non-zero exit, no rule changed (fresh and installed)', (t) =>
  withPod(t, async (pair) => {
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ MESHLET_OUTBOUND_PORT: 'http' }, /MESHLET_OUTBOUND_PORT="http": expected a TCP port/],
      [{ MESHLET_INBOUND_PORT: '70000' }, /MESHLET_INBOUND_PORT="70000"/],
      [{ MESHLET_ADMIN_PORT: '-1' }, /MESHLET_ADMIN_PORT="-1"/],
      [{ MESHLET_PROXY_UID: 'meshlet' }, /MESHLET_PROXY_UID="meshlet": expected a numeric UID/],
      [{ MESHLET_INBOUND_PORTS: '8080,80a' }, /MESHLET_INBOUND_PORTS: "80a"/],
      [{ MESHLET_INBOUND_PORTS: '4143' }, /4143 is one of the proxy's own ports/],
      [{ MESHLET_SKIP_INBOUND_PORTS: '9000-8000' }, /range starts after it ends/],
      [{ MESHLET_SKIP_OUTBOUND_PORTS: '53 5432' }, /MESHLET_SKIP_OUTBOUND_PORTS: "53 5432"/],
      [{ MESHLET_SKIP_OUTBOUND_CIDRS: '10.0.0.0/33' }, /"10.0.0.0\/33": expected an IPv4 address or CIDR/],
      [{ MESHLET_SKIP_OUTBOUND_CIDRS: '10.0.0.0/8,10.0.0/8' }, /"10.0.0\/8"/],
      [{ MESHLET_SKIP_OUTBOUND_CIDRS: '256.0.0.1' }, /"256.0.0.1"/],
      [{ MESHLET_SKIP_OUTBOUND_CIDRS: 'fd00::/8' }, /IPv6 is not supported/],
      [{ MESHLET_SKIP_OUTBOUND_CIDRS: '*' }, /"\*"/],
      [{ MESHLET_INBOUND_PORT: '4140' }, /must differ/],
      [{ MESHLET_INBOUND_PORT_MAP: '9090' }, /MESHLET_INBOUND_PORT_MAP: "9090": expected APP_PORT=PROXY_PORT/],
      [{ MESHLET_INBOUND_PORT_MAP: '9090=4144,9090=4145' }, /app port 9090 is mapped twice/],
      [{ MESHLET_INBOUND_PORT_MAP: '8080=4144,9090=4144' }, /proxy port 4144 is the target of two app ports/],
      [{ MESHLET_INBOUND_PORT_MAP: '9090=4191' }, /proxy port 4191 is already the proxy's outbound, inbound or admin port/],
      [{ MESHLET_INBOUND_PORT_MAP: '9090=4143' }, /proxy port 4143 is already/],
      [{ MESHLET_INBOUND_PORT_MAP: '9090=8080' }, /MESHLET_INBOUND_PORTS: 8080 is one of the proxy's own ports \(outbound 4140, inbound 4143, admin 4191, mapped 8080\)/],
      [{ MESHLET_INBOUND_PORT_MAP: '7070=4144' }, /app port 7070 is not in MESHLET_INBOUND_PORTS/],
      [{ MESHLET_INBOUND_PORTS: '', MESHLET_INBOUND_PORT_MAP: '4191=4144' }, /MESHLET_INBOUND_PORT_MAP: app port 4191 is one of the proxy's own ports/],
      [{ MESHLET_INBOUND_PORTS: 'none', MESHLET_INBOUND_PORT_MAP: '9090=4144' }, /MESHLET_INBOUND_PORTS=none redirects nothing inbound/],
      [{ MESHLET_IPTABLES: 'nft' }, /MESHLET_IPTABLES="nft"/],
    ];
    for (const installed of [false, true]) {
      if (installed) t.equal((await run(pair, ENV)).code, 0);
      const before = await pair.allRules(pair.pod);
      for (const [env, message] of cases) {
        const r = await run(pair, { ...ENV, ...env });
        const what = `${JSON.stringify(env)} (${installed ? 'rules installed' : 'fresh'})`;
        t.not(r.code, 0, `${what}: non-zero exit`);
        t.match(r.stderr, message, `${what}: says what is wrong`);
        t.match(r.stderr, /no rule changed/, `${what}: says nothing changed`);
        t.equal(await pair.allRules(pair.pod), before, `${what}: iptables-save unchanged`);
      }
    }
    const all = await run(pair, { MESHLET_OUTBOUND_PORT: 'x', MESHLET_SKIP_OUTBOUND_CIDRS: 'y' });
    t.match(all.stderr, /MESHLET_OUTBOUND_PORT[\s\S]*MESHLET_SKIP_OUTBOUND_CIDRS/, 'every problem is reported at once');
    const arg = await run(pair, {}, '--frobnicate');
    t.not(arg.code, 0);
    t.match(arg.stderr, /unknown argument: --frobnicate/);
  }),
);

t.test('--dry-run prints the rules and changes nothing; --help documents the environment', (t) =>
  withPod(t, async (pair) => {
    const before = await pair.natRules(pair.pod);
    const r = await run(pair, ENV, '--dry-run');
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, /^\*nat\n:MESHLET_INBOUND - \[0:0\]\n/);
    t.match(r.stdout, /-A MESHLET_OUTPUT -p tcp -j REDIRECT --to-ports 4140\n/);
    t.match(r.stdout, /COMMIT\n$/);
    t.equal(await pair.natRules(pair.pod), before);
    const help = await run(pair, {}, '--help');
    t.equal(help.code, 0);
    for (const v of ['MESHLET_PROXY_UID', 'MESHLET_OUTBOUND_PORT', 'MESHLET_INBOUND_PORT', 'MESHLET_ADMIN_PORT', 'MESHLET_INBOUND_PORTS', 'MESHLET_INBOUND_PORT_MAP', 'MESHLET_SKIP_INBOUND_PORTS', 'MESHLET_SKIP_OUTBOUND_PORTS', 'MESHLET_SKIP_OUTBOUND_CIDRS']) t.match(help.stdout, v);
  }),
);

t.test('--cleanup removes only meshlet rules; rules it does not own stay through install and cleanup', (t) =>
  withPod(t, async (pair) => {
    const foreign = await pair.exec(pair.pod, ['iptables', '-t', 'nat', '-A', 'OUTPUT', '-p', 'udp', '--dport', '53', '-j', 'RETURN']);
    t.equal(foreign.code, 0, foreign.stderr);
    const pristine = await pair.natRules(pair.pod);
    t.equal((await run(pair, ENV)).code, 0);
    t.ok((await pair.natRules(pair.pod)).includes('-A OUTPUT -p udp -m udp --dport 53 -j RETURN'), 'the foreign rule survives install');
    const c = await run(pair, {}, '--cleanup');
    t.equal(c.code, 0, c.stderr);
    t.equal(await pair.natRules(pair.pod), pristine, 'back to exactly what was there');
    const again = await run(pair, {}, '--cleanup');
    t.equal(again.code, 0, 'cleanup twice is fine');
    t.equal(await pair.natRules(pair.pod), pristine);
    // The environment the rules were installed with may be gone or wrong by the time they are removed.
    t.equal((await run(pair, ENV)).code, 0);
    const bad = await run(pair, { ...ENV, MESHLET_INBOUND_PORTS: '8080,http', MESHLET_OUTBOUND_PORT: '0' }, '--cleanup');
    t.equal(bad.code, 0, `cleanup does not read the ports: ${bad.stderr}`);
    t.equal(await pair.natRules(pair.pod), pristine, 'removed all the same');
  }),
);

t.test('iptables-legacy: same rules, same idempotence', async (t) => {
  const probe = await createNetnsPair('mllegacy');
  t.teardown(() => probe.cleanup());
  const ok = await probe.exec(probe.pod, ['iptables-legacy', '-t', 'nat', '-S']);
  // Not a skip: meshlet-init falls back to iptables-legacy, so this must run where the tests run.
  if (ok.code !== 0) throw new Error(`iptables-legacy cannot read the nat table here (install the iptables package; the kernel needs the ip_tables and iptable_nat modules): ${ok.stderr.trim()}`);
  const env = { ...ENV, MESHLET_IPTABLES: 'iptables-legacy' };
  const save = async () => (await probe.exec(probe.pod, ['iptables-legacy-save', '-t', 'nat'])).stdout.split('\n').filter((l) => !l.startsWith('#')).join('\n');
  t.equal((await run(probe, env)).code, 0);
  const once = await save();
  t.match(once, /-A MESHLET_OUTPUT -m owner --uid-owner 2102 -j RETURN/);
  t.equal((await run(probe, env)).code, 0);
  t.equal(await save(), once, 'identical after the second run');
  t.equal((await run(probe, env, '--cleanup')).code, 0);
  t.notMatch(await save(), /MESHLET/);
});

/**
 * A private mount namespace: the root's /tmp and /run read-only, then the Pod's emptyDir (a tmpfs)
 * at each of `mounts`; then the script, opened first (the checkout may itself live under /tmp).
 */
function readOnlyRootScript(mounts: string[]): string {
  return [
    'set -e',
    `exec 3<${SCRIPT}`,
    'mount --make-rprivate /',
    'for d in /tmp /run; do mount --bind "$d" "$d"; mount -o remount,bind,ro "$d"; done',
    ...mounts.map((m) => `mount -t tmpfs -o size=16m tmpfs ${m}`),
    'exec sh /dev/fd/3',
  ].join('\n');
}

t.test('with a read-only root filesystem, as injected: the writable mounts the injector gives meshlet-init are enough', (t) =>
  withPod(t, async (pair) => {
    // The init container the injector writes: read-only root, and its volume mounts.
    const r = inject({ metadata: { name: 'web', namespace: 'shop' }, spec: { containers: [{ name: 'app', image: 'app:1', ports: [{ containerPort: 8080 }] }] } }, defaultSettings({ trustAnchorsPem: 'x' }));
    if (r.outcome !== 'injected') throw new Error(`not injected: ${JSON.stringify(r)}`);
    const init = (r.patch.find((op) => op.path === '/spec/initContainers') as { value: Array<Record<string, unknown>> }).value.find((c) => c['name'] === INIT_CONTAINER_NAME)!;
    t.equal((init['securityContext'] as { readOnlyRootFilesystem: boolean }).readOnlyRootFilesystem, true, 'the init container runs on a read-only root');
    const writable = ((init['volumeMounts'] ?? []) as Array<{ mountPath: string }>).map((m) => m.mountPath);
    const env = { MESHLET_INBOUND_PORTS: '8080' };
    const bare = await pair.exec(pair.pod, ['unshare', '-m', 'sh', '-c', readOnlyRootScript([])], { env: plainEnv(env) });
    t.not(bare.code, 0, `without writable mounts the script fails (the failure this guards against): ${bare.stderr.trim().split('\n').at(-1)}`);
    const mounted = await pair.exec(pair.pod, ['unshare', '-m', 'sh', '-c', readOnlyRootScript(writable)], { env: plainEnv(env) });
    t.equal(mounted.code, 0, `with the injected mounts (${writable.join(', ')}) it installs the rules: ${mounted.stderr}`);
    t.match(await pair.natRules(pair.pod), /-A MESHLET_INBOUND -p tcp -m tcp --dport 8080 -j REDIRECT --to-ports 4143/);
  }),
);

t.test('MESHLET_INBOUND_PORTS=none: no inbound redirect at all, outbound as usual', (t) =>
  withPod(t, async (pair) => {
    const r = await run(pair, { MESHLET_INBOUND_PORTS: 'none' });
    t.equal(r.code, 0, r.stderr);
    const rules = await pair.natRules(pair.pod);
    t.notMatch(rules, /MESHLET_INBOUND[^\n]*REDIRECT/, 'nothing redirected inbound');
    t.match(rules, /-A MESHLET_OUTPUT -p tcp -j REDIRECT --to-ports 4140/, 'outbound still goes to the proxy');
  }),
);

t.test('MESHLET_INBOUND_PORT_MAP: each mapped app port to its own proxy port, which is never redirected itself', (t) =>
  withPod(t, async (pair) => {
    const listed = await run(pair, { ...ENV, MESHLET_INBOUND_PORTS: '8080,9090,7070', MESHLET_INBOUND_PORT_MAP: '9090=4144' });
    t.equal(listed.code, 0, listed.stderr);
    const rules = (await pair.natRules(pair.pod)).split('\n').filter((l) => l.startsWith('-A MESHLET_INBOUND'));
    t.same(rules, [
      '-A MESHLET_INBOUND -p tcp -m tcp --dport 4143 -j RETURN',
      '-A MESHLET_INBOUND -p tcp -m tcp --dport 4140 -j RETURN',
      '-A MESHLET_INBOUND -p tcp -m tcp --dport 4191 -j RETURN',
      '-A MESHLET_INBOUND -p tcp -m tcp --dport 4144 -j RETURN',
      '-A MESHLET_INBOUND -p tcp -m tcp --dport 8080 -j REDIRECT --to-ports 4143',
      '-A MESHLET_INBOUND -p tcp -m tcp --dport 9090 -j REDIRECT --to-ports 4144',
      '-A MESHLET_INBOUND -p tcp -m tcp --dport 7070 -j REDIRECT --to-ports 4143',
    ], 'the proxy ports first, then each app port to its listener (unmapped ones to the inbound port)');
    const once = await pair.natRules(pair.pod);
    t.equal((await run(pair, { ...ENV, MESHLET_INBOUND_PORTS: '8080,9090,7070', MESHLET_INBOUND_PORT_MAP: '9090=4144' })).code, 0);
    t.equal(await pair.natRules(pair.pod), once, 'idempotent');

    // Every TCP port (no list): the mapped ports before the catch-all.
    const all = await run(pair, { MESHLET_INBOUND_PORT_MAP: '9090=4144,9091=4145', MESHLET_SKIP_INBOUND_PORTS: '22' });
    t.equal(all.code, 0, all.stderr);
    t.same((await pair.natRules(pair.pod)).split('\n').filter((l) => l.startsWith('-A MESHLET_INBOUND')).slice(3), [
      '-A MESHLET_INBOUND -p tcp -m tcp --dport 4144 -j RETURN',
      '-A MESHLET_INBOUND -p tcp -m tcp --dport 4145 -j RETURN',
      '-A MESHLET_INBOUND -p tcp -m tcp --dport 22 -j RETURN',
      '-A MESHLET_INBOUND -p tcp -m tcp --dport 9090 -j REDIRECT --to-ports 4144',
      '-A MESHLET_INBOUND -p tcp -m tcp --dport 9091 -j REDIRECT --to-ports 4145',
      '-A MESHLET_INBOUND -p tcp -j REDIRECT --to-ports 4143',
    ]);
    t.match(all.stderr, /by port: 9090=4144,9091=4145/, 'the log names the map');
  }),
);

t.test("the injector's env for a Pod with two ports installs one redirect per port, to the proxy port the proxy is told", (t) =>
  withPod(t, async (pair) => {
    const pod = { metadata: { name: 'api', namespace: 'shop' }, spec: { containers: [{ name: 'app', image: 'app:1', ports: [{ containerPort: 8080 }, { containerPort: 9090 }] }] } };
    const r = inject(pod, defaultSettings({ trustAnchorsPem: 'x' }));
    if (r.outcome !== 'injected') throw new Error(`not injected: ${JSON.stringify(r)}`);
    const [init, proxy] = (r.patch.find((op) => op.path === '/spec/initContainers') as { value: Array<{ env: Array<{ name: string; value?: string }> }> }).value;
    const envOf = (c: typeof init) => Object.fromEntries(c!.env.filter((e) => e.value !== undefined).map((e) => [e.name, e.value!]));
    const res = await run(pair, envOf(init));
    t.equal(res.code, 0, res.stderr);
    const rules = await pair.natRules(pair.pod);
    t.match(rules, /-A MESHLET_INBOUND -p tcp -m tcp --dport 8080 -j REDIRECT --to-ports 4143\n/);
    const [app, proxyPort] = envOf(proxy).MESHLET_INBOUND_PORT_MAP!.split('=');
    t.equal(app, '9090');
    t.match(rules, new RegExp(`-A MESHLET_INBOUND -p tcp -m tcp --dport 9090 -j REDIRECT --to-ports ${proxyPort}\\n`), "9090 goes to the port in the proxy's MESHLET_INBOUND_PORT_MAP");
    t.match(rules, new RegExp(`-A MESHLET_INBOUND -p tcp -m tcp --dport ${proxyPort} -j RETURN\\n`), 'and that port is never redirected');
  }),
);
