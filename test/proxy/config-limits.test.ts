// Bounded reads of the proxy's --config file: a file over MAX_CONFIG_BYTES, and YAML nested deeper
// than the parser follows, are refused like any bad config (the last good stays, lastRefusal says
// why in plain words) and the proxy stays small and up. Real proxy processes.
import t from 'tap';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAX_CONFIG_BYTES } from '../../api/proxy-config.ts';
import { startProxyProcess, UNINSTRUMENTED, type ProxyProcess } from '../fixtures/mesh.ts';

const config = (version: string) => ({ version, services: [{ name: 'api', endpoints: [{ address: '127.0.0.1:1' }] }] });

type Refusal = { version: string; lastRefusal: { problems: Array<{ path: string; message: string }> } | null };
async function refusal(p: ProxyProcess): Promise<Refusal> {
  let r = (await (await fetch(`${p.adminUrl}/config`)).json()) as Refusal;
  for (let i = 0; i < 200 && r.lastRefusal === null; i++) {
    await new Promise((res) => setTimeout(res, 25));
    r = (await (await fetch(`${p.adminUrl}/config`)).json()) as Refusal;
  }
  return r;
}

t.test('a config file over 16 MiB is refused without being read whole; the last good config stays', async (t) => {
  const p = await startProxyProcess({ config: config('c1'), env: UNINSTRUMENTED });
  t.teardown(() => p.stop());
  // Valid JSON of a new version, padded past the bound: only its size is wrong.
  const big = JSON.stringify(config('c2')) + ' '.repeat(MAX_CONFIG_BYTES);
  p.writeConfig(big);
  const r = await refusal(p);
  t.equal(r.version, 'c1', 'the last good config stays in force');
  t.same(r.lastRefusal?.problems, [{ path: '/', message: `cannot read: the file is ${big.length} bytes, more than the ${MAX_CONFIG_BYTES} a proxy config may have (as on the config stream); make it smaller` }], 'and lastRefusal says why');
  t.ok(p.rssKb() / 1024 < 120, `peak RSS ${(p.rssKb() / 1024).toFixed(0)} MB: the file was not read`);
  p.writeConfig(config('c3'));
  await p.waitForVersion('c3');
  t.pass('a good file after it applies');
});

t.test('a YAML config nested too deep is refused in words, not as a stack overflow', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-deep-'));
  const file = join(dir, 'proxy.yaml');
  writeFileSync(file, 'version: y1\nservices:\n  - name: api\n    endpoints: [{ address: "127.0.0.1:1" }]\n');
  const p = await startProxyProcess({ config: {}, configFile: file });
  t.teardown(async () => {
    await p.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  await p.waitForVersion('y1');
  writeFileSync(join(dir, '.tmp'), `version: y2\nservices:\n  - name: api\n    endpoints: ${'['.repeat(3000)}${']'.repeat(3000)}\n`);
  renameSync(join(dir, '.tmp'), file);
  const r = await refusal(p);
  t.equal(r.version, 'y1');
  t.same(r.lastRefusal?.problems, [{ path: '/', message: 'does not parse: line 4: nesting deeper than 100 levels: meshlet reads at most 100 levels of mappings and sequences inside one another; flatten the document' }]);
});
