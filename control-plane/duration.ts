// Durations on the command line: "24h", "90s", "1500ms", "7d", "1h30m". One parser for the
// control plane's flags and the CLI. Guarantees: a positive whole number of ms, or an error saying the format.

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseDuration(text: string, flag: string): number {
  const parts = /^(?:\d+(?:ms|s|m|h|d))+$/.test(text) ? text.match(/\d+(?:ms|s|m|h|d)/g) ?? [] : [];
  let ms = 0;
  for (const p of parts) {
    const m = /^(\d+)(ms|s|m|h|d)$/.exec(p);
    ms += Number(m?.[1]) * (UNITS[m?.[2] ?? ''] ?? NaN);
  }
  if (parts.length === 0 || !Number.isSafeInteger(ms) || ms <= 0) {
    throw new Error(`${flag}: ${JSON.stringify(text)} is not a duration (e.g. 24h, 90m, 30s, 1500ms, 1h30m)`);
  }
  return ms;
}

export function formatDuration(ms: number): string {
  const out: string[] = [];
  let rest = ms;
  for (const [u, size] of [['d', UNITS.d], ['h', UNITS.h], ['m', UNITS.m], ['s', UNITS.s], ['ms', 1]] as const) {
    const n = Math.floor(rest / (size ?? 1));
    if (n > 0) out.push(`${n}${u}`);
    rest -= n * (size ?? 1);
  }
  return out.join('') || '0s';
}
