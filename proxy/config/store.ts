// The one place config enters the proxy: file reloads now, control-plane pushes later. An
// update is validated, compiled and swapped atomically; a refused one leaves the last good.
import { parseProxyConfig, type Problem } from '../../api/proxy-config.ts';
import { compile, type RuntimeConfig, type StateRegistry } from './compile.ts';

export type ApplyResult = { ok: true; version: string } | { ok: false; version: string | undefined; problems: Problem[] };

export interface ConfigEvents {
  applied(cfg: RuntimeConfig): void;
  refused(problems: Problem[], source: string): void;
  /** The source is back to the config in force (as it was before a refusal): the refusal is cleared. */
  restored(version: string, source: string): void;
}

export class ConfigStore {
  #current: RuntimeConfig | undefined;
  #lastError: { problems: Problem[]; source: string; at: number } | undefined;
  readonly #state: StateRegistry;
  readonly #events: Partial<ConfigEvents>;

  constructor(state: StateRegistry, events: Partial<ConfigEvents> = {}) {
    this.#state = state;
    this.#events = events;
  }

  /** The config in force, or undefined before the first good one. Read once per request. */
  get current(): RuntimeConfig | undefined {
    return this.#current;
  }

  get lastError(): { problems: Problem[]; source: string; at: number } | undefined {
    return this.#lastError;
  }

  apply(doc: unknown, source: string): ApplyResult {
    const parsed = parseProxyConfig(doc);
    if (!parsed.ok) return this.refuse(parsed.problems, source);
    let next: RuntimeConfig;
    try {
      next = compile(parsed.value, this.#state);
    } catch (err) {
      return this.refuse([{ path: '/', message: `cannot compile: ${(err as Error).message}` }], source);
    }
    this.#current = next;
    this.#lastError = undefined;
    this.#state.sweep(next);
    this.#events.applied?.(next);
    return { ok: true, version: next.version };
  }

  /** The source offers the config in force again: forget the refusal recorded since. */
  restore(source: string): void {
    if (!this.#lastError || !this.#current) return;
    this.#lastError = undefined;
    this.#events.restored?.(this.#current.version, source);
  }

  /** Record a refusal found before validation (unreadable file, syntax error); nothing changes. */
  refuse(problems: Problem[], source: string): ApplyResult {
    this.#lastError = { problems, source, at: Date.now() };
    this.#events.refused?.(problems, source);
    return { ok: false, version: this.#current?.version, problems };
  }
}
