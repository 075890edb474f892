// Thin I/O for stat, the live view and diagnose: read every proxy of the local mesh (its /metrics,
// /config, /ready, /errors). Guarantees: bounded (one timeout per request), never throws for one
// proxy that is down: its fields come back undefined with the reason.
import type { ConfigView, ProxyScrape, StatResult } from './golden.ts';
import { goldenSignals, parseMetrics, type Sample } from './golden.ts';
import type { MeshFile, MeshWorkload } from './mesh-file.ts';

export async function getText(url: string, timeoutMs = 2000): Promise<string> {
  const r = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (r.status !== 200) throw new Error(`${url}: HTTP ${r.status}`);
  return r.text();
}

export async function getJson<T>(url: string, timeoutMs = 2000): Promise<T> {
  const r = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  const body = (await r.json()) as T;
  if (r.status !== 200 && r.status !== 503) throw new Error(`${url}: HTTP ${r.status}`);
  return body;
}

export interface Scrape {
  workload: MeshWorkload;
  samples: Sample[] | undefined;
  config: ConfigView | undefined;
  error: string | undefined;
}

export async function scrapeAll(mesh: MeshFile): Promise<Scrape[]> {
  return Promise.all(
    mesh.workloads.map(async (w): Promise<Scrape> => {
      try {
        const [text, cfg] = await Promise.all([getText(`${w.admin}/metrics`), getJson<{ config: ConfigView | null }>(`${w.admin}/config`)]);
        return { workload: w, samples: parseMetrics(text), config: cfg.config ?? undefined, error: undefined };
      } catch (e) {
        return { workload: w, samples: undefined, config: undefined, error: (e as Error).message };
      }
    }),
  );
}

/** Golden signals between two scrape rounds (`before` earlier by `seconds`). */
export function statBetween(before: readonly Scrape[], after: readonly Scrape[], seconds: number): StatResult & { unreachable: string[] } {
  const proxies: ProxyScrape[] = [];
  const unreachable: string[] = [];
  for (const a of after) {
    const b = before.find((x) => x.workload.name === a.workload.name);
    if (!a.samples) {
      unreachable.push(`${a.workload.name}: ${a.error}`);
      continue;
    }
    proxies.push({ workload: a.workload.name, service: a.workload.service, before: b?.samples ?? [], after: a.samples, config: a.config });
  }
  return { ...goldenSignals(proxies, seconds), unreachable };
}
