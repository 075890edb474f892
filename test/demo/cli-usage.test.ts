// The local-mesh commands as scripts use them, without a running mesh: --help exits 0 for each,
// bad usage exits 2 with a hint, their --help names the mesh file they read on this machine, a
// missing or stale mesh file exits 1 saying how to start one,
// and `meshlet split --config-dir` edits a TrafficSplit atomically, keeping comments and the
// other documents of the file, refusing bad weights without writing. proxy-status and
// proxy-config keep the same exit codes: 2 for bad usage, 1 with a hint (never a stack trace)
// when the admin server cannot be read; without --admin, proxy-status reads the control plane of
// the local mesh its mesh file names, and says what it tried when it cannot.
import t from 'tap';
import { createServer } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { meshlet, meshletIn } from './fixtures/local-mesh.ts';

const EXAMPLES = fileURLToPath(new URL('../../examples', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'meshlet-cli-usage-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
const none = join(tmp, 'none.json');

t.test('--help exits 0; bad usage exits 2', async (t) => {
  const runs = await Promise.all([
    ...['start', 'stat', 'split', 'fault', 'diagnose'].map(async (c) => [`${c} --help`, await meshlet(none, c, '--help')] as const),
    ['stat -o xml', await meshlet(none, 'stat', '-o', 'xml')] as const,
    ['stat --window x', await meshlet(none, 'stat', '--window', 'x')] as const,
    ['split api', await meshlet(none, 'split', 'api')] as const,
    ['split api v2=500', await meshlet(none, 'split', 'api', 'v2=500')] as const,
    ['fault', await meshlet(none, 'fault')] as const,
    ['fault x --fail 200%', await meshlet(none, 'fault', 'x', '--fail', '200%')] as const,
    ['fault x --clear --fail 1%', await meshlet(none, 'fault', 'x', '--clear', '--fail', '1%')] as const,
    ['diagnose a', await meshlet(none, 'diagnose', 'a')] as const,
  ]);
  for (const [what, r] of runs) {
    if (what.endsWith('--help')) {
      t.equal(r.code, 0, `${what}: exit 0`);
      t.match(r.stdout, /usage: (meshlet|npm start)/, `${what}: usage`);
    } else {
      t.equal(r.code, 2, `${what}: exit 2`);
      t.match(r.stderr, /Run 'meshlet \S+ --help'/, `${what}: says where the usage is`);
    }
  }
  const top = await meshlet(none, '--help');
  for (const c of ['start', 'stat', 'split', 'fault', 'diagnose']) t.match(top.stdout, new RegExp(`\\n  ${c} +\\S`), `meshlet --help lists ${c}`);
});

t.test('--help names the mesh file the command reads here, resolved, and the rule', async (t) => {
  // No XDG_RUNTIME_DIR, no MESHLET_MESH: the file is under the temp dir (TMPDIR here).
  const bare: NodeJS.ProcessEnv = { ...process.env, TMPDIR: tmp };
  delete bare['XDG_RUNTIME_DIR'];
  delete bare['MESHLET_MESH'];
  const underTmp = join(tmp, `meshlet-${process.getuid!()}`, 'local.json');
  const cases = [
    ['no XDG_RUNTIME_DIR', bare, underTmp],
    ['XDG_RUNTIME_DIR', { ...bare, XDG_RUNTIME_DIR: join(tmp, 'run') }, join(tmp, 'run', 'meshlet', 'local.json')],
    ['MESHLET_MESH', { ...bare, XDG_RUNTIME_DIR: join(tmp, 'run'), MESHLET_MESH: join(tmp, 'mine.json') }, join(tmp, 'mine.json')],
  ] as const;
  for (const c of ['stat', 'split', 'fault', 'diagnose']) {
    for (const [what, env, file] of cases) {
      const r = await meshletIn(env, c, '--help');
      t.equal(r.code, 0, `${c} --help (${what}): exit 0`);
      t.match(r.stdout, `here: ${file}\n`, `${c} --help (${what}): names ${file}`);
    }
    const r = await meshletIn(bare, c, '--help');
    t.match(r.stdout, /MESHLET_MESH, else \$XDG_RUNTIME_DIR\/meshlet\/local\.json, else\s+<temp dir>\/meshlet-<uid>\/local\.json, temp dir: \$TMPDIR, \$TMP, \$TEMP or \/tmp/, `${c} --help: the rule`);
  }
});

t.test('no mesh, or a stale one: exit 1 and how to start one', async (t) => {
  const stale = join(tmp, 'stale.json');
  writeFileSync(stale, JSON.stringify({ version: 1, pid: 2 ** 22 + 12345, workloads: [], namespace: 'demo', configDir: tmp, controlPlane: { url: '', admin: '' } }));
  for (const [file, why] of [[none, /no local mesh is running/], [stale, /is stale/]] as const) {
    for (const args of [['stat'], ['fault', 'api-v2', '--fail', '10%'], ['diagnose', 'web', 'api'], ['split', 'api', 'v2=50']]) {
      const r = await meshlet(file, ...args);
      t.equal(r.code, 1, `${args[0]}: exit 1`);
      t.match(r.stderr, why, `${args[0]}: says why`);
      t.match(r.stderr, /npm start/, `${args[0]}: says how to start a mesh`);
    }
  }
});

t.test('proxy-status, proxy-config: exit 2 on bad usage, 1 with a hint when the admin cannot be read', async (t) => {
  // A loopback port nothing listens on: bound, then closed.
  const closed = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
  const runs = [
    ['proxy-status -o xml', 2, await meshlet(none, 'proxy-status', '-o', 'xml'), /want table or json/],
    ['proxy-status --nope', 2, await meshlet(none, 'proxy-status', '--nope'), /--nope/],
    ['proxy-config', 2, await meshlet(none, 'proxy-config'), /give exactly one proxy admin URL/],
    ['proxy-config URL -o xml', 2, await meshlet(none, 'proxy-config', `http://127.0.0.1:${closed}`, '-o', 'xml'), /want json or yaml/],
    ['proxy-status (unreachable)', 1, await meshlet(none, 'proxy-status', '--admin', `http://127.0.0.1:${closed}`), /cannot read http:\/\/127\.0\.0\.1:\d+\/proxies[^]*Pass --admin URL/],
    ['proxy-config (unreachable)', 1, await meshlet(none, 'proxy-config', `http://127.0.0.1:${closed}`), /cannot read http:\/\/127\.0\.0\.1:\d+\/config[^]*--admin-listen/],
    ['proxy-config not-a-url', 1, await meshlet(none, 'proxy-config', 'not-a-url'), /cannot read not-a-url\/config: Invalid URL/],
  ] as const;
  for (const [what, code, r, says] of runs) {
    t.equal(r.code, code, `${what}: exit ${code}`);
    t.match(r.stderr, says, `${what}: says why`);
    t.match(r.stderr, code === 2 ? /Run 'meshlet proxy-\w+ --help' for usage/ : /^meshlet proxy-\w+: /, `${what}: a message, not an exception`);
    t.notMatch(r.stderr, /\n\s+at /, `${what}: no stack trace`);
  }
});

t.test('proxy-status without --admin: the local mesh\'s control plane, else 127.0.0.1:9990, and what it tried', async (t) => {
  // A stand-in control plane admin answering /proxies, and a mesh file naming it whose process
  // (this one) runs, as `npm start` writes it.
  const row = { identity: 'spiffe://cluster.local/ns/demo/sa/web', workload: 'web', namespace: 'demo', pod: 'web-0', sent: 'v7', acked: 'v7', lastAckAt: '2026-01-01T00:00:00.000Z', nack: null };
  const admin = createHttpServer((req, res) => {
    res.writeHead(req.url === '/proxies' ? 200 : 404, { 'content-type': 'application/json' }).end(req.url === '/proxies' ? JSON.stringify([row]) : '{}');
  });
  await new Promise<void>((r) => admin.listen(0, '127.0.0.1', r));
  t.teardown(() => admin.close());
  const adminUrl = `http://127.0.0.1:${(admin.address() as { port: number }).port}`;
  const meshOf = (file: string, pid: number, cpAdmin: string) => {
    writeFileSync(file, JSON.stringify({ version: 1, pid, startedAt: '', workloads: [], namespace: 'demo', configDir: tmp, controlPlane: { url: '', admin: cpAdmin } }));
    return file;
  };
  const live = meshOf(join(tmp, 'live.json'), process.pid, adminUrl);

  const found = await meshlet(live, 'proxy-status', '-o', 'json');
  t.equal(found.code, 0, `the local mesh's control plane: exit 0\n${found.stderr}`);
  t.same(found.stdout ? JSON.parse(found.stdout) : null, [row], "the rows of the local mesh's control plane");
  const table = await meshlet(none, 'proxy-status', '--mesh', live);
  t.match(table.stdout, /demo\/web-0 +spiffe:\/\/cluster\.local\/ns\/demo\/sa\/web +v7 +v7/, '--mesh FILE: that mesh\'s control plane');

  // --admin wins over the mesh file.
  const closed = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
  const flag = await meshlet(live, 'proxy-status', '--admin', `http://127.0.0.1:${closed}`);
  t.equal(flag.code, 1, '--admin: read there, not from the mesh file');
  t.match(flag.stderr, `cannot read http://127.0.0.1:${closed}/proxies`, '--admin: names that URL');

  // The mesh file names a control plane that does not answer: says it came from the mesh file.
  const gone = meshOf(join(tmp, 'gone.json'), process.pid, `http://127.0.0.1:${closed}`);
  const down = await meshlet(gone, 'proxy-status');
  t.equal(down.code, 1, "the local mesh's control plane does not answer: exit 1");
  t.match(down.stderr, `cannot read http://127.0.0.1:${closed}/proxies (the control plane admin of the local mesh in ${gone})`, 'says the URL came from the mesh file');
  t.match(down.stderr, /--admin URL/, 'says how to point it elsewhere');

  // No mesh, or a stale one: the default, and the error says what was tried. The test holds the
  // default port with a server that drops every connection, so the default never answers.
  const holder = createServer((c) => c.destroy());
  await new Promise<void>((resolve, reject) => {
    holder.once('error', (e: NodeJS.ErrnoException) => reject(new Error(`this test needs 127.0.0.1:9990 (proxy-status's default) free; something listens there (${e.code}): stop it and run again`)));
    holder.listen(9990, '127.0.0.1', resolve);
  });
  t.teardown(() => holder.close());
  const stale = meshOf(join(tmp, 'stale-cp.json'), 2 ** 22 + 12345, adminUrl);
  for (const [file, why] of [[none, 'no local mesh is running'], [stale, 'is stale']] as const) {
    const r = await meshlet(file, 'proxy-status');
    t.equal(r.code, 1, `${why}: exit 1`);
    t.match(r.stderr, 'cannot read http://127.0.0.1:9990/proxies (the default)', `${why}: the default was tried`);
    t.match(r.stderr, `Tried the local mesh file first: `, `${why}: the mesh file was tried first`);
    t.match(r.stderr, file, `${why}: names the mesh file`);
    t.match(r.stderr, why, `${why}: says why it gave no control plane`);
    t.match(r.stderr, /Pass --admin URL .*npm start/, `${why}: how to point it`);
  }
  const both = await meshlet(none, 'proxy-status', '--admin', adminUrl, '--mesh', live);
  t.equal(both.code, 2, '--admin and --mesh: exit 2');
});

t.test('split --config-dir edits the TrafficSplit file in place', async (t) => {
  const dir = join(tmp, 'config');
  cpSync(EXAMPLES, dir, { recursive: true });
  // A second document in the same file must survive.
  const file = join(dir, 'canary.yaml');
  writeFileSync(file, `${readFileSync(file, 'utf8')}---\n# another\napiVersion: meshlet.io/v1alpha1\nkind: TrafficSplit\nmetadata: { name: other, namespace: demo }\nspec:\n  service: web\n  backends:\n    - { service: web, weight: 1 }\n`);
  const r = await meshlet(none, 'split', 'api', 'v2=30', '--config-dir', dir, '-o', 'json');
  t.equal(r.code, 0, r.stderr);
  t.same(JSON.parse(r.stdout).after, [{ service: 'api-v1', weight: 70 }, { service: 'api-v2', weight: 30 }]);
  const text = readFileSync(file, 'utf8');
  t.match(text, /# Edit the weights and save/, 'comment kept');
  t.match(text, /\{ service: api-v1, weight: 70 \}/, 'flow style kept, weight changed');
  t.match(text, /# another[\s\S]*name: other[\s\S]*\{ service: web, weight: 1 \}/, 'the other document is untouched');
  t.same(readdirSync(dir).filter((f) => f.includes('tmp')), [], 'no temporary file left');
  const bad = await meshlet(none, 'split', 'api', 'v3=30', '--config-dir', dir);
  t.equal(bad.code, 2, 'an unknown backend: exit 2');
  t.match(bad.stderr, /not a backend of api's split \(backends: api-v1, api-v2\)/);
  t.equal(readFileSync(file, 'utf8'), text, 'nothing written');
  const missing = await meshlet(none, 'split', 'nothere', 'v2=30', '--config-dir', dir);
  t.equal(missing.code, 1, 'no such split: exit 1');
  t.match(missing.stderr, /no TrafficSplit for service "nothere"/);
});
