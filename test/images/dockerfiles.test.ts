// Dockerfile.proxy and Dockerfile.cp without a Docker engine: each is parsed and held to what
// the images promise. Every COPY source exists and survives .dockerignore; COPY --from names an
// earlier stage; build stages use Node 24, the image that runs is distroless Node 24 with no RUN
// (no shell there); production dependencies only; the final USER is numeric and not root (the
// proxy's is the UID the interception rules exclude); EXPOSE and USER match manifests/; the
// ENTRYPOINT is exec-form node with its script inside the image, and everything that script
// imports is in the image too, with only production dependencies.
//
// Each image is then run the same way outside a container: its final stage's files laid out in a
// temp dir (COPY by COPY), the ENTRYPOINT's exact argv with this machine's Node 24 for
// /nodejs/bin/node, the image's environment (for the control plane, plus the Deployment's) and no
// other, as the image's USER when the test runs as root. The proxy gets a config file and loopback
// listeners; the control plane a CA file made by `meshlet identity init --ca-file` and loopback
// listeners. /ready must answer 200, and SIGTERM must end each with 0.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { parse } from 'yaml';
import { freePort } from '../fixtures/mesh.ts';
import { PROXY_MAIN, PROXY_NODE_FLAGS } from '../../proxy/launch.ts';
import { ENTRY_POINTS, LAZY_PACKAGES } from '../../scripts/build.ts';

const ROOT = path.resolve(new URL('../..', import.meta.url).pathname);
const repo = (p: string): string => path.join(ROOT, p);

// ---- a small Dockerfile parser ----------------------------------------------------------------

interface Instr {
  op: string;
  args: string;
  line: number;
}
interface Stage {
  base: string;
  name: string;
  workdir: string;
  instrs: Instr[];
}

function parseDockerfile(file: string): Stage[] {
  const stages: Stage[] = [];
  const lines = readFileSync(repo(file), 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let text = lines[i]!;
    if (/^\s*(#|$)/.test(text)) continue;
    while (text.endsWith('\\') && i + 1 < lines.length) text = `${text.slice(0, -1)} ${lines[++i]!.trim()}`;
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(text);
    if (!m) throw new Error(`${file}:${start + 1}: cannot parse "${text}"`);
    const instr = { op: m[1]!.toUpperCase(), args: m[2]!.trim(), line: start + 1 };
    if (instr.op === 'FROM') {
      const [base, as, name] = instr.args.split(/\s+/);
      stages.push({ base: base!, name: as?.toUpperCase() === 'AS' ? name! : String(stages.length), workdir: '/', instrs: [] });
      continue;
    }
    const stage = stages.at(-1);
    if (!stage) throw new Error(`${file}:${start + 1}: ${instr.op} before FROM`);
    if (instr.op === 'WORKDIR') stage.workdir = path.posix.resolve(stage.workdir, instr.args);
    stage.instrs.push(instr);
  }
  return stages;
}

interface Copy {
  from?: string;
  sources: string[];
  /** Absolute, resolved against the stage's WORKDIR. */
  dest: string;
  /** The destination is a directory (written with a trailing slash, or several sources). */
  destIsDir: boolean;
  line: number;
}
function copies(stage: Stage): Copy[] {
  return stage.instrs
    .filter((i) => i.op === 'COPY')
    .map((i) => {
      const words = i.args.split(/\s+/);
      const flags = words.filter((w) => w.startsWith('--'));
      const paths = words.filter((w) => !w.startsWith('--'));
      const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length);
      const dest = paths.at(-1)!;
      return { ...(from ? { from } : {}), sources: paths.slice(0, -1), dest: path.posix.resolve(stage.workdir, dest), destIsDir: dest.endsWith('/') || paths.length > 2, line: i.line };
    });
}

const only = (stage: Stage, op: string): Instr[] => stage.instrs.filter((i) => i.op === op);
const last = (stage: Stage, op: string): Instr | undefined => only(stage, op).at(-1);
const execForm = (instr: Instr | undefined): string[] => JSON.parse(instr?.args ?? 'null') as string[];

// ---- .dockerignore (Docker's rules: in order, last match wins, a pattern also matches a parent) -

/**
 * A pattern as Docker's patternmatcher reads it: Go's filepath.Match (`*` and `?` stop at `/`
 * but match dotfiles, `[...]` classes) plus `**` for any number of directories.
 */
function dockerPattern(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i]!;
    if (ch === '*' && pattern[i + 1] === '*') {
      i++;
      if (pattern[i + 1] === '/') {
        i++;
        re += '(?:.*/)?';
      } else re += '.*';
    } else if (ch === '*') re += '[^/]*';
    else if (ch === '?') re += '[^/]';
    else if (ch === '[') {
      const end = pattern.indexOf(']', i);
      re += pattern.slice(i, end + 1).replace('[^', '[^/').replace('[!', '[^/');
      i = end;
    } else re += ch.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

const IGNORE = readFileSync(repo('.dockerignore'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'))
  .map((raw) => ({ negate: raw.startsWith('!'), re: dockerPattern(raw.replace(/^!/, '').replace(/^\/+|\/+$/g, '')) }));

/** Docker's rule: patterns in order, the last that matches the path or a parent of it wins. */
function ignored(rel: string): boolean {
  const parents = rel.split('/').map((_, i, parts) => parts.slice(0, i + 1).join('/'));
  let out = false;
  for (const { negate, re } of IGNORE) if (parents.some((p) => re.test(p))) out = !negate;
  return out;
}

// ---- the repo's own facts ----------------------------------------------------------------------

const CONFIG = new Map(
  readFileSync(repo('manifests/config.env'), 'utf8')
    .split('\n')
    .map((l) => /^([A-Z0-9_]+)=(.*)$/.exec(l.trim()))
    .filter((m) => m !== null)
    .map((m) => [m[1]!, m[2]!]),
);
const port = (key: string): string => CONFIG.get(key)!.replace(/^.*:/, '');
const PKG = JSON.parse(readFileSync(repo('package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };

interface Container {
  args?: string[];
  env: Array<{ name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }>;
  resources: { limits: { memory: string } };
}
const DEPLOYMENT = parse(readFileSync(repo('manifests/control-plane/deployment.yaml'), 'utf8')) as {
  spec: { template: { spec: { securityContext: { runAsUser: number; runAsGroup: number }; containers: Container[] } } };
};

/** Files reachable from `entry` by relative imports, and the packages imported by name. */
function importClosure(entry: string): { files: string[]; packages: Set<string>; missing: string[] } {
  const files: string[] = [];
  const packages = new Set<string>();
  const missing: string[] = [];
  const queue = [entry];
  const seen = new Set<string>();
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    if (!existsSync(file)) {
      missing.push(file);
      continue;
    }
    files.push(file);
    const src = readFileSync(file, 'utf8');
    // Static imports and re-exports (`import type` is erased, so skipped) and dynamic import('x').
    for (const m of src.matchAll(/\b(?:import|export)\s+(type\s+)?(?:[\w*{}\s,$]*?\s*from\s*)?['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g)) {
      if (m[1]) continue;
      const spec = (m[2] ?? m[3])!;
      if (spec.startsWith('.')) queue.push(path.resolve(path.dirname(file), spec));
      else if (!spec.startsWith('node:')) packages.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
    }
  }
  return { files, packages, missing };
}

// ---- checks both images share ------------------------------------------------------------------

const IMAGES = [
  { file: 'Dockerfile.proxy', user: `${CONFIG.get('MESHLET_PROXY_UID')}:${CONFIG.get('MESHLET_PROXY_UID')}`, expose: ['MESHLET_PROXY_OUTBOUND_PORT', 'MESHLET_PROXY_INBOUND_PORT', 'MESHLET_PROXY_ADMIN_PORT'].map(port) },
  {
    file: 'Dockerfile.cp',
    user: `${DEPLOYMENT.spec.template.spec.securityContext.runAsUser}:${DEPLOYMENT.spec.template.spec.securityContext.runAsGroup}`,
    expose: ['MESHLET_CONFIG_LISTEN', 'MESHLET_WEBHOOK_LISTEN', 'MESHLET_ADMIN_LISTEN'].map(port),
  },
];

for (const image of IMAGES) {
  t.test(image.file, async (t) => {
    const stages = parseDockerfile(image.file);
    const final = stages.at(-1)!;
    t.ok(stages.length >= 2, 'multi-stage');
    for (const s of stages.slice(0, -1)) t.match(s.base, /^node:24-bookworm-slim(@sha256:[0-9a-f]{64})?$/, `stage ${s.name}: Node 24 LTS slim`);
    t.match(final.base, /^gcr\.io\/distroless\/nodejs24-debian12(:[\w.-]+)?(@sha256:[0-9a-f]{64})?$/, 'runs on distroless Node 24');
    t.same(only(final, 'RUN'), [], 'the final stage runs nothing (distroless has no shell)');

    for (const [i, s] of stages.entries()) {
      for (const c of copies(s)) {
        if (c.from !== undefined) {
          const src = stages.slice(0, i).find((x) => x.name === c.from);
          t.ok(src, `line ${c.line}: --from=${c.from} is an earlier stage`);
          for (const p of c.sources) t.ok(src && p.startsWith(`${src.workdir}/`), `line ${c.line}: ${p} is under ${c.from}'s WORKDIR`);
          continue;
        }
        for (const p of c.sources) {
          t.ok(existsSync(repo(p)), `line ${c.line}: COPY source ${p} exists`);
          t.notOk(ignored(p.replace(/\/$/, '')), `line ${c.line}: ${p} is in the build context (.dockerignore)`);
        }
      }
    }

    // node_modules in the image come from a stage that installed production dependencies only.
    const nm = copies(final).find((c) => c.dest.endsWith('/node_modules'));
    const depsStage = stages.find((s) => s.name === nm?.from);
    t.ok(depsStage, 'node_modules are copied from a stage');
    t.ok(depsStage && only(depsStage, 'RUN').some((r) => /\bnpm ci\b.*--omit=dev/.test(r.args)), 'that stage runs npm ci --omit=dev');
    t.ok(copies(final).some((c) => c.sources.includes('package.json')), 'package.json ("type": "module") is in the image');

    const user = last(final, 'USER')?.args;
    t.equal(user, image.user, 'USER uid:gid, numeric (the kubelet can check runAsNonRoot), as manifests/ say');
    t.not(user?.split(':')[0], '0', 'not root');
    t.same(last(final, 'EXPOSE')?.args.split(/\s+/), image.expose, 'EXPOSE: the ports in manifests/config.env');
    t.equal(last(final, 'CMD'), undefined, 'no CMD: arguments come from the Pod spec');
    const entry = execForm(last(final, 'ENTRYPOINT'));
    t.equal(entry[0], '/nodejs/bin/node', "exec-form ENTRYPOINT: distroless' node, no shell");
  });
}

t.test('npm ci --ignore-scripts loses nothing: the only install scripts are known to be unneeded', async (t) => {
  const lock = JSON.parse(readFileSync(repo('package-lock.json'), 'utf8')) as { packages: Record<string, { hasInstallScript?: boolean }> };
  const withScripts = Object.entries(lock.packages).filter(([, p]) => p.hasInstallScript).map(([name]) => name);
  // protobufjs (via @opentelemetry): a postinstall that only warns about versions; node (dev): the
  // Node binary for npm scripts, which the images have from their base.
  t.same(withScripts.toSorted(), ['node_modules/node', 'node_modules/protobufjs'], 'a new package with an install script needs a look before the images leave its script out');
});

t.test('.dockerignore keeps the host out of the build context', async (t) => {
  for (const p of ['node_modules', 'node_modules/undici/index.js', 'dist/proxy/main.js', '.git/HEAD', 'test/kube/install.test.ts', 'bench/run.ts', 'manifests/config.env', 'README.md', 'proxy/policy/split.test.ts', 'scripts/test.sh', 'tmp/x']) {
    t.ok(ignored(p), `${p} is excluded`);
  }
  for (const p of ['package.json', 'package-lock.json', 'tsconfig.json', 'scripts/build.ts', 'api/resources.ts', 'proxy/main.ts', 'proxy/policy/split.ts', 'control-plane/main.ts', 'control-plane/store/secret-store.ts']) {
    t.notOk(ignored(p), `${p} is included`);
  }
});

// ---- Dockerfile.proxy: the build stage and a real run ------------------------------------------

const proxyStages = parseDockerfile('Dockerfile.proxy');
const proxyFinal = proxyStages.at(-1)!;
const proxyEntry = execForm(last(proxyFinal, 'ENTRYPOINT'));

t.test('Dockerfile.proxy: the entrypoint is proxy/launch.ts, and the build stage has what the build needs', async (t) => {
  t.same(proxyEntry.slice(1), [...PROXY_NODE_FLAGS, path.relative(ROOT, PROXY_MAIN)], 'node + PROXY_NODE_FLAGS + PROXY_MAIN, as every launcher runs the proxy');
  t.notOk(proxyEntry.some((a) => a.startsWith('--max-old-space-size')), 'no heap cap on the command line: it would override the one the injector derives from the memory limit (NODE_OPTIONS)');
  const build = proxyStages.find((s) => copies(proxyFinal).some((c) => c.from === s.name && c.dest.endsWith('/dist')));
  t.ok(build, 'dist/ comes from a build stage');
  if (!build) return;
  t.ok(only(build, 'RUN').some((r) => r.args === 'node scripts/build.ts'), 'which runs scripts/build.ts');
  const copied = copies(build).filter((c) => !c.from).flatMap((c) => c.sources.map((s) => s.replace(/\/$/, '')));
  // The folders the bundle's own sources come from: every relative import of its entry points.
  const sources = Object.values(ENTRY_POINTS).flatMap((e) => importClosure(repo(e)).files);
  const folders = [...new Set(sources.map((f) => path.relative(ROOT, f).split(path.sep)[0]!))];
  t.same(folders.toSorted(), ['api', 'proxy'], 'the proxy bundles sources from api/ and proxy/ only');
  for (const need of ['package.json', 'package-lock.json', 'scripts/build.ts', 'tsconfig.json', ...folders]) {
    t.ok(copied.includes(need), `the build stage copies ${need}`);
  }
  t.ok(only(build, 'RUN').some((r) => /^npm ci\b/.test(r.args) && !r.args.includes('--omit=dev')), 'with the dev dependencies (rolldown)');
});

/** The first path on the way to `file` that a user other than its owner cannot pass or read. */
function unreachableByOthers(file: string): string | undefined {
  const parts = path.resolve(file).split('/').slice(1);
  for (let i = 1; i <= parts.length; i++) {
    const p = `/${parts.slice(0, i).join('/')}`;
    const { mode } = statSync(p);
    if ((mode & (i === parts.length ? 0o004 : 0o001)) === 0) return p;
  }
  return undefined;
}

/**
 * Lays out the final stage's files in `dir` as the image would hold them, and returns the
 * WORKDIR inside it. A path in an earlier stage maps to the repo: those stages copy repo files to
 * the same relative paths under their WORKDIR and build in place (node_modules: the repo's, linked,
 * a superset of the production install; dist/: what `npm run build` made). Context files go
 * through .dockerignore as Docker would send them.
 */
function stageImage(stages: Stage[], dir: string): string {
  const final = stages.at(-1)!;
  for (const c of copies(final)) {
    const from = c.from === undefined ? undefined : stages.find((s) => s.name === c.from)!;
    for (const src of c.sources) {
      const rel = from ? path.posix.relative(from.workdir, src) : src.replace(/\/$/, '');
      if (!existsSync(repo(rel))) {
        throw new Error(`${rel} is missing${rel === 'dist' ? ': run `npm run build` (tap does it before the tests)' : ''}`);
      }
      const target = statSync(repo(rel)).isDirectory() || !c.destIsDir ? path.join(dir, c.dest) : path.join(dir, c.dest, path.basename(rel));
      mkdirSync(path.dirname(target), { recursive: true });
      if (rel === 'node_modules') symlinkSync(repo(rel), target);
      else cpSync(repo(rel), target, { recursive: true, filter: (f) => from !== undefined || !ignored(path.relative(ROOT, f)) });
    }
  }
  return path.join(dir, final.workdir);
}

t.test('Dockerfile.proxy: the image holds everything its entrypoint imports, with production dependencies only', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'meshlet-image-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const workdir = stageImage(proxyStages, dir);
  const closure = importClosure(path.join(workdir, proxyEntry.at(-1)!));
  t.same(closure.missing.map((f) => path.relative(workdir, f)), [], 'every relative import resolves inside the image');
  // One bundle: everything but the lazily loaded packages is inside it.
  t.same(closure.files.map((f) => path.relative(workdir, f)), [proxyEntry.at(-1)], 'the entrypoint is one bundled file');
  t.same([...closure.packages].toSorted(), [...LAZY_PACKAGES].toSorted(), `it imports only ${LAZY_PACKAGES.join(' and ')} (when a YAML config or OTEL_* ask for them)`);
  t.same([...closure.packages].filter((p) => !(p in PKG.dependencies)).toSorted(), [], 'every package imported is a production dependency');
});

interface Running {
  /** The laid-out image's root (for files the test adds) and its WORKDIR. */
  dir: string;
  workdir: string;
  ready: { status: number; body: Record<string, unknown> } | undefined;
  log: () => string;
  /** Running as the image's USER (root test run, and that user can reach node and node_modules). */
  asRoot: boolean;
  uid: number;
  pid: number | undefined;
  /** SIGTERM, then the exit code. */
  stop: () => Promise<number | null>;
}

/**
 * Runs an image's ENTRYPOINT as the image would: its final stage laid out in a temp dir, the
 * exact argv (this machine's Node 24 for /nodejs/bin/node) plus `args`, the image's ENV plus `env`
 * and nothing else (no NODE_OPTIONS from the test runner), as the image's USER when the test runs
 * as root. `prepare` adds files to the laid-out image (owned by that USER) and returns the extra
 * arguments. Resolves once `admin`'s /ready answers 200, or the process exits, or 15 s pass.
 */
async function runImage(
  t: Test,
  stages: Stage[],
  o: { admin: number; env?: Record<string, string>; prepare: (root: string, own: (file: string) => void) => string[]; name: string },
): Promise<Running> {
  const final = stages.at(-1)!;
  // The laid-out image must be readable by the image's USER whatever this machine's umask is.
  const umask = process.umask(0o022);
  t.teardown(() => void process.umask(umask));
  const dir = mkdtempSync(path.join(tmpdir(), 'meshlet-image-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  const workdir = stageImage(stages, dir);

  const [uid, gid] = last(final, 'USER')!.args.split(':').map(Number) as [number, number];
  // As root, drop to the image's USER, if that user can reach this machine's node and the repo's
  // node_modules at all (a checkout under a 0700 home cannot be): then it runs as in the image.
  const blocked = [process.execPath, repo('node_modules/prom-client/package.json')].map(unreachableByOthers).find((p) => p !== undefined);
  const asRoot = process.getuid?.() === 0 && blocked === undefined;
  if (blocked) t.comment(`${blocked} is not readable by other users: the ${o.name} runs as this user, not UID ${uid}`);
  else if (!asRoot) t.comment(`not root: the ${o.name} runs as this user, not as the image USER`);
  const own = (file: string): void => {
    if (asRoot) chownSync(file, uid, gid);
  };
  const extra = o.prepare(dir, own);

  const env: Record<string, string> = { PATH: '/usr/bin:/bin' };
  for (const e of only(final, 'ENV')) {
    const [k, v] = e.args.split('=');
    env[k!] = v!;
  }
  Object.assign(env, o.env);
  const argv = [...execForm(last(final, 'ENTRYPOINT')).slice(1), ...extra];
  const child = spawn(process.execPath, argv, { cwd: workdir, env, stdio: ['ignore', 'pipe', 'pipe'], ...(asRoot ? { uid, gid } : {}) });
  let log = '';
  child.stdout.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });

  const deadline = Date.now() + 15_000;
  let ready: Running['ready'];
  while (!ready && child.exitCode === null && Date.now() < deadline) {
    try {
      const r = await fetch(`http://127.0.0.1:${o.admin}/ready`);
      if (r.status === 200) ready = { status: r.status, body: (await r.json()) as Record<string, unknown> };
    } catch {
      // not listening yet
    }
    if (!ready) await new Promise((r) => setTimeout(r, 50));
  }
  return {
    dir, workdir, ready, asRoot, uid, pid: child.pid,
    log: () => log,
    stop: () => {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

/** The process runs as `uid` (real, effective, saved, filesystem). */
const uidOf = (pid: number | undefined): string => /^Uid:\s+(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]?.trim() ?? '';

t.test('Dockerfile.proxy: its entrypoint, run as the image runs it, answers /ready and drains on SIGTERM', async (t) => {
  const [admin, outbound, inbound, app] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const run = await runImage(t, proxyStages, {
    name: 'proxy',
    admin,
    prepare: (root) => {
      const configDir = path.join(root, 'etc');
      mkdirSync(configDir, { mode: 0o755 });
      const config = path.join(configDir, 'proxy.yaml');
      writeFileSync(config, 'version: image-1\nservices: []\n', { mode: 0o644 });
      return ['--config', config, '--admin-listen', `127.0.0.1:${admin}`, '--outbound-listen', `127.0.0.1:${outbound}`, '--inbound-listen', `127.0.0.1:${inbound}`, '--app', `127.0.0.1:${app}`, '--workload', 'image-test', '--drain-grace', '1000'];
    },
  });
  t.ok(run.ready, `/ready answered 200 (proxy output:\n${run.log()})`);
  t.match(run.ready?.body, { ready: true, version: 'image-1' });
  t.equal((await fetch(`http://127.0.0.1:${admin}/live`)).status, 200, '/live');
  if (run.asRoot) t.equal(uidOf(run.pid), Array(4).fill(run.uid).join('\t'), `runs as UID ${run.uid}, from files it cannot write`);
  t.equal(await run.stop(), 0, 'SIGTERM: drained and exited 0');
});

// ---- Dockerfile.cp: the entrypoint, its imports and a real run ---------------------------------

const cpStages = parseDockerfile('Dockerfile.cp');
const cpFinal = cpStages.at(-1)!;
const cpEntry = execForm(last(cpFinal, 'ENTRYPOINT'));
const cpContainer = DEPLOYMENT.spec.template.spec.containers[0]!;

t.test('Dockerfile.cp: entrypoint and heap cap', async (t) => {
  t.same(cpEntry, ['/nodejs/bin/node', 'control-plane/main.ts'], 'node runs the TypeScript entry by type stripping, no arguments');
  const script = cpEntry.at(-1)!;
  t.ok(copies(cpFinal).some((c) => !c.from && c.sources.some((s) => script.startsWith(s))), `${script} is inside a COPY'd folder`);
  t.same(cpContainer.args ?? [], [], 'the Deployment passes no arguments either: flags fall back to the environment');

  // The heap cap lives in the Deployment, below the memory limit it must fit under.
  const heap = Number(/--max-old-space-size=(\d+)/.exec(cpContainer.env.find((e) => e.name === 'NODE_OPTIONS')?.value ?? '')?.[1]);
  const limit = Number(/^(\d+)Mi$/.exec(cpContainer.resources.limits.memory)?.[1]);
  t.ok(heap > 0 && limit > 0 && heap <= limit * 0.8, `old space ${heap} MiB leaves room under the ${limit} MiB limit`);
});

t.test('Dockerfile.cp: the image holds everything its entrypoint imports, with production dependencies only', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'meshlet-image-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const workdir = stageImage(cpStages, dir);
  const closure = importClosure(path.join(workdir, cpEntry.at(-1)!));
  t.same(closure.missing.map((f) => path.relative(workdir, f)), [], 'every relative import resolves inside the image');
  t.ok(closure.files.length > 10 && closure.packages.has('@kubernetes/client-node'), `${closure.files.length} modules, packages ${[...closure.packages].join(', ')}`);
  t.same([...closure.packages].filter((p) => !(p in PKG.dependencies)).toSorted(), [], 'every package imported is a production dependency');
});

t.test('Dockerfile.cp: its entrypoint, with the Deployment environment and a CA file, answers /ready and stops on SIGTERM', async (t) => {
  // The Pod's environment: config.env (envFrom) and the container's env (fieldRefs resolved as
  // the kubelet would), not in a cluster (no KUBERNETES_SERVICE_HOST), so the CA comes from
  // --ca-file, which wins over MESHLET_CA_SECRET; the listens move to free loopback ports.
  const env: Record<string, string> = Object.fromEntries(CONFIG);
  for (const e of cpContainer.env) env[e.name] = e.value ?? (e.valueFrom?.fieldRef?.fieldPath === 'metadata.namespace' ? 'meshlet-system' : '');
  const [admin, certify] = [await freePort(), await freePort()];
  const run = await runImage(t, cpStages, {
    name: 'control plane',
    admin,
    env,
    prepare: (root, own) => {
      const caDir = path.join(root, 'var', 'meshlet');
      mkdirSync(caDir, { recursive: true, mode: 0o755 });
      const caFile = path.join(caDir, 'ca.json');
      const init = spawnSync(process.execPath, [repo('bin/meshlet.ts'), 'identity', 'init', '--ca-file', caFile], { encoding: 'utf8' });
      t.equal(init.status, 0, `meshlet identity init --ca-file: ${init.stdout}${init.stderr}`);
      own(caFile);
      return ['--ca-file', caFile, '--listen', `127.0.0.1:${certify}`, '--admin-listen', `127.0.0.1:${admin}`];
    },
  });
  t.ok(run.ready, `/ready answered 200 (control plane output:\n${run.log()})`);
  t.match(run.ready?.body, { ready: true, reasons: [] });
  t.equal((await fetch(`http://127.0.0.1:${admin}/live`)).status, 200, '/live');
  const metrics = await fetch(`http://127.0.0.1:${admin}/metrics`);
  t.equal(metrics.status, 200, '/metrics');
  await metrics.body?.cancel();
  if (run.asRoot) t.equal(uidOf(run.pid), Array(4).fill(run.uid).join('\t'), `runs as UID ${run.uid}`);
  t.equal(await run.stop(), 0, 'SIGTERM: stopped and exited 0');
});
