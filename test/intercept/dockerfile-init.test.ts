// Dockerfile.init without a Docker engine: it holds the contract with the injector (the script at
// /meshlet/intercept.sh, executable, as the entrypoint; iptables installed; runs as root) and
// its COPY source is the script the tests run, inside the build context (.dockerignore).
import t from 'tap';
import { readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = (p: string) => fileURLToPath(new URL(`../../${p}`, import.meta.url));
const lines = readFileSync(root('Dockerfile.init'), 'utf8')
  .replace(/\\\n/g, ' ')
  .split('\n')
  .filter((l) => l.trim() !== '' && !l.trimStart().startsWith('#'));

t.test('Dockerfile.init: Debian bookworm-slim with iptables, the script at /meshlet/intercept.sh as entrypoint', (t) => {
  t.match(lines[0], /^FROM debian:bookworm-slim\b/);
  t.equal(lines.filter((l) => l.startsWith('FROM ')).length, 1, 'one stage');
  t.ok(lines.some((l) => l.startsWith('RUN ') && /apt-get install .*\biptables\b/.test(l)), 'installs iptables');
  const copy = lines.find((l) => l.startsWith('COPY '));
  t.equal(copy, 'COPY --chmod=0755 proxy/intercept/intercept.sh /meshlet/intercept.sh');
  t.ok(statSync(root('proxy/intercept/intercept.sh')).mode & 0o100, 'the script is executable in the repo too');
  t.equal(lines.find((l) => l.startsWith('ENTRYPOINT ')), 'ENTRYPOINT ["/meshlet/intercept.sh"]');
  t.equal(lines.find((l) => l.startsWith('USER ')), 'USER 0:0', 'root: it writes iptables rules (with NET_ADMIN)');
  const ignore = readFileSync(root('.dockerignore'), 'utf8').split('\n');
  t.ok(ignore.includes('!proxy/'), '.dockerignore lets proxy/ (and the script) into the build context');
  t.match(readFileSync(root('proxy/intercept/intercept.sh'), 'utf8'), /^#!\/bin\/sh\n/, 'POSIX sh: the slim image has no bash requirement');
  t.end();
});
