// A Pod's default inbound policy, as the injector hands it to the proxy (MESHLET_DEFAULT_INBOUND_POLICY,
// from config.meshlet.io/default-inbound-policy or the cluster's default). One list, so the injector never
// writes a value the proxy would refuse at start.

/**
 * What a Pod's proxy does with a request where no AuthorizationPolicy guards the port (Linkerd's
 * config.linkerd.io/default-inbound-policy, without the cluster-* values: meshlet has one cluster):
 * - all-unauthenticated: every app port also takes plaintext, and any peer is allowed (meshed or not);
 * - all-authenticated: mTLS peers only (meshlet's default);
 * - deny: no request that no policy allows.
 * Where policies guard a port, they decide whatever this says.
 */
export const DEFAULT_INBOUND_POLICIES = ['all-unauthenticated', 'all-authenticated', 'deny'] as const;
export type DefaultInboundPolicy = (typeof DEFAULT_INBOUND_POLICIES)[number];

export const isDefaultInboundPolicy = (v: string): v is DefaultInboundPolicy => (DEFAULT_INBOUND_POLICIES as readonly string[]).includes(v);

/**
 * The variable (or flag) `what` into a policy; unset or empty: undefined. Throws, naming `what` and
 * the values it takes, on anything else. Pure.
 */
export function parseDefaultInboundPolicy(value: string | undefined, what: string): DefaultInboundPolicy | undefined {
  const v = value?.trim() ?? '';
  if (v === '') return undefined;
  if (isDefaultInboundPolicy(v)) return v;
  throw new Error(`${what}: ${JSON.stringify(v)} is not a default inbound policy; want one of ${DEFAULT_INBOUND_POLICIES.join(', ')}`);
}
