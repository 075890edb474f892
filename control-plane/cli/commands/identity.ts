// `meshlet identity ...`: create the CA, mint bootstrap tokens, drive issuer and anchor rotation
// one step at a time, show status. Guarantees: a refused step changes nothing and exits 1 with the state machine's reason.

import { X509Certificate } from 'node:crypto';
import {
  DEFAULT_TRUST_DOMAIN, RotationError, addAnchor, initCa, phaseOf, removableAtMs, removeAnchor, rotateIssuer, spiffeId, useAnchor,
  type Authority, type CaState, type Phase,
} from '../../ca/index.ts';
import { generateBootstrapKey, issueBootstrapToken } from '../../identity/bootstrap-token.ts';
import { formatDuration, parseDuration } from '../../duration.ts';
import { CaStoreError, type CaDocument } from '../../store/ca-document.ts';
import type { CaStore } from '../../store/ca-store.ts';
import { CA_SOURCE_OPTIONS, CA_SOURCE_USAGE, openStore } from '../ca-source.ts';
import { CliError, EXIT_OK, EXIT_USAGE, HELP_FLAG, UsageError, flags, guarded, type Command, type Io } from '../command.ts';

const STEPS = ['rotate-issuer', 'add-anchor', 'use-anchor', 'remove-anchor'] as const;
type Step = (typeof STEPS)[number];

const STEP_HELP: Record<Step, string> = {
  'rotate-issuer': 'a new issuer under the current anchor signs new leaves; the bundle is unchanged (any phase)',
  'add-anchor': 'a new trust anchor joins the bundle, unused; push the bundle everywhere next (phase steady)',
  'use-anchor': 'the added anchor signs a new issuer; the old anchor stays in the bundle (phase anchor-added)',
  'remove-anchor': 'the old anchor leaves the bundle, once no leaf signed under it can be valid (phase anchor-switched)',
};

const USAGE = `usage: meshlet identity <subcommand> [options]

subcommands:
  init              create the CA state (trust anchor + issuer)
  bootstrap-token   print a token that proves one identity to Certify (one machine, no Kubernetes)
  status            phase, anchors and issuer with their validity windows
${STEPS.map((s) => `  ${s.padEnd(16)}  ${STEP_HELP[s]}`).join('\n')}

Anchor rotation, in this order only: add-anchor → (push the bundle) → use-anchor → (wait one
leaf TTL) → remove-anchor. rotate-issuer may run at any time. Steps out of order exit 1 and
change nothing. A running control plane picks up every change within its --reload-interval.
Run 'meshlet identity <subcommand> --help' for options.
`;

const iso = (ms: number): string => new Date(ms).toISOString();

/** Load → change → write back (refused if another writer got there first). */
async function change(store: CaStore, fn: (doc: CaDocument) => CaDocument): Promise<CaDocument> {
  const cur = await load(store);
  const next = fn(cur.doc);
  await store.replace(next, cur.version);
  return next;
}

async function load(store: CaStore): Promise<{ doc: CaDocument; version: string }> {
  try {
    return await store.load();
  } catch (e) {
    if (e instanceof CaStoreError) throw new CliError(e.message);
    throw e;
  }
}

function storeError(e: unknown): never {
  // A RotationError's message starts with its step, which the command prefix already names.
  if (e instanceof RotationError) throw new CliError(e.message.startsWith(`${e.step}: `) ? e.message.slice(e.step.length + 2) : e.message, nextStepHint(e));
  if (e instanceof CaStoreError) throw new CliError(e.message);
  throw e;
}

function nextStepHint(e: Error): string | undefined {
  if (e instanceof RotationError && e.code !== 'bad-state') return "Run 'meshlet identity status' to see the phase and the next step.";
  return undefined;
}

// ---- init ----

const INIT_USAGE = `usage: meshlet identity init (--ca-file FILE | --ca-secret NS/NAME) [--trust-domain TD] [--leaf-ttl DURATION]

Create a CA: a trust anchor (365 days) and an issuer under it (90 days). Refuses to overwrite
an existing one.

  --trust-domain TD     SPIFFE trust domain (default ${DEFAULT_TRUST_DOMAIN})
  --leaf-ttl DURATION   the longest leaf lifetime this CA issues; remove-anchor waits this long
                        after use-anchor (default 24h)
${CA_SOURCE_USAGE}`;

async function init(args: string[], io: Io): Promise<number> {
  const v = flags('identity init', args, { options: { ...CA_SOURCE_OPTIONS, 'trust-domain': { type: 'string' }, 'leaf-ttl': { type: 'string' }, help: HELP_FLAG } }, INIT_USAGE, io);
  if (!v) return EXIT_OK;
  const leafTtlMs = duration('identity init', v['leaf-ttl'] ?? '24h', '--leaf-ttl');
  const store = await openStore('identity init', v);
  let state: CaState;
  try {
    state = initCa({ trustDomain: v['trust-domain'] ?? DEFAULT_TRUST_DOMAIN, now: io.wallClock.nowMs(), leafTtlMs });
  } catch (e) {
    throw new UsageError('identity init', (e as Error).message);
  }
  await store.create({ state }).catch(storeError);
  io.stdout(`created a CA for trust domain ${state.trustDomain} in ${store.where}\n${describe(state)}`);
  return EXIT_OK;
}

// ---- bootstrap-token ----

const TOKEN_USAGE = `usage: meshlet identity bootstrap-token (--ca-file FILE | --ca-secret NS/NAME) --namespace NS --service-account SA [--ttl DURATION]

Print (on stdout, alone) a token that proves spiffe://<trust-domain>/ns/NS/sa/SA to Certify:
POST /v1/certify {"kind": "bootstrap", "token": ..., "csr": ...}. Anyone holding it can get a
certificate for that identity until it expires: hand it to that workload only.
The token's HMAC key is kept in the CA state; the first token adds it.

  --namespace NS            the workload's namespace
  --service-account SA      the workload's service account (its name, in one-machine mode)
  --ttl DURATION            how long the token is accepted (default 24h)
${CA_SOURCE_USAGE}`;

async function bootstrapToken(args: string[], io: Io): Promise<number> {
  const cmd = 'identity bootstrap-token';
  const v = flags(cmd, args, { options: { ...CA_SOURCE_OPTIONS, namespace: { type: 'string', short: 'n' }, 'service-account': { type: 'string' }, ttl: { type: 'string' }, help: HELP_FLAG } }, TOKEN_USAGE, io);
  if (!v) return EXIT_OK;
  if (!v.namespace || !v['service-account']) throw new UsageError(cmd, '--namespace and --service-account are required');
  const ttlMs = duration(cmd, v.ttl ?? '24h', '--ttl');
  const store = await openStore(cmd, v);
  let { doc, version } = await load(store);
  let identity;
  try {
    identity = spiffeId({ trustDomain: doc.state.trustDomain, namespace: v.namespace, serviceAccount: v['service-account'] });
  } catch (e) {
    throw new UsageError(cmd, (e as Error).message);
  }
  if (!doc.bootstrapKey) {
    doc = { ...doc, bootstrapKey: generateBootstrapKey() };
    ({ version } = await store.replace(doc, version).catch(storeError));
    io.stderr(`added a bootstrap-token key to ${store.where} (a running control plane accepts bootstrap tokens after its next reload)\n`);
  }
  const now = io.wallClock.nowMs();
  const token = issueBootstrapToken(identity, { ttlMs, now, key: doc.bootstrapKey as Buffer });
  io.stderr(`bootstrap token for ${identity.uri}, valid until ${iso(now + ttlMs)}\n`);
  io.stdout(`${token}\n`);
  return EXIT_OK;
}

// ---- rotation steps ----

function stepUsage(step: Step): string {
  return `usage: meshlet identity ${step} (--ca-file FILE | --ca-secret NS/NAME)

${STEP_HELP[step]}.
Refused (exit 1, nothing changed) when the CA is not in the phase this step follows.

${CA_SOURCE_USAGE}`;
}

async function rotationStep(step: Step, args: string[], io: Io): Promise<number> {
  const cmd = `identity ${step}`;
  const v = flags(cmd, args, { options: { ...CA_SOURCE_OPTIONS, help: HELP_FLAG } }, stepUsage(step), io);
  if (!v) return EXIT_OK;
  const store = await openStore(cmd, v);
  const now = io.wallClock.nowMs();
  const apply = (s: CaState): CaState => {
    switch (step) {
      case 'rotate-issuer': return rotateIssuer(s, { now });
      case 'add-anchor': return addAnchor(s, { now });
      case 'use-anchor': return useAnchor(s, { now });
      case 'remove-anchor': return removeAnchor(s, { now });
    }
  };
  const next = await change(store, (doc) => ({ ...doc, state: apply(doc.state) })).catch(storeError);
  const s = next.state;
  const done: Record<Step, string> = {
    'rotate-issuer': `new issuer ${s.issuer.subject} (serial ${s.issuer.serialHex}) signs new leaves until ${iso(s.issuer.notAfterMs)}; the trust bundle is unchanged, so leaves of the previous issuer stay valid`,
    'add-anchor': `new anchor ${s.nextAnchor?.subject} (serial ${s.nextAnchor?.serialHex}) added to the bundle, not used yet.\nNext: let every proxy receive the bundle (renewals and config pushes carry it), then run use-anchor`,
    'use-anchor': `anchor ${s.anchor.subject} is now in use with a new issuer ${s.issuer.serialHex}; the old anchor stays in the bundle.\nNext: remove-anchor, allowed from ${iso(removableAtMs(s))} (one leaf TTL from now)`,
    'remove-anchor': `the old anchor left the bundle; the bundle is ${s.anchor.subject} alone`,
  };
  io.stdout(`${step}: ${done[step]}\n`);
  return EXIT_OK;
}

// ---- status ----

const STATUS_USAGE = `usage: meshlet identity status (--ca-file FILE | --ca-secret NS/NAME) [-o table|json]

The rotation phase, the trust bundle's anchors and the active issuer with their validity
windows, and the next rotation step.

  -o, --output FORMAT   table (default) or json
${CA_SOURCE_USAGE}`;

interface CertView {
  role: string;
  subject: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  /** Whole days left at the time of the status. */
  daysLeft: number;
}

function view(role: string, c: Authority | string, now: number): CertView {
  const x = typeof c === 'string' ? new X509Certificate(c) : c.x509;
  return {
    role, subject: x.subject.replace(/\n/g, ', '), serial: x.serialNumber.toLowerCase(),
    notBefore: x.validFromDate.toISOString(), notAfter: x.validToDate.toISOString(),
    daysLeft: Math.floor((x.validToDate.getTime() - now) / 86_400_000),
  };
}

const NEXT: Record<Phase, string> = {
  steady: 'none pending (rotate-issuer any time; an anchor rotation starts with add-anchor)',
  'anchor-added': 'push the bundle to every workload, then use-anchor',
  'anchor-switched': 'remove-anchor',
};

export function statusOf(doc: CaDocument, where: string, now: number): Record<string, unknown> {
  const s = doc.state;
  const phase = phaseOf(s);
  const anchors = [view('current', s.anchor, now)];
  if (s.nextAnchor) anchors.push(view('next', s.nextAnchor, now));
  if (s.previousAnchorPem !== undefined) anchors.push(view('previous', s.previousAnchorPem, now));
  return {
    source: where,
    trustDomain: s.trustDomain,
    phase,
    nextStep: NEXT[phase],
    ...(phase === 'anchor-switched' ? { removeAnchorAllowedFrom: iso(removableAtMs(s)) } : {}),
    leafTtl: formatDuration(s.leafTtlMs),
    anchors,
    issuer: view('issuer', s.issuer, now),
    ...(s.previousIssuerPem !== undefined ? { previousIssuer: view('previous-issuer', s.previousIssuerPem, now) } : {}),
    bootstrapTokens: doc.bootstrapKey !== undefined,
  };
}

function table(st: ReturnType<typeof statusOf>): string {
  const rows = [...(st.anchors as CertView[]).map((a) => ({ ...a, role: `anchor (${a.role})` })), { ...(st.issuer as CertView), role: 'issuer (active)' }];
  if (st.previousIssuer) rows.push({ ...(st.previousIssuer as CertView), role: 'issuer (previous)' });
  const head = ['ROLE', 'SERIAL', 'NOT BEFORE', 'NOT AFTER', 'DAYS LEFT', 'SUBJECT'];
  const cells = rows.map((r) => [r.role, r.serial.slice(0, 16), r.notBefore, r.notAfter, String(r.daysLeft), r.subject]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] ?? '').length)));
  const line = (c: string[]): string => c.map((x, i) => (i === c.length - 1 ? x : x.padEnd(widths[i] ?? 0))).join('  ');
  return [
    `source:        ${String(st.source)}`,
    `trust domain:  ${String(st.trustDomain)}`,
    `phase:         ${String(st.phase)}`,
    `next step:     ${String(st.nextStep)}${st.removeAnchorAllowedFrom ? ` (allowed from ${String(st.removeAnchorAllowedFrom)})` : ''}`,
    `leaf TTL:      ${String(st.leafTtl)}`,
    `bootstrap tokens: ${st.bootstrapTokens ? 'enabled (key present)' : 'no key yet (the first bootstrap-token adds it)'}`,
    '',
    line(head),
    ...cells.map(line),
    '',
  ].join('\n');
}

async function status(args: string[], io: Io): Promise<number> {
  const cmd = 'identity status';
  const v = flags(cmd, args, { options: { ...CA_SOURCE_OPTIONS, output: { type: 'string', short: 'o' }, help: HELP_FLAG } }, STATUS_USAGE, io);
  if (!v) return EXIT_OK;
  const format = v.output ?? 'table';
  if (format !== 'table' && format !== 'json') throw new UsageError(cmd, `-o ${format}: want table or json`);
  const store = await openStore(cmd, v);
  const { doc } = await load(store);
  const st = statusOf(doc, store.where, io.wallClock.nowMs());
  io.stdout(format === 'json' ? JSON.stringify(st, null, 2) + '\n' : table(st));
  return EXIT_OK;
}

// ---- helpers ----

function duration(cmd: string, text: string, flag: string): number {
  try {
    return parseDuration(text, flag);
  } catch (e) {
    throw new UsageError(cmd, (e as Error).message);
  }
}

function describe(s: CaState): string {
  return `  trust anchor  ${s.anchor.subject}, valid until ${iso(s.anchor.notAfterMs)}\n  issuer        ${s.issuer.subject}, valid until ${iso(s.issuer.notAfterMs)}\n  leaf TTL      ${formatDuration(s.leafTtlMs)}\n`;
}

const SUBCOMMANDS: Record<string, (args: string[], io: Io) => Promise<number>> = {
  init,
  'bootstrap-token': bootstrapToken,
  status,
  ...Object.fromEntries(STEPS.map((s) => [s, (args: string[], io: Io) => rotationStep(s, args, io)])),
};

export const identity: Command = {
  name: 'identity',
  summary: 'workload identity: CA, bootstrap tokens, rotation, status',
  async run(args, io) {
    const [sub, ...rest] = args;
    if (sub === undefined || sub === '-h' || sub === '--help') {
      (sub === undefined ? io.stderr : io.stdout)(USAGE);
      return sub === undefined ? EXIT_USAGE : EXIT_OK;
    }
    const fn = SUBCOMMANDS[sub];
    if (!fn) {
      io.stderr(`meshlet identity: unknown subcommand ${JSON.stringify(sub)}\n\n${USAGE}`);
      return EXIT_USAGE;
    }
    return guarded(`identity ${sub}`, io, () => fn(rest, io));
  },
};
