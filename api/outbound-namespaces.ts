// The namespaces a proxy asks to see beside its own (config.meshlet.io/outbound-namespaces, as
// Istio's Sidecar egress hosts narrow a proxy's view): the control plane gives it the services of
// those namespaces and its own, plus every split backend they route to, not the whole mesh. Both
// sides run the same checks, so a proxy never sends what the control plane refuses.

/** At most this many (a proxy that needs more sees the whole mesh: leave it unset). */
export const MAX_OUTBOUND_NAMESPACES = 64;
/** A Kubernetes namespace name (RFC 1123 label). */
const NAMESPACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export type NamespacesResult = { ok: true; namespaces: string[] } | { ok: false; problem: string };

/** A comma list of namespace names, once each, sorted; what is wrong with it otherwise. Pure. */
export function parseOutboundNamespaces(value: string): NamespacesResult {
  const items = [...new Set(value.split(',').map((s) => s.trim()).filter((s) => s !== ''))].toSorted();
  const bad = items.find((n) => !NAMESPACE.test(n));
  if (bad !== undefined) return { ok: false, problem: `${JSON.stringify(bad)} is not a namespace name` };
  if (items.length > MAX_OUTBOUND_NAMESPACES) return { ok: false, problem: `${items.length} namespaces; at most ${MAX_OUTBOUND_NAMESPACES} (unset it to see the whole mesh)` };
  return { ok: true, namespaces: items };
}
