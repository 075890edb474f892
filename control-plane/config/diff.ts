// Two views of one proxy → what changed between them: the basis of delta pushes once views are large.
// Pure; compares canonical JSON, so key order never makes a change and `changed` is false for equal content.
import type { ProxyConfig, Service } from '../../api/proxy-config.ts';
import { canonicalJson } from './translate.ts';

export interface ViewDiff {
  /** Anything besides the version differs. */
  changed: boolean;
  /** Services that are new or differ, by canonical name, sorted. */
  upserted: string[];
  /** Services no longer in the view, sorted. */
  removed: string[];
  inbound: boolean;
  trustBundle: boolean;
}

function byName(services: readonly Service[]): Map<string, string> {
  return new Map(services.map((s) => [s.name, canonicalJson(s)]));
}

/** What `next` changes relative to `prev` (undefined: the proxy has nothing yet, so all of it). */
export function diffViews(prev: Readonly<ProxyConfig> | undefined, next: Readonly<ProxyConfig>): ViewDiff {
  const before = byName(prev?.services ?? []);
  const after = byName(next.services);
  const upserted = [...after].filter(([name, json]) => before.get(name) !== json).map(([name]) => name).toSorted();
  const removed = [...before.keys()].filter((name) => !after.has(name)).toSorted();
  const inbound = prev === undefined || canonicalJson(prev.inbound ?? null) !== canonicalJson(next.inbound ?? null);
  const trustBundle = prev === undefined || prev.trustBundle !== next.trustBundle;
  return { changed: upserted.length > 0 || removed.length > 0 || inbound || trustBundle, upserted, removed, inbound, trustBundle };
}
