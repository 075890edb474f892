// The live view in a real terminal: `meshlet start` in tmux at 80×30 (its own tmux socket), the
// pane captured with wrapped lines joined: every line fits 80 columns, the five edges show traffic,
// mTLS, split weights and breaker state, the screen redraws in place every second, a
// `meshlet split` shows up, and Ctrl-C stops everything.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { alive, descendants, meshlet, MESHLET } from './fixtures/local-mesh.ts';

const EXAMPLES = fileURLToPath(new URL('../../examples', import.meta.url));
const SOCKET = `meshlet-live-test-${process.pid}`;
const SESSION = 'live';

const tmux = (...args: string[]) => spawnSync('tmux', ['-L', SOCKET, ...args], { encoding: 'utf8' });
const capture = () => tmux('capture-pane', '-p', '-J', '-t', SESSION).stdout;

async function until(what: string, ok: (screen: string) => boolean, ms: number): Promise<string> {
  const end = Date.now() + ms;
  let s = '';
  while (Date.now() < end) {
    s = capture();
    if (ok(s)) return s;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what} not on screen within ${ms} ms:\n${s}`);
}

const EDGES = ['load → web', 'web → api-v1', 'web → api-v2', 'api-v1 → store', 'api-v2 → store'];
const row = (screen: string, edge: string) => screen.split('\n').find((l) => l.startsWith(`${edge} `));

t.test('the live view at 80 columns in tmux', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'meshlet-live-'));
  cpSync(EXAMPLES, join(tmp, 'examples'), { recursive: true });
  const meshFile = join(tmp, 'mesh.json');
  t.teardown(() => {
    tmux('kill-server');
    rmSync(tmp, { recursive: true, force: true });
  });
  // Without the test runner's coverage hooks: the mesh is under test, not under coverage.
  const cmd = `env -u NODE_OPTIONS -u NODE_V8_COVERAGE MESHLET_MESH='${meshFile}' '${process.execPath}' '${MESHLET}' start --port-base 19000 --seconds 40 --rps 50 --config-dir '${join(tmp, 'examples')}'; echo "EXITED $?"; sleep 60`;
  t.equal(tmux('new-session', '-d', '-s', SESSION, '-x', '80', '-y', '30', cmd).status, 0, 'tmux session started');
  const panePid = Number(tmux('display', '-p', '-t', SESSION, '#{pane_pid}').stdout.trim());

  const screen = await until('five edges with traffic', (s) => EDGES.every((e) => / yes /.test(row(s, e) ?? '')), 30_000);
  const lines = screen.split('\n');
  t.same(lines.filter((l) => [...l].length > 80), [], 'no line wider than 80 columns (wrapped lines joined)');
  t.match(lines[0], /^meshlet local mesh · \d\d:\d\d:\d\d/, 'the view starts at the top of the screen');
  t.match(screen, /EDGE +RPS SUCCESS +P50ms +P99ms mTLS SPLIT BREAKER/, 'the header');
  for (const e of EDGES) {
    const m = /^\S+ → \S+ +([\d.]+) +([\d.]+)% +([\d.]+) +([\d.]+) yes +(\S+) (\S+)/.exec(row(screen, e) ?? '');
    t.ok(m && Number(m[1]) > 0 && Number(m[2]) >= 95 && m[6] === 'closed', `${e}: traffic, ≥ 95 % ok, mTLS, breaker closed (${row(screen, e)})`);
  }
  t.match(row(screen, 'web → api-v1'), / 90% closed$/, 'split weight 90 %');
  t.match(row(screen, 'web → api-v2'), / 10% closed$/, 'split weight 10 %');
  t.ok(screen.split('\n').filter((l) => l.startsWith('EDGE')).length === 1, 'one table on screen: redrawn in place, not scrolled');

  const clock = /· (\d\d:\d\d:\d\d) ·/.exec(screen)?.[1];
  const later = await until('a redraw', (s) => /· (\d\d:\d\d:\d\d) ·/.exec(s)?.[1] !== clock, 3000);
  t.ok(later.split('\n').filter((l) => l.startsWith('EDGE')).length === 1, 'redrawn within 3 s, still one table');

  t.equal((await meshlet(meshFile, 'split', 'api', 'v2=50')).code, 0, 'meshlet split api v2=50');
  const moved = await until('the new split', (s) => / 50% \S+ ?\S*$/.test(row(s, 'web → api-v1') ?? '') && / 50% /.test(row(s, 'web → api-v2') ?? ''), 8000);
  t.match(row(moved, 'web → api-v2'), / 50% /, 'the view shows 50 % within seconds');

  const pids = descendants(panePid);
  t.ok(pids.length >= 12, `${pids.length} processes under the pane`);
  tmux('send-keys', '-t', SESSION, 'C-c');
  const done = await until('the exit', (s) => /EXITED \d+/.test(s), 15_000);
  t.match(done, /stopped; nothing left running/, 'the mesh says it stopped everything', { screen: done });
  t.match(done, /EXITED 0/, 'exit 0 after Ctrl-C');
  const left = pids.filter((p) => alive(p) && p !== panePid);
  t.same(left, [], 'no process left', { left: left.map((p) => spawnSync('ps', ['-o', 'pid=,args=', '-p', String(p)], { encoding: 'utf8' }).stdout.slice(0, 200)) });
});
