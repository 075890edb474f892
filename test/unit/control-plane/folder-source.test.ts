// Tests for control-plane/config/folder-source.ts against a real temp directory (and the debounce with a manual clock).
// Every wait is a poll with a deadline; every temp directory is removed and every source closed in teardown.
import { mkdir, mkdtemp, rename, rm, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { resourceKey, type Resource } from '../../../api/resources.ts';
import { ManualClock } from '../../../api/runtime.ts';
import { applyFile, Debouncer, FolderSource, type FolderSnapshot, type FolderSourceOptions, type Timers } from '../../../control-plane/config/folder-source.ts';

const V = 'meshlet.io/v1alpha1';

/** A TrafficSplit `name` → web-v1 `w1`, web-v2 `100 - w1`. */
const split = (name: string, w1: number, namespace = 'default') =>
  `apiVersion: ${V}\nkind: TrafficSplit\nmetadata:\n  name: ${name}\n  namespace: ${namespace}\nspec:\n  service: web\n  backends:\n    - service: web-v1\n      weight: ${w1}\n    - service: web-v2\n      weight: ${100 - w1}\n`;
const meshService = (name: string, address = '10.0.0.1:8080') =>
  `apiVersion: ${V}\nkind: MeshService\nmetadata:\n  name: ${name}\nspec:\n  endpoints:\n    - address: "${address}"\n`;
const BROKEN = `apiVersion: ${V}\nkind: TrafficSplit\nmetadata:\n  name: a\n   oops: : [\n`;

const keys = (s: FolderSnapshot) => s.resources.map(resourceKey);
const find = (s: FolderSnapshot, key: string): Resource | undefined => s.resources.find((r) => resourceKey(r) === key);
/** web-v1's weight in TrafficSplit/default/<name> (undefined: not in force). */
const weight = (s: FolderSnapshot, name: string, namespace = 'default'): number | undefined => {
  const r = find(s, `TrafficSplit/${namespace}/${name}`);
  return r?.kind === 'TrafficSplit' ? r.spec.backends[0]?.weight : undefined;
};

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function waitFor<T>(what: string, probe: () => T | undefined | false, deadlineMs = 3000): Promise<T> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > until) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

interface Folder {
  dir: string;
  src: FolderSource;
  first: FolderSnapshot;
  /** Every snapshot onChange received, in order. */
  changes: FolderSnapshot[];
  write(rel: string, text: string): Promise<void>;
  /** Waits for a snapshot (emitted after `since` changes) that satisfies `ok`. */
  next(what: string, ok: (s: FolderSnapshot) => boolean, since: number, deadlineMs?: number): Promise<FolderSnapshot>;
}

async function folder(t: Test, files: Record<string, string>, opts: Partial<FolderSourceOptions> = {}): Promise<Folder> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'meshlet-folder-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const write = async (rel: string, text: string) => {
    await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await writeFile(path.join(dir, rel), text);
  };
  for (const [rel, text] of Object.entries(files)) await write(rel, text);
  const changes: FolderSnapshot[] = [];
  const src = new FolderSource({ dir, onChange: (s) => changes.push(s), ...opts });
  t.teardown(() => src.close());
  const first = await src.start();
  const next = (what: string, ok: (s: FolderSnapshot) => boolean, since: number, deadlineMs?: number) =>
    waitFor(what, () => changes.slice(since).find(ok), deadlineMs);
  return { dir, src, first, changes, write, next };
}

t.test('initial load: every YAML/JSON file in the tree, nothing else; start() resolves revision 1 without onChange', async (t) => {
  const f = await folder(t, {
    'splits.yaml': `${split('a', 90)}---\n${split('b', 50, 'shop')}`,
    'services/web.yml': meshService('web'),
    'services/deep/more/api.json': JSON.stringify({ apiVersion: V, kind: 'MeshService', metadata: { name: 'api' }, spec: { endpoints: [] } }),
    'README.md': '# not config',
    'notes.txt': meshService('ignored'),
    '.hidden.yaml': meshService('hidden'),
    '.git/config.yaml': meshService('git'),
    'empty.yaml': '# only a comment\n',
  });
  t.same(keys(f.first), ['MeshService/default/api', 'MeshService/default/web', 'TrafficSplit/default/a', 'TrafficSplit/shop/b']);
  t.same(f.first.problems, []);
  t.equal(f.first.revision, 1);
  t.equal(f.src.current(), f.first);
  t.ok(Object.isFrozen(f.first) && Object.isFrozen(f.first.resources));
  await f.src.sync();
  t.same(f.changes, [], 'no onChange for the initial read, nor for a pass that finds nothing new');
});

t.test('start() rejects when the folder is missing or not a directory', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'meshlet-folder-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await t.rejects(new FolderSource({ dir: path.join(dir, 'nope') }).start(), /ENOENT/);
  await writeFile(path.join(dir, 'file.yaml'), '');
  await t.rejects(new FolderSource({ dir: path.join(dir, 'file.yaml') }).start(), /not a directory/);
});

t.test('editing a file applies it within a second', async (t) => {
  const f = await folder(t, { 'a.yaml': split('a', 90), 'web.yaml': meshService('web') });
  const t0 = Date.now();
  await f.write('a.yaml', split('a', 50));
  const s = await f.next('a at 50', (s) => weight(s, 'a') === 50, 0, 1000);
  t.ok(Date.now() - t0 < 1000, `applied after ${Date.now() - t0} ms`);
  t.equal(s.revision, 2);
  t.equal(f.changes.length, 1, 'one save, one change');
  t.same(keys(s), ['MeshService/default/web', 'TrafficSplit/default/a']);
  t.equal(f.src.current(), s);
});

t.test('a broken YAML file is reported with file and line, keeps its last good objects; other files still apply', async (t) => {
  const f = await folder(t, { 'a.yaml': split('a', 90), 'b.yaml': split('b', 90) });
  await f.write('a.yaml', BROKEN);
  await f.write('b.yaml', split('b', 20));
  await f.write('new.yaml', `kind: [\n`);
  const s = await f.next('problems for a.yaml and new.yaml, b at 20', (s) => weight(s, 'b') === 20 && s.problems.some((p) => p.file === 'a.yaml') && s.problems.some((p) => p.file === 'new.yaml'), 0);
  t.equal(weight(s, 'a'), 90, 'a keeps its last good version');
  const pa = s.problems.filter((p) => p.file === 'a.yaml');
  t.ok(pa.length > 0);
  for (const p of pa) {
    t.match(p, { file: 'a.yaml', path: '/', line: Number, message: /^YAML: / });
    t.ok(p.line !== undefined && p.line >= 4 && p.line <= 6, `line ${p.line} points at the breakage`);
  }
  t.ok(pa.some((p) => /stays in force/.test(p.message)), 'the report says the last good config is kept');
  t.match(s.problems.find((p) => p.file === 'new.yaml'), { path: '/', line: Number, message: /^YAML: / }, 'a new broken file: reported, contributes nothing');
  t.same(keys(s), ['TrafficSplit/default/a', 'TrafficSplit/default/b']);

  const n = f.changes.length;
  await f.write('a.yaml', split('a', 70));
  await rm(path.join(f.dir, 'new.yaml'));
  const fixed = await f.next('a fixed at 70', (s) => weight(s, 'a') === 70 && s.problems.length === 0, n);
  t.same(keys(fixed), ['TrafficSplit/default/a', 'TrafficSplit/default/b']);
});

const threeDocs = (bWeight: number) => `${split('a', 90)}---\n${split('b', bWeight)}---\n${meshService('web')}`;

t.test('an invalid document among valid ones: reported with object, field and line; the others apply', async (t) => {
  const f = await folder(t, { 'mesh.yaml': threeDocs(-5) });
  t.same(keys(f.first), ['MeshService/default/web', 'TrafficSplit/default/a'], 'b, never valid, is not applied');
  t.equal(f.first.problems.length, 1);
  t.match(f.first.problems[0], { file: 'mesh.yaml', object: 'TrafficSplit/default/b', path: '/spec/backends/0/weight', line: 23 });
  t.notMatch(f.first.problems[0]?.message, /stays in force/);

  await f.write('mesh.yaml', threeDocs(40));
  const good = await f.next('b valid', (s) => weight(s, 'b') === 40 && s.problems.length === 0, 0);
  t.equal(keys(good).length, 3);

  const n = f.changes.length;
  await f.write('mesh.yaml', threeDocs(-1).replace('address: "10.0.0.1:8080"', 'address: "10.0.0.9:8080"'));
  const bad = await f.next('b invalid again, web changed', (s) => s.problems.length === 1 && JSON.stringify(find(s, 'MeshService/default/web')).includes('10.0.0.9'), n);
  t.equal(weight(bad, 'b'), 40, 'the last good b stays in force');
  t.match(bad.problems[0], { object: 'TrafficSplit/default/b', path: '/spec/backends/0/weight', message: /last good version stays in force/ });
});

t.test('deleting a file removes its resources', async (t) => {
  const f = await folder(t, { 'a.yaml': split('a', 90), 'sub/web.yaml': meshService('web') });
  await rm(path.join(f.dir, 'a.yaml'));
  const s = await f.next('a gone', (s) => weight(s, 'a') === undefined, 0);
  t.same(keys(s), ['MeshService/default/web']);
  await rm(path.join(f.dir, 'sub'), { recursive: true });
  const empty = await f.next('empty', (s) => s.resources.length === 0, 0);
  t.same(empty.problems, []);
});

t.test('a broken file that is then deleted takes its last good objects with it', async (t) => {
  const f = await folder(t, { 'a.yaml': split('a', 90), 'b.yaml': split('b', 90) });
  await f.write('a.yaml', BROKEN);
  await f.next('broken', (s) => s.problems.length > 0, 0);
  await unlink(path.join(f.dir, 'a.yaml'));
  const s = await f.next('a gone, no problems', (s) => s.problems.length === 0, 0);
  t.same(keys(s), ['TrafficSplit/default/b']);
});

t.test('rename-based (atomic) saves apply: temp file + rename, and backup-then-write', async (t) => {
  const f = await folder(t, { 'a.yaml': split('a', 90), 'b.yaml': split('b', 90) });
  await writeFile(path.join(f.dir, '.a.yaml.swp'), split('a', 10));
  await rename(path.join(f.dir, '.a.yaml.swp'), path.join(f.dir, 'a.yaml'));
  await writeFile(path.join(f.dir, 'a.yaml.tmp.123'), split('a', 11));
  await rename(path.join(f.dir, 'a.yaml.tmp.123'), path.join(f.dir, 'a.yaml'));
  await f.next('a at 11', (s) => weight(s, 'a') === 11, 0);

  const n = f.changes.length;
  await rename(path.join(f.dir, 'b.yaml'), path.join(f.dir, 'b.yaml~')); // vim: backup, then write anew
  await writeFile(path.join(f.dir, 'b.yaml'), split('b', 30));
  await unlink(path.join(f.dir, 'b.yaml~'));
  const s = await f.next('b at 30', (s) => weight(s, 'b') === 30, n);
  t.same(s.problems, []);
  t.same(keys(s), ['TrafficSplit/default/a', 'TrafficSplit/default/b']);
});

t.test('a ConfigMap-style volume (files are symlinks into a swapped ..data) follows the swap', async (t) => {
  const f = await folder(t, {});
  await mkdir(path.join(f.dir, '..v1'));
  await writeFile(path.join(f.dir, '..v1', 'a.yaml'), split('a', 90));
  await symlink('..v1', path.join(f.dir, '..data'));
  await symlink('..data/a.yaml', path.join(f.dir, 'a.yaml'));
  await f.next('a at 90', (s) => weight(s, 'a') === 90, 0);
  await mkdir(path.join(f.dir, '..v2'));
  await writeFile(path.join(f.dir, '..v2', 'a.yaml'), split('a', 60));
  await symlink('..v2', path.join(f.dir, '..data_tmp'));
  await rename(path.join(f.dir, '..data_tmp'), path.join(f.dir, '..data'));
  await rm(path.join(f.dir, '..v1'), { recursive: true });
  const s = await f.next('a at 60', (s) => weight(s, 'a') === 60, 0);
  t.same(s.problems, []);
});

t.test('no-op rewrites, touches, comment and key-order edits emit nothing', async (t) => {
  const text = split('a', 90);
  const f = await folder(t, { 'a.yaml': text, 'b.yaml': meshService('web') });
  await f.write('a.yaml', text);
  const later = new Date(Date.now() + 5000);
  await utimes(path.join(f.dir, 'a.yaml'), later, later);
  await f.write('b.yaml', `# the web service\nkind: MeshService\napiVersion: ${V}\nspec:\n  endpoints: [{ address: "10.0.0.1:8080" }]\nmetadata: { name: web }\n`);
  await writeFile(path.join(f.dir, '.a.yaml.new'), text);
  await rename(path.join(f.dir, '.a.yaml.new'), path.join(f.dir, 'a.yaml')); // same content, new inode
  await sleep(700); // debounce (100 ms, at most 500) plus slack: a change would have been emitted by now
  t.same(f.changes, [], 'nothing emitted');
  t.equal((await f.src.sync()).revision, 1);
  await f.write('a.yaml', split('a', 80));
  const s = await f.next('a at 80', (s) => weight(s, 'a') === 80, 0);
  t.equal(s.revision, 2, 'the next real change is the very next revision');
  t.equal(f.changes.length, 1);
});

t.test('duplicates: reported on the later file; the first file in path order wins', async (t) => {
  const f = await folder(t, {
    'a.yaml': split('x', 90),
    'b.yaml': `${split('x', 10)}---\n${split('y', 50)}`,
    'c.yaml': `${split('z', 1)}---\n${split('z', 2)}`,
  });
  t.equal(weight(f.first, 'x'), 90, 'a.yaml wins');
  t.equal(weight(f.first, 'y'), 50, "the duplicate's file still applies its other objects");
  t.equal(weight(f.first, 'z'), 1, 'within a file the first document wins');
  t.equal(f.first.problems.length, 2);
  t.match(f.first.problems[0], { file: 'b.yaml', object: 'TrafficSplit/default/x', path: '/metadata/name', message: /also defined in a\.yaml/ });
  t.match(f.first.problems[1], { file: 'c.yaml', object: 'TrafficSplit/default/z', message: /earlier document of this file/ });

  await rm(path.join(f.dir, 'a.yaml'));
  const s = await f.next('b.yaml x in force', (s) => weight(s, 'x') === 10, 0);
  t.same(
    s.problems.map((p) => p.file),
    ['c.yaml'],
  );
});

t.test('duplicates: a copy saved beside the file in force does not take its object over', async (t) => {
  const f = await folder(t, { 'api.yaml': split('x', 90) });
  t.equal(weight(f.first, 'x'), 90);
  // A stale backup that sorts first ('-' before '.').
  await f.write('api-old.yaml', split('x', 10));
  const s = await f.next('the duplicate reported', (s) => s.problems.length > 0, 0);
  t.equal(weight(s, 'x'), 90, 'api.yaml keeps x');
  t.match(s.problems, [{ file: 'api-old.yaml', object: 'TrafficSplit/default/x', message: /also defined in api\.yaml, which wins/ }], 'the problem is on the newcomer');
  await f.write('api.yaml', split('x', 80));
  t.equal(weight(await f.next('the edit of api.yaml applies', (s) => weight(s, 'x') === 80, f.changes.length), 'x'), 80, 'and edits to it still apply');
});

t.test('a directory created after start is watched; its files apply', async (t) => {
  const f = await folder(t, { 'a.yaml': split('a', 90) });
  await f.write('team/one/web.yaml', meshService('web'));
  await f.next('web', (s) => find(s, 'MeshService/default/web') !== undefined, 0);
  const n = f.changes.length;
  await f.write('team/one/web.yaml', meshService('web', '10.1.1.1:80'));
  const s = await f.next('web moved', (s) => JSON.stringify(find(s, 'MeshService/default/web')).includes('10.1.1.1'), n);
  t.same(s.problems, []);
});

t.test('a burst of saves applies while it lasts (bounded debounce); a file rewritten nonstop applies once it holds still', async (t) => {
  const f = await folder(t, { 'a.yaml': split('a', 0) });
  const started = Date.now();
  let n = 0;
  while (Date.now() - started < 1300) {
    n += 1;
    await f.write(`s${n}.yaml`, split(`s${n}`, 50));
    await sleep(20);
  }
  const duringBurst = f.changes.length;
  t.ok(duringBurst >= 1, `${duringBurst} change(s) applied during a 1.3 s burst of new files every 20 ms`);
  t.ok(duringBurst <= 14, 'at most one pass per 100 ms');
  await f.next(`s${n} in force`, (s) => weight(s, `s${n}`) === 50, 0);

  // One file saved every 20 ms: no two reads 100 ms apart agree until the saves stop.
  const m = f.changes.length;
  let w = 0;
  while (Date.now() - started < 2100) {
    w += 1;
    await f.write('a.yaml', split('a', w));
    await sleep(20);
  }
  await f.next(`a at ${w}`, (s) => weight(s, 'a') === w, m);
  await sleep(300);
  t.same(
    f.changes.slice(m).map((s) => weight(s, 'a')),
    [w],
    'only its end state applied',
  );
});

t.test('a file emptied in place and left empty applies (its objects go) once a second read agrees', async (t) => {
  const f = await folder(t, { 'a.yaml': split('a', 90), 'b.yaml': split('b', 90) });
  const t0 = Date.now();
  await f.write('a.yaml', '');
  const s = await f.next('a gone', (s) => weight(s, 'a') === undefined, 0);
  t.ok(Date.now() - t0 >= 200, `applied after ${Date.now() - t0} ms: 100 ms quiet, then two reads 100 ms apart`);
  t.same(keys(s), ['TrafficSplit/default/b']);
  t.same(s.problems, []);
  t.equal(f.changes.length, 1);
});

t.test('the folder itself vanishing keeps everything in force and says so; its return is picked up', async (t) => {
  const f = await folder(t, { 'a.yaml': split('a', 90) }, { resyncMs: 100 });
  const moved = `${f.dir}-moved`;
  t.teardown(() => rm(moved, { recursive: true, force: true }));
  await rename(f.dir, moved);
  const gone = await f.next('root problem', (s) => s.problems.some((p) => p.file === '.'), 0);
  t.equal(weight(gone, 'a'), 90);
  t.match(gone.problems, [{ file: '.', path: '/', message: /ENOENT.*last good config stays in force/ }]);
  await rename(moved, f.dir);
  const back = await f.next('back', (s) => s.problems.length === 0, 0);
  t.equal(weight(back, 'a'), 90);
  const n = f.changes.length;
  await f.write('a.yaml', split('a', 5));
  await f.next('a at 5', (s) => weight(s, 'a') === 5, n);
});

t.test('an oversized file is refused and keeps its last good objects; a throwing onChange is logged, not fatal', async (t) => {
  const logged: string[] = [];
  const dir = await mkdtemp(path.join(os.tmpdir(), 'meshlet-folder-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(path.join(dir, 'a.yaml'), split('a', 90));
  let calls = 0;
  const src = new FolderSource({
    dir,
    maxFileBytes: 1000,
    onChange: () => {
      calls++;
      throw new Error('consumer bug');
    },
    log: (_level, msg, fields) => logged.push(`${msg} ${JSON.stringify(fields)}`),
  });
  t.teardown(() => src.close());
  await src.start();
  await writeFile(path.join(dir, 'a.yaml'), `${split('a', 10)}${'# padding\n'.repeat(200)}`);
  const s = await waitFor('size problem', () => src.current().problems.find((p) => p.file === 'a.yaml'));
  t.match(s, { path: '/', message: /more than the 1000 allowed; its last good TrafficSplit\/default\/a stays in force/ });
  t.equal(weight(src.current(), 'a'), 90);
  t.equal(calls, 1);
  t.match(logged, [/onChange threw.*consumer bug/]);
  await writeFile(path.join(dir, 'a.yaml'), split('a', 10));
  await waitFor('a at 10', () => weight(src.current(), 'a') === 10);
  t.equal(calls, 2, 'still running after the throw');
});

t.test('close() stops watching: later saves emit nothing', async (t) => {
  const f = await folder(t, { 'a.yaml': split('a', 90) });
  await f.src.close();
  await f.write('a.yaml', split('a', 10));
  await sleep(300);
  t.same(f.changes, []);
  t.equal(weight(f.src.current(), 'a'), 90);
});

t.test('applyFile: what a file contributes given its last good objects', async (t) => {
  const good = applyFile('f.yaml', `${split('a', 90)}---\n${split('b', 90)}`, []);
  t.same(good.problems, []);
  t.equal(good.applied.length, 2);
  // b invalid: only b's last good is kept; a is the new one.
  const oneBad = applyFile('f.yaml', `${split('a', 80)}---\n${split('b', -1)}`, good.applied);
  t.same(oneBad.applied.map((r) => [resourceKey(r), r.kind === 'TrafficSplit' ? r.spec.backends[0]?.weight : 0]), [['TrafficSplit/default/a', 80], ['TrafficSplit/default/b', 90]]);
  // An object removed from the file while another is invalid (and named): removal applies.
  const removed = applyFile('f.yaml', split('b', -1), good.applied);
  t.same(removed.applied.map(resourceKey), ['TrafficSplit/default/b']);
  // A syntax error naming no object keeps every last good object the valid documents do not give.
  const anonymous = applyFile('f.yaml', `${split('a', 70)}---\n: : [\n`, good.applied);
  t.same(anonymous.applied.map(resourceKey), ['TrafficSplit/default/a', 'TrafficSplit/default/b']);
  t.match(anonymous.problems[0]?.message, /last good TrafficSplit\/default\/b stays in force/);
  // Emptying the file is a valid state: nothing.
  t.same(applyFile('f.yaml', '', good.applied), { applied: [], problems: [] });
});

/** Timers driven by a ManualClock. */
class FakeTimers implements Timers {
  readonly clock = new ManualClock(0);
  #next = 1;
  #queue = new Map<number, { at: number; fn: () => void }>();
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.#next++;
    this.#queue.set(id, { at: this.clock.now() + ms, fn });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.#queue.delete(handle as number);
  }
  /** Moves the clock to `t`, firing due timers in time order. */
  advanceTo(t: number): void {
    for (;;) {
      const due = [...this.#queue].filter(([, v]) => v.at <= t).toSorted((a, b) => a[1].at - b[1].at || a[0] - b[0])[0];
      if (!due) break;
      this.#queue.delete(due[0]);
      this.clock.advance(due[1].at - this.clock.now());
      due[1].fn();
    }
    this.clock.advance(t - this.clock.now());
  }
}

t.test('Debouncer: 100 ms after the last trigger, never more than 500 ms after the first', async (t) => {
  const timers = new FakeTimers();
  const fires: number[] = [];
  const d = new Debouncer(() => fires.push(timers.clock.now()), { quietMs: 100, maxWaitMs: 500, clock: timers.clock, timers });
  d.trigger();
  timers.advanceTo(99);
  t.same(fires, []);
  timers.advanceTo(100);
  t.same(fires, [100], 'a single save: 100 ms later');

  fires.length = 0;
  const triggers: number[] = [];
  for (let at = 1000; at <= 3000; at += 30) {
    timers.advanceTo(at);
    d.trigger();
    triggers.push(at);
  }
  timers.advanceTo(4000);
  t.ok(fires.length >= 4, `a 2 s burst fired ${fires.length} times while it lasted`);
  for (let i = 1; i < fires.length; i++) t.ok(fires[i]! - fires[i - 1]! >= 100, 'at most one fire per 100 ms');
  for (const at of triggers) {
    const served = fires.find((f) => f >= at);
    t.ok(served !== undefined && served - at <= 500, `trigger at ${at} served by ${served}`);
  }
  const last = triggers.at(-1)!;
  const end = fires.at(-1)!;
  t.ok(end >= last && end <= last + 100, `the last trigger (${last}) is served within 100 ms (${end})`);
  t.notOk(d.pending);

  d.trigger();
  d.close();
  timers.advanceTo(5000);
  t.equal(fires.at(-1), end, 'nothing fires after close');
  t.throws(() => new Debouncer(() => {}, { quietMs: 600, maxWaitMs: 500, clock: timers.clock, timers }), RangeError);
});
