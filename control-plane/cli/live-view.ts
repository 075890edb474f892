// The table `meshlet stat` prints and the demo's live view redraws: one row per edge, at most 80
// columns. Pure: a StatResult in, lines out.
import type { EdgeStat, StatResult } from './golden.ts';

export const VIEW_WIDTH = 80;

const fmt = (v: number | null, digits: number, suffix = '') => (v === null ? '-' : `${v.toFixed(digits)}${suffix}`);

function breaker(e: EdgeStat): string {
  const b = e.breaker;
  if (b.open > 0) return `${b.open} open`;
  if (b.probation > 0) return `${b.probation} probe`;
  return b.closed > 0 ? 'closed' : '-';
}

function mtls(e: EdgeStat): string {
  if (e.mtls === null) return '-';
  if (e.mtls === 1) return 'yes';
  return e.mtls === 0 ? 'NO' : `${Math.round(e.mtls * 100)}%`;
}

function fit(s: string, n: number): string {
  return s.length <= n ? s.padEnd(n) : `${s.slice(0, n - 1)}…`;
}

/** Drop the namespace suffix the way users name services (`api-v1.demo` → `api-v1`). */
export function short(name: string, namespace: string | undefined): string {
  return namespace && name.endsWith(`.${namespace}`) ? name.slice(0, -namespace.length - 1) : name;
}

const HEAD = `${'EDGE'.padEnd(24)} ${'RPS'.padStart(6)} ${'SUCCESS'.padStart(7)} ${'P50ms'.padStart(6)} ${'P99ms'.padStart(6)} ${'mTLS'.padEnd(4)} ${'SPLIT'.padStart(5)} BREAKER`;

export function edgeLines(r: StatResult, namespace?: string): string[] {
  const lines = [HEAD];
  for (const e of r.edges) {
    const edge = fit(`${e.source} → ${short(e.destination, namespace)}`, 24);
    const split = e.split ? `${Math.round(e.split.share * 100)}%` : '-';
    lines.push(`${edge} ${fmt(e.rps, 1).padStart(6)} ${fmt(e.successRate === null ? null : e.successRate * 100, 1, '%').padStart(7)} ${fmt(e.p50Ms, 1).padStart(6)} ${fmt(e.p99Ms, 1).padStart(6)} ${mtls(e).padEnd(4)} ${split.padStart(5)} ${breaker(e)}`);
  }
  const retried = r.retries.filter((x) => x.retries > 0 || x.budgetExhausted > 0);
  if (retried.length > 0) {
    const parts = retried.map((x) => `${x.source} → ${short(x.service, namespace)} ${(x.retries / r.windowSeconds).toFixed(1)}/s${x.budgetExhausted > 0 ? ` (${x.budgetExhausted} over budget)` : ''}`);
    lines.push(fit(`retries: ${parts.join(', ')}`, VIEW_WIDTH).trimEnd());
  }
  return lines.map((l) => (l.length > VIEW_WIDTH ? l.slice(0, VIEW_WIDTH) : l));
}

export function serviceLines(r: StatResult): string[] {
  const lines = [`${'SERVICE (inbound)'.padEnd(24)} ${'RPS'.padStart(6)} ${'SUCCESS'.padStart(7)} ${'P50ms'.padStart(6)} ${'P99ms'.padStart(6)} mTLS`];
  for (const s of r.services) {
    const m = s.mtls === null ? '-' : s.mtls === 1 ? 'yes' : `${Math.round(s.mtls * 100)}%`;
    lines.push(`${fit(s.service, 24)} ${fmt(s.rps, 1).padStart(6)} ${fmt(s.successRate === null ? null : s.successRate * 100, 1, '%').padStart(7)} ${fmt(s.p50Ms, 1).padStart(6)} ${fmt(s.p99Ms, 1).padStart(6)} ${m}`);
  }
  return lines;
}

/** The demo's live view, one screen: a title, the edges, the services, a hint line. */
export function liveScreen(r: StatResult, o: { clock: string; namespace: string; configDir: string; firstRequestSeconds: number; hint: string }): string[] {
  const title = `meshlet local mesh · ${o.clock} · first request after ${o.firstRequestSeconds.toFixed(2)} s`;
  const lines = [
    title,
    `config ${o.configDir}`,
    '',
    ...edgeLines(r, o.namespace),
    '',
    ...serviceLines(r).map((l) => l.replace(/^(\S+)/, (s) => short(s, o.namespace))),
    '',
    o.hint,
  ];
  return lines.map((l) => (l.length > VIEW_WIDTH ? `${l.slice(0, VIEW_WIDTH - 1)}…` : l));
}
