// The HTTPS call to the control plane's Certify endpoint: the CSR plus proof of identity (a
// projected service-account token, re-read each time as the kubelet rotates it, or a bootstrap
// token). The control plane's certificate must chain to the configured trust anchors or to the
// bundle that came with the current leaf (which follows anchor rotations).
import https from 'node:https';
import { readFile } from 'node:fs/promises';
import type { CertifyResponse, CertifyTransport } from './identity.ts';

export interface CertifyClientOptions {
  /** https://host:port of each control-plane replica, tried in turn. */
  urls: readonly string[];
  /** PEM trust anchors that the control plane's serving certificate chains to. */
  trustAnchors: string;
  /** Where the proof comes from. */
  proof: { kind: 'kubernetes'; tokenFile: string } | { kind: 'bootstrap'; token: string };
  /** The SPIFFE ID the control plane must present (host names are not what identifies it). */
  identity: string;
  timeoutMs?: number;
}

export class HttpsCertifyClient implements CertifyTransport {
  readonly #o: CertifyClientOptions;
  constructor(o: CertifyClientOptions) {
    this.#o = o;
  }

  #next = 0;

  /** Ask one replica after another (starting where the last success was) until one answers. */
  async certify(csrPem: string, bundle: readonly string[] | undefined): Promise<CertifyResponse> {
    const errors: string[] = [];
    for (let i = 0; i < this.#o.urls.length; i++) {
      const at = (this.#next + i) % this.#o.urls.length;
      try {
        const r = await this.#certifyAt(this.#o.urls[at]!, csrPem, bundle);
        this.#next = at;
        return r;
      } catch (e) {
        errors.push((e as Error).message);
      }
    }
    throw new Error(errors.join('; '));
  }

  async #certifyAt(base: string, csrPem: string, bundle: readonly string[] | undefined): Promise<CertifyResponse> {
    const o = this.#o;
    const token = o.proof.kind === 'kubernetes' ? (await readFile(o.proof.tokenFile, 'utf8')).trim() : o.proof.token;
    const body = JSON.stringify({ csr: csrPem, token, kind: o.proof.kind });
    const url = new URL('/v1/certify', base);
    return new Promise((resolve, reject) => {
      const req = https.request(
        url,
        {
          method: 'POST',
          ca: [o.trustAnchors, ...(bundle ?? [])],
          checkServerIdentity: (_host, cert) => {
            const san = cert.subjectaltname ?? '';
            return san.split(', ').includes(`URI:${o.identity}`) ? undefined : new Error(`the control plane presented ${san || 'no SAN'}, not ${o.identity}`);
          },
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, timeout: o.timeoutMs ?? 10_000, minVersion: 'TLSv1.2' },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => {
            if (res.statusCode !== 200) return reject(new Error(`certify refused (${res.statusCode}): ${text.slice(0, 300)}`));
            try {
              const r = JSON.parse(text) as CertifyResponse;
              if (typeof r.certificate !== 'string' || !Array.isArray(r.chain) || !Array.isArray(r.trustBundle)) throw new Error('missing certificate, chain or trustBundle');
              resolve(r);
            } catch (err) {
              reject(new Error(`certify answered nonsense: ${(err as Error).message}`));
            }
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`certify timed out after ${o.timeoutMs ?? 10_000} ms`)));
      req.on('error', (err) => reject(new Error(`certify failed: ${err.message}`)));
      req.end(body);
    });
  }
}
