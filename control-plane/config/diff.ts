// Two views of one proxy → what changed between them: the basis of delta pushes once views are large.
// Pure; compares canonical JSON, so key order never makes a change and `changed` is false for equal content.
import type { ConfigDelta } from '../../api/config-stream.ts';
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

/** The delta message that turns `prev` (as the proxy holds it) into `next`. */
export function deltaOf(prev: Readonly<ProxyConfig>, next: Readonly<ProxyConfig>): ConfigDelta {
  const d = diffViews(prev, next);
  const upserted = new Set(d.upserted);
  const delta: ConfigDelta = { type: 'delta', version: next.version, base: prev.version, upsert: next.services.filter((s) => upserted.has(s.name)), remove: d.removed };
  if (d.inbound) delta.inbound = next.inbound ?? null;
  if (d.trustBundle) delta.trustBundle = next.trustBundle ?? null;
  return delta;
}
