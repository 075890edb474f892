// The glue between a source's model and the push: holds the model in force (prepared once per
// change), answers each proxy's view with a content-derived version, and keeps the problems the
// translation found for status, with the CA's trust bundle. A proxy's version changes exactly when its view does.
import type { ProxyConfig } from '../../api/proxy-config.ts';
import type { MeshModel } from './model.ts';
import { configHash, prepare, viewOf, modelProblems, type PreparedModel, type ProxyInfo as ViewProxy, type TranslateProblem } from './translate.ts';
import type { ProxyInfo as StreamProxy, ViewProvider } from './push-server.ts';

/** The namespace and service account named by a SPIFFE ID (spiffe://td/ns/N/sa/S). */
export function identityParts(id: string): { namespace: string; serviceAccount: string } | undefined {
  const m = /^spiffe:\/\/[^/]+\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(id);
  return m ? { namespace: m[1]!, serviceAccount: m[2]! } : undefined;
}

export class MeshViews implements ViewProvider {
  #model: MeshModel | undefined;
  /**
   * The CA's trust bundle, which replaces the model's: it comes from the CA, not from the config
   * source, and is set here the moment a CA state is put in force, so no view goes out without it.
   */
  #trustBundle: readonly string[] | undefined;
  #prepared: PreparedModel | undefined;
  #problems: TranslateProblem[] = [];
  /**
   * Views by (identity, served services): the view does not depend on the workload or pod name,
   * so every proxy of one service account serving the same services shares one computation,
   * one version and one serialization.
   */
  #cache = new Map<string, { version: string; config: ProxyConfig } | { error: string }>();
  /** The model in force is a stand-in until the source's first sync: given only to proxies that run nothing yet. */
  #provisional = false;

  /**
   * Put a new model in force; returns the problems the translation found in it. `provisional`:
   * not the source's yet (the Kubernetes source has not listed). A proxy that already runs a
   * config (one that resumes after a control-plane restart) keeps it rather than get this one.
   */
  set(model: MeshModel, o: { provisional?: boolean } = {}): TranslateProblem[] {
    this.#model = model;
    this.#provisional = o.provisional ?? false;
    return this.#prepare();
  }

  /** The trust bundle every view carries from now on (a CA load or rotation); false when it is the one in force. */
  setTrustBundle(pems: readonly string[]): boolean {
    if (this.#trustBundle && this.#trustBundle.join('') === pems.join('')) return false;
    this.#trustBundle = [...pems];
    if (this.#model) this.#prepare();
    return true;
  }

  #prepare(): TranslateProblem[] {
    const model = this.#model!;
    this.#prepared = prepare(this.#trustBundle ? { ...model, trustBundle: this.#trustBundle } : model);
    this.#problems = modelProblems(this.#prepared);
    this.#cache.clear();
    return this.#problems;
  }

  get problems(): TranslateProblem[] {
    return this.#problems;
  }

  view(p: StreamProxy): { version: string; config: ProxyConfig } | { error: string } {
    if (this.#provisional && p.version !== '') return { error: 'the config source has not synced yet; the proxy keeps the config it runs' };
    const key = `${p.identity}\u0000${p.services.join(',')}`;
    let v = this.#cache.get(key);
    if (!v) {
      v = this.#compute(p);
      this.#cache.set(key, v);
    }
    return v;
  }

  #compute(p: StreamProxy): { version: string; config: ProxyConfig } | { error: string } {
    if (!this.#prepared) return { error: 'no model yet' };
    const who = identityParts(p.identity);
    if (!who) return { error: `not a workload identity: ${p.identity}` };
    // The namespace comes from the certificate, never from what the proxy says about itself. The
    // view is shared by every workload of the identity (see #cache): problems name the account.
    const proxy: ViewProxy = { namespace: who.namespace, serviceAccount: who.serviceAccount, identity: p.identity, workload: who.serviceAccount, services: p.services };
    const v = viewOf(this.#prepared, proxy, 'pending');
    if (!v.config) return { error: v.problems.map((x) => `${x.object} ${x.path}: ${x.message}`).join('; ') || 'no valid view' };
    const version = `h-${configHash(v.config).slice(0, 16)}`;
    return { version, config: { ...v.config, version } };
  }
}
