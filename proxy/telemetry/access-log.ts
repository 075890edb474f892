// One JSON line per request, written in batches so logging costs a string, not a syscall.
// Lines are flushed every 100 ms, at 64 KiB, and on close; a slow sink drops, never blocks.
import type { Writable } from 'node:stream';

export interface AccessLogEntry {
  ts: string;
  direction: 'inbound' | 'outbound';
  method: string;
  authority: string;
  path: string;
  status: number;
  duration_ms: number;
  upstream: string;
  attempts: number;
  error: string;
  trace_id: string;
  peer: string;
  route: string;
  dst_service: string;
}

export interface AccessLog {
  /** False for the null log: callers skip building entries nobody reads. */
  readonly enabled: boolean;
  write(e: AccessLogEntry): void;
  close(): Promise<void>;
}

export const nullAccessLog: AccessLog = { enabled: false, write() {}, close: async () => {} };

export class BatchedAccessLog implements AccessLog {
  readonly enabled = true;
  readonly #out: Writable;
  #buf: string[] = [];
  #size = 0;
  #timer: NodeJS.Timeout | undefined;
  dropped = 0;

  constructor(out: Writable) {
    this.#out = out;
  }

  write(e: AccessLogEntry): void {
    const line = JSON.stringify(e);
    this.#buf.push(line);
    this.#size += line.length + 1;
    if (this.#size >= 65536) this.flush();
    else if (!this.#timer) {
      this.#timer = setTimeout(() => this.flush(), 100);
      this.#timer.unref();
    }
  }

  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#buf.length === 0) return;
    const chunk = this.#buf.join('\n') + '\n';
    this.#buf = [];
    this.#size = 0;
    if (this.#out.writableNeedDrain) {
      this.dropped += chunk.split('\n').length - 1;
      return;
    }
    this.#out.write(chunk);
  }

  close(): Promise<void> {
    this.flush();
    return Promise.resolve();
  }
}
