// Config file reloads on real proxy processes, for the ways files are really given and updated:
// a bare file name (`--config proxy.yaml`, as the README shows), run from the file's directory.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync, renameSync } from 'node:fs';
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
