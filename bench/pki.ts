// Identities for the mTLS paths. HAProxy: a CA from meshlet's own CA core (ECDSA P-256 anchor →
// issuer → leaf, the kind the control plane issues), one leaf per hop written as PEM files.
// meshlet: a real control plane process (`meshlet identity init` + control-plane/main.ts), proxies
// bootstrapped with tokens from the real CLI, as in test/fixtures/control-plane.ts.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_TRUST_DOMAIN, initCa, issueLeaf, parseSpiffeId } from '../control-plane/ca/index.ts';
import { makeCsr, newKeyPair } from '../proxy/identity/csr.ts';
import { freePort, httpStatus, run, start, waitFor, type Proc } from './procs.ts';

const MESHLET = fileURLToPath(new URL('../bin/meshlet.ts', import.meta.url));
const CP_MAIN = fileURLToPath(new URL('../control-plane/main.ts', import.meta.url));
export const NAMESPACE = 'bench';

export const spiffeIdOf = (serviceAccount: string): string => `spiffe://${DEFAULT_TRUST_DOMAIN}/ns/${NAMESPACE}/sa/${serviceAccount}`;

/**
 * HAProxy TLS options for A → B: TLS 1.3, `verify required` against the anchor both ways.
 * No `verifyhost` on A's server line: HAProxy matches it against DNS SANs / CN only, and these
 * leaves carry nothing but a SPIFFE URI SAN. So HAProxy A accepts any leaf of the CA, while
 * meshlet A also checks that B presents the SPIFFE ID its endpoint names: slightly more work for meshlet.
 */
export function haproxyMtls(dir: string): { a: string; b: string } {
  const pki = mkdtempSync(join(dir, 'pki-'));
  const now = Date.now();
  const ca = initCa({ now: now - 60_000 });
  const caFile = join(pki, 'ca.pem');
  writeFileSync(caFile, ca.anchor.certPem);
  const crt = (sa: string): string => {
    const keys = newKeyPair();
    const leaf = issueLeaf(ca, { csrPem: makeCsr(keys), identity: parseSpiffeId(spiffeIdOf(sa)), now });
    const file = join(pki, `${sa}.pem`); // leaf, issuer, key: HAProxy's `crt` bundle
    writeFileSync(file, [leaf.certPem, ...leaf.chainPems, keys.privateKey.export({ type: 'pkcs8', format: 'pem' })].join(''), { mode: 0o600 });
    return file;
  };
  const common = `ssl ssl-min-ver TLSv1.3 verify required ca-file ${caFile}`;
  return { a: `${common} crt ${crt('a')}`, b: `${common} crt ${crt('b')}` };
}

export interface ControlPlane {
  proc: Proc;
  /** Proxy flags that give it the identity ns bench / sa `serviceAccount`. */
  identityArgs(serviceAccount: string): Promise<string[]>;
}

async function cli(...args: string[]): Promise<string> {
  const r = await run(process.execPath, [MESHLET, ...args]);
  if (r.code !== 0) throw new Error(`meshlet ${args.join(' ')} exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** A control plane with a fresh CA in its own folder of `dir`; ready at /ready. */
export async function startControlPlane(dir: string): Promise<ControlPlane> {
  const cpDir = mkdtempSync(join(dir, 'cp-'));
  const caFile = join(cpDir, 'ca.json');
  await cli('identity', 'init', '--ca-file', caFile);
  // The first bootstrap token makes the CA state's bootstrap key: made before the control plane
  // starts, it is there from its first read (no refusal, no re-read on the first proxy's token).
  await cli('identity', 'bootstrap-token', '--ca-file', caFile, '--namespace', NAMESPACE, '--service-account', 'bench');
  const anchors = join(cpDir, 'anchors.pem');
  writeFileSync(anchors, (JSON.parse(readFileSync(caFile, 'utf8')) as { anchor: { certPem: string } }).anchor.certPem);
  const [port, adminPort] = [await freePort(), await freePort()];
  const proc = await start('control-plane', process.execPath, [CP_MAIN, '--ca-file', caFile, '--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${adminPort}`]);
  try {
    await waitFor('control plane /ready', async () => (await httpStatus(`http://127.0.0.1:${adminPort}/ready`)) === 200, [proc]);
  } catch (e) {
    await proc.stop();
    throw e;
  }
  return {
    proc,
    async identityArgs(sa) {
      const token = join(cpDir, `token-${sa}`);
      writeFileSync(token, (await cli('identity', 'bootstrap-token', '--ca-file', caFile, '--namespace', NAMESPACE, '--service-account', sa)).trim(), { mode: 0o600 });
      return ['--control-plane', `https://127.0.0.1:${port}`, '--trust-anchors', anchors, '--bootstrap-token-file', token, '--namespace', NAMESPACE];
    },
  };
}
