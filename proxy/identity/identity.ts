// The proxy's workload identity: a key pair made at start (never written anywhere), a leaf from
// the control plane's Certify endpoint, renewed at ~70 % of its life with jitter. A renewal swaps
// the TLS contexts for new connections; connections in use keep theirs. Failures retry with
// backoff while the current leaf is valid, and readiness says why.
import tls, { type SecureContext } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import type { Random } from '../../api/runtime.ts';
import { makeCsr, newKeyPair, type KeyPair } from './csr.ts';

export interface WallClock {
  nowMs(): number;
}
export const systemWallClock: WallClock = { nowMs: () => Date.now() };

export interface CertifyResponse {
  certificate: string;
  chain: string[];
  trustBundle: string[];
  notAfter?: string | number;
}

/** How a CSR reaches the CA; the real one is HTTPS (certify-client.ts). */
export interface CertifyTransport {
  /**
   * `bundle` is the trust bundle of the current leaf (if any): the control plane's own serving
   * certificate moves to a new anchor during an anchor rotation, so the bootstrap anchors alone
   * would stop verifying it.
   */
  certify(csrPem: string, bundle: readonly string[] | undefined): Promise<CertifyResponse>;
}

/** What TLS needs, swapped as one value on renewal. */
export interface TlsMaterial {
  readonly identity: string;
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
  readonly bundlePems: readonly string[];
  /** Subject of the issuer that signed the leaf (for status). */
  readonly issuer: string;
  /** Serial numbers of the trust anchors in the bundle (for status). */
  readonly bundleSerials: readonly string[];
  /** Server side (inbound): our leaf + chain, the bundle as client CAs. */
  readonly serverContext: SecureContext;
  /** Client side (outbound): our leaf + chain, the bundle as server CAs. */
  readonly clientContext: SecureContext;
  /** What the contexts were built from (tls.Server#setSecureContext takes options). Never logged. */
  readonly options: tls.SecureContextOptions;
}

/** The SPIFFE ID (the only URI SAN) of a certificate, or "" when it has none. */
export function spiffeIdOfCert(cert: X509Certificate | undefined): string {
  const san = cert?.subjectAltName;
  if (!san) return '';
  for (const part of san.split(', ')) if (part.startsWith('URI:spiffe://')) return part.slice(4);
  return '';
}

/**
 * When to renew: 70 % of the remaining lifetime from when the leaf arrived, minus up to 10 %
 * jitter so a fleet does not renew at once. (Counting from receipt, not notBefore: CAs backdate
 * notBefore for clock skew, which would make short leaves renew at once.)
 */
export function renewAt(receivedMs: number, notAfterMs: number, random: Random): number {
  const life = Math.max(0, notAfterMs - receivedMs);
  return receivedMs + life * (0.7 - 0.1 * random());
}

/** Jittered backoff for failed renewals: up to 0.5 s doubling to 30 s, never under 250 ms. */
export function retryDelay(failures: number, random: Random): number {
  const ceiling = Math.min(30_000, 500 * 2 ** Math.min(failures, 16));
  return 250 + random() * (ceiling - 250);
}

export function material(keys: KeyPair, r: CertifyResponse): TlsMaterial {
  const leaf = new X509Certificate(r.certificate);
  const identity = spiffeIdOfCert(leaf);
  if (!identity) throw new Error('the control plane returned a leaf without a SPIFFE ID');
  if (!leaf.checkPrivateKey(keys.privateKey)) throw new Error("the control plane returned a leaf for another key");
  const certChain = r.certificate + r.chain.join('');
  const common = { key: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }), cert: certChain, ca: r.trustBundle, minVersion: 'TLSv1.3' as const, maxVersion: 'TLSv1.3' as const };
  return Object.freeze({
    options: common,
    toJSON: () => ({ identity, notAfter: leaf.validTo, key: '[redacted]' }),
    identity,
    notBeforeMs: Date.parse(leaf.validFrom),
    notAfterMs: Date.parse(leaf.validTo),
    bundlePems: Object.freeze([...r.trustBundle]),
    issuer: leaf.issuer.replace(/\n/g, ', '),
    bundleSerials: Object.freeze(r.trustBundle.map((p) => new X509Certificate(p).serialNumber.toLowerCase())),
    serverContext: tls.createSecureContext(common),
    clientContext: tls.createSecureContext(common),
  });
}

export interface IdentityEvents {
  renewed(m: TlsMaterial): void;
  failed(err: Error, failures: number): void;
}

export class IdentityManager {
  readonly #transport: CertifyTransport;
  readonly #clock: WallClock;
  readonly #random: Random;
  readonly #events: Partial<IdentityEvents>;
  #current: TlsMaterial | undefined;
  #lastError: string | undefined;
  #failures = 0;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #waiting: Array<() => void> | undefined;

  constructor(transport: CertifyTransport, clock: WallClock, random: Random, events: Partial<IdentityEvents> = {}) {
    this.#transport = transport;
    this.#clock = clock;
    this.#random = random;
    this.#events = events;
  }

  get current(): TlsMaterial | undefined {
    const c = this.#current;
    return c && c.notAfterMs > this.#clock.nowMs() ? c : undefined;
  }

  /** Reasons the identity is not ready, for /ready. */
  notReady(): string[] {
    const now = this.#clock.nowMs();
    if (!this.#current) return [`no certificate yet${this.#lastError ? `: ${this.#lastError}` : ''}`];
    if (this.#current.notAfterMs <= now) return [`certificate expired${this.#lastError ? `; renewal failing: ${this.#lastError}` : ''}`];
    return [];
  }

  /** Detail for /ready even when ready (a renewal failing while the leaf is still valid). */
  detail(): { identity: string | null; notAfter: string | null; issuer: string | null; bundleSerials: readonly string[]; renewalError: string | null } {
    const c = this.#current;
    return { identity: c?.identity ?? null, notAfter: c ? new Date(c.notAfterMs).toISOString() : null, issuer: c?.issuer ?? null, bundleSerials: c?.bundleSerials ?? [], renewalError: this.#lastError ?? null };
  }

  /** Get the first leaf (retrying with backoff until stopped), then keep renewing. */
  start(): Promise<void> {
    return new Promise((resolve) => {
      const first = () => {
        if (this.#current) resolve();
      };
      void this.#renew(first);
    });
  }

  /** Run `fn` once the first certificate is in hand (at once if it already is). */
  onFirst(fn: () => void): void {
    if (this.#current) fn();
    else (this.#waiting ??= []).push(fn);
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  async #renew(onSuccess: () => void): Promise<void> {
    if (this.#stopped) return;
    try {
      const keys = newKeyPair();
      const r = await this.#transport.certify(makeCsr(keys), this.current?.bundlePems);
      const m = material(keys, r);
      this.#current = m;
      this.#failures = 0;
      this.#lastError = undefined;
      this.#events.renewed?.(m);
      onSuccess();
      const waiting = this.#waiting;
      this.#waiting = undefined;
      if (waiting) for (const fn of waiting) fn();
      const now = this.#clock.nowMs();
      this.#schedule(renewAt(now, m.notAfterMs, this.#random) - now, onSuccess);
    } catch (err) {
      this.#failures++;
      this.#lastError = (err as Error).message;
      this.#events.failed?.(err as Error, this.#failures);
      this.#schedule(retryDelay(this.#failures, this.#random), onSuccess);
    }
  }

  #schedule(ms: number, onSuccess: () => void): void {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#renew(onSuccess), Math.max(0, Math.min(ms, 2 ** 31 - 1)));
    this.#timer.unref();
  }
}
