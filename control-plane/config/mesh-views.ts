// The glue between a source's model and the push: holds the model in force (prepared once per
// change), answers each proxy's view with a content-derived version, and keeps the problems the
// translation found for status, with the CA's trust bundle. A proxy's version changes exactly when its view does.
import type { MeshModel } from './model.ts';
import { encodeLabels } from '../../api/pod-labels.ts';
import { configHash, prepare, servedServices, viewOf, modelProblems, type PreparedModel, type ProxyInfo as ViewProxy, type TranslateProblem } from './translate.ts';
import type { ProxyInfo as StreamProxy, View, ViewProvider } from './push-server.ts';

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
   * Views by (identity, effective served services: claimed and selected by its labels): the view
   * does not depend on the workload, pod name or the labels themselves, so every proxy of one
   * service account serving the same services shares one computation, one version and one
   * serialization (replicas of a Deployment, whose Pods differ in pod-template-hash, included).
   */
  #cache = new Map<string, View>();
  /**
   * Effective served sets by (namespace, claimed services, labels): replicas of one ReplicaSet have
   * equal labels, so each push matches the namespace's selectors once per label set, not per proxy.
   */
  #served = new Map<string, string[]>();
  /** Put a new model in force; returns the problems the translation found in it. */
  set(model: MeshModel): TranslateProblem[] {
    this.#model = model;
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
    this.#served.clear();
    return this.#problems;
  }

  get problems(): TranslateProblem[] {
    return this.#problems;
  }

  view(p: StreamProxy): View {
    // Before the source's first model (the Kubernetes source lists every kind first) there is no
    // view: an empty one would wipe a resuming proxy's config, and start a new one with no services
    // and no policies. Both wait; the first model is pushed to every stream.
    if (!this.#prepared) return { pending: 'the config source has not listed yet: the proxy keeps the config it runs, or waits for its first' };
    const who = identityParts(p.identity);
    if (!who) return { error: `not a workload identity: ${p.identity}` };
    // The namespace comes from the certificate, never from what the proxy says about itself: its
    // labels select Services of that namespace only.
    const servedKey = `${who.namespace}\u0000${p.services.join(',')}\u0000${p.labels ? encodeLabels(p.labels) : '-'}`;
    let served = this.#served.get(servedKey);
    if (!served) {
      served = servedServices(this.#prepared, { namespace: who.namespace, services: p.services, labels: p.labels });
      // Bounded: hellos of proxies gone since the last model change stay until the next one.
      if (this.#served.size >= 10_000) this.#served.clear();
      this.#served.set(servedKey, served);
    }
    const key = `${p.identity}\u0000${served.join(',')}\u0000${p.namespaces?.join(',') ?? '*'}`;
    let v = this.#cache.get(key);
    if (!v) {
      v = this.#compute(this.#prepared, p.identity, who, served, p.namespaces);
      this.#cache.set(key, v);
    }
    return v;
  }

  #compute(prepared: PreparedModel, identity: string, who: { namespace: string; serviceAccount: string }, served: readonly string[], namespaces: readonly string[] | undefined): View {
    // The view is shared by every workload of the identity (see #cache): problems name the account.
    // `served` is already the effective set (canonical names), so no labels are passed on.
    const proxy: ViewProxy = { namespace: who.namespace, serviceAccount: who.serviceAccount, identity, workload: who.serviceAccount, services: served };
    // Narrowed (config.meshlet.io/outbound-namespaces): its own namespace and those it asked for.
    const wanted = namespaces === undefined ? undefined : new Set([who.namespace, ...namespaces]);
    const v = viewOf(prepared, proxy, 'pending', wanted ? { visible: (svc) => wanted.has(svc.namespace) } : {});
    if (!v.config) return { error: v.problems.map((x) => `${x.object} ${x.path}: ${x.message}`).join('; ') || 'no valid view' };
    const version = `h-${configHash(v.config).slice(0, 16)}`;
    return { version, config: { ...v.config, version } };
  }
}
