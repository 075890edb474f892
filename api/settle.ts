// Reading a file that someone may be writing: a read counts only once a read `quietMs` later agrees
// with it. Shared by the proxy's config file and the control plane's config folder.

export interface SettleOptions {
  /** Time between two reads (ms). */
  quietMs: number;
  /** Reads after the first before giving up (reads that keep disagreeing: a file rewritten nonstop). */
  maxRereads: number;
  /** Waits `ms` (the caller's timers). */
  sleep: (ms: number) => Promise<void>;
  /** True once the result is no longer wanted (a newer change, a close): reading stops. */
  stale?: () => boolean;
}

/**
 * Reads again `quietMs` after `first`, and after each read that disagrees with the one before it,
 * until two reads in a row agree; returns the later of the two. A writer that truncates the file
 * and writes it in parts is thus not taken at a moment in between (an empty file and a valid
 * first document are both valid configs). Callers read `first` after `quietMs` without changes,
 * so only a pause of more than twice `quietMs` in the middle of a write defeats it.
 * Undefined when `maxRereads` reads never agreed or it went stale.
 */
export async function settle<R>(first: R, read: () => Promise<R>, agree: (a: R, b: R) => boolean, o: SettleOptions): Promise<R | undefined> {
  const stale = o.stale ?? (() => false);
  let previous = first;
  for (let i = 0; i < o.maxRereads && !stale(); i++) {
    await o.sleep(o.quietMs);
    if (stale()) return undefined;
    const next = await read();
    if (stale()) return undefined;
    if (agree(previous, next)) return next;
    previous = next;
  }
  return undefined;
}
