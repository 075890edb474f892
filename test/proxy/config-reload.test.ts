// Config file reloads on real proxy processes, for the ways files are really given and updated:
// a bare file name (`--config proxy.yaml`, as the README shows), run from the file's directory; a
// Kubernetes ConfigMap volume, updated by swapping symlinks exactly as the kubelet does; a symlink
// to a file in another directory, edited in place (only the fallback poll sees that); a YAML
// file written in parts, each a valid document, is applied only once whole; a refused file put
// back to the config in force clears the refusal.
import t from 'tap';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, renameSync, symlinkSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startProxyProcess } from '../fixtures/mesh.ts';

const config = (version: string) => ({ version, services: [{ name: 'api', endpoints: [{ address: '127.0.0.1:1' }] }] });

/** Replace a file atomically, as editors and `kubectl cp`-style tools do. */
function replaceFile(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

t.test('--config with a bare file name reloads when the file changes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-bare-'));
  writeFileSync(join(dir, 'proxy.json'), JSON.stringify(config('b1')));
  const p = await startProxyProcess({ config: config('b1'), configFile: 'proxy.json', cwd: dir });
  t.teardown(async () => {
    await p.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  await p.waitForVersion('b1');
  replaceFile(join(dir, 'proxy.json'), JSON.stringify(config('b2')));
  await p.waitForVersion('b2');
  t.pass('replaced file applied');
  writeFileSync(join(dir, 'proxy.json'), JSON.stringify(config('b3')));
  await p.waitForVersion('b3');
  t.pass('file rewritten in place applied');
});

/**
 * The kubelet's AtomicWriter: the files live in a timestamped directory, `..data` points at it and
 * each key is a symlink through `..data`. An update writes a new timestamped directory, points a
 * new `..data_tmp` symlink at it, renames that over `..data` and removes the old directory.
 */
function configMapVolume(dir: string) {
  let n = 0;
  const publish = (text: string) => {
    const stamp = `..2026_12_06_21_00_0${n++}.000000001`;
    mkdirSync(join(dir, stamp));
    writeFileSync(join(dir, stamp, 'proxy.json'), text);
    symlinkSync(stamp, join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    if (n > 1) rmSync(join(dir, `..2026_12_06_21_00_0${n - 2}.000000001`), { recursive: true });
  };
  return {
    first(text: string) {
      publish(text);
      symlinkSync('..data/proxy.json', join(dir, 'proxy.json'));
    },
    update: publish,
  };
}

t.test('a ConfigMap volume updated by the kubelet\'s symlink swap reloads', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-cm-'));
  const volume = configMapVolume(dir);
  volume.first(JSON.stringify(config('k1')));
  const p = await startProxyProcess({ config: config('k1'), configFile: join(dir, 'proxy.json') });
  t.teardown(async () => {
    await p.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  await p.waitForVersion('k1');
  volume.update(JSON.stringify(config('k2')));
  await p.waitForVersion('k2');
  t.pass('first update applied');
  volume.update(JSON.stringify(config('k3')));
  await p.waitForVersion('k3');
  t.pass('second update applied');
});

t.test('a symlink to a file in another directory, edited in place, reloads (the fallback poll)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-link-'));
  mkdirSync(join(dir, 'etc'));
  mkdirSync(join(dir, 'data'));
  writeFileSync(join(dir, 'data', 'real.json'), JSON.stringify(config('l1')));
  symlinkSync('../data/real.json', join(dir, 'etc', 'proxy.json'));
  const p = await startProxyProcess({ config: config('l1'), configFile: join(dir, 'etc', 'proxy.json') });
  t.teardown(async () => {
    await p.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  await p.waitForVersion('l1');
  writeFileSync(join(dir, 'data', 'real.json'), JSON.stringify(config('l2')));
  await p.waitForVersion('l2');
  t.pass('edit seen through the symlink');
});

/** One service of a YAML config, as the lines a writer appends. */
const yamlService = (name: string) => `  - name: ${name}\n    endpoints: [{ address: "127.0.0.1:1" }]\n`;

t.test('a YAML file written in parts is applied only once whole, not as a valid prefix', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-parts-'));
  const file = join(dir, 'proxy.yaml');
  writeFileSync(file, `version: y1\nservices:\n${yamlService('api')}`);
  const p = await startProxyProcess({ config: config('y1'), configFile: file });
  t.teardown(async () => {
    await p.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  await p.waitForVersion('y1');
  // A writer that truncates and writes in three parts; every prefix is a valid config of version
  // y2. The pauses are shorter and longer than the proxy's quiet time (100 ms).
  writeFileSync(file, `version: y2\nservices:\n${yamlService('api')}`);
  await sleep(75);
  appendFileSync(file, yamlService('billing'));
  await sleep(150);
  appendFileSync(file, yamlService('search'));
  await p.waitForVersion('y2');
  await sleep(500);
  const body = (await (await fetch(`${p.adminUrl}/config`)).json()) as { config: { services: Array<{ name: string }> } };
  t.same(body.config.services.map((s) => s.name), ['api', 'billing', 'search'], 'the whole file is in force');
  const applied = p.stderr().split('\n').filter((l) => l.includes('"config applied"') && l.includes('"y2"'));
  t.equal(applied.length, 1, 'applied once, never a prefix');
});

t.test('a refused file put back to the config in force, byte for byte, clears the refusal', async (t) => {
  const p = await startProxyProcess({ config: config('r1') });
  t.teardown(() => p.stop());
  type Ready = { version: string; lastRefusal: unknown };
  const ready = async () => (await (await fetch(`${p.adminUrl}/ready`)).json()) as Ready;
  const until = async (pred: (r: Ready) => boolean) => {
    let r = await ready();
    for (let i = 0; i < 100 && !pred(r); i++) {
      await sleep(30);
      r = await ready();
    }
    return r;
  };
  p.writeConfig('{ not json');
  t.not((await until((r) => r.lastRefusal !== null)).lastRefusal, null, 'the broken file is refused');
  p.writeConfig(config('r1')); // the same bytes the proxy started from
  const back = await until((r) => r.lastRefusal === null);
  t.equal(back.lastRefusal, null, '/ready no longer shows the refusal');
  t.equal(back.version, 'r1');
  const cfg = (await (await fetch(`${p.adminUrl}/config`)).json()) as { lastRefusal: unknown };
  t.equal(cfg.lastRefusal, null, '/config neither');
  t.match(p.stderr(), /back to the config in force/, 'logged');
});
