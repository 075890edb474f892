// `npm start` as a user runs it (shortened with --seconds): the mesh comes up, traffic flows
// through the proxies with the 90/10 split visible, and stopping leaves no process behind.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const START = fileURLToPath(new URL('../../demo/start.ts', import.meta.url));

t.test('the demo mesh starts, carries traffic, and stops cleanly', async (t) => {
  const child = spawn(process.execPath, [START, '--seconds', '8', '--rps', '100'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  t.equal(code, 0, `exit 0\n${out}`);
  const first = /first request through the mesh after ([\d.]+) s/.exec(out);
  t.ok(first, 'reports time to the first request');
  t.ok(Number(first?.[1]) < 10, `first request after ${first?.[1]} s`);
  const dir = /\n\s+(\/\S+meshlet-demo-[^/\s]+)\/mesh\.json/.exec(out)?.[1];
  t.ok(dir, 'prints the config path');
  // Sum the per-second lines: v1 gets most, v2 some, every request ok.
  let v1 = 0;
  let v2 = 0;
  for (const m of out.matchAll(/api-v1: (\d+) req\/s, ([\d.]+) % ok\s+api-v2: (\d+) req\/s, ([\d.-]+|-) % ok/g)) {
    v1 += Number(m[1]);
    v2 += Number(m[3]);
    t.equal(m[2], '100.0', 'v1 all ok');
  }
  t.ok(v1 + v2 > 200, `traffic flowed (${v1 + v2} requests seen by web's proxy)`);
  const share = v2 / (v1 + v2);
  t.ok(share > 0.04 && share < 0.18, `v2 share ${(share * 100).toFixed(1)} % is about 10 %`);
  t.match(out, /stopped; nothing left running/);
  // pgrep exits 1 when nothing matches: that is the good case.
  const left = spawnSync('pgrep', ['-af', dir ?? 'meshlet-demo-none'], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l && !l.includes('pgrep'));
  t.same(left, [], 'no process of the demo is left');
});
