// Inbound authorization decision, pure: which peer identity may use which method on which path
// of a port. A request is allowed when any rule of a policy guarding the port allows it;
// where no policy guards the port, the default decides (the mesh's, or the Pod's own: inbound/authorize.ts).
import type { AuthorizationPolicyConfig, AuthorizationRule, ProxyConfig } from '../../api/proxy-config.ts';
import type { DefaultInboundPolicy } from '../../api/default-inbound-policy.ts';

export interface AuthzRequest {
  port: number;
  /** SPIFFE ID of the mTLS peer; "" when plaintext. */
  identity: string;
  method: string;
  path: string;
}

export type AuthzDecision = { allowed: true; policy: string } | { allowed: false; policy: string; reason: string };

function identityMatches(pattern: string, id: string): boolean {
  if (id === '') return false;
  if (pattern === '*') return true;
  if (pattern.endsWith('/sa/*')) return id.startsWith(pattern.slice(0, -1));
  return pattern === id;
}

function pathMatches(pattern: string, path: string): boolean {
  return pattern.endsWith('*') ? path.startsWith(pattern.slice(0, -1)) : pattern === path;
}

/** RFC 3986 §5.2.4: `.` and `..` segments removed (`..` never climbs above the root). */
function removeDotSegments(path: string): string {
  const out: string[] = [];
  const segments = path.split('/').slice(1);
  segments.forEach((seg, i) => {
    const last = i === segments.length - 1;
    if (seg === '..') out.pop();
    if (seg === '.' || seg === '..') {
      if (last) out.push('');
    } else out.push(seg);
  });
  return `/${out.join('/')}`;
}

/**
 * Every form of a request path an app may act on: as sent, and as resolved: percent-encoded dots,
 * slashes and backslashes decoded, backslashes read as slashes (WHATWG URL does both), dot segments
 * removed, with and without repeated slashes merged first (nginx merges them). A path rule must allow
 * every form, so `/api/../admin` or `/api/%2e%2e/admin` is not let in by an `/api/*` rule.
 */
export function pathForms(path: string): string[] {
  if (!/[.%\\]/.test(path)) return [path];
  const decoded = path.replace(/%2e/gi, '.').replace(/%2f/gi, '/').replace(/%5c/gi, '/').replace(/\\/g, '/');
  return [...new Set([path, removeDotSegments(decoded), removeDotSegments(decoded.replace(/\/{2,}/g, '/'))])];
}

/** `forms`: the path's pathForms(), when the caller has them (worked out here otherwise, and only for a rule with paths). */
export function ruleAllows(rule: AuthorizationRule, req: AuthzRequest, forms?: readonly string[]): boolean {
  if (!rule.identities.some((p) => identityMatches(p, req.identity))) return false;
  if (rule.methods && !rule.methods.includes(req.method as never)) return false;
  const paths = rule.paths;
  if (paths && !(forms ?? pathForms(req.path)).every((f) => paths.some((p) => pathMatches(p, f)))) return false;
  return true;
}

/**
 * Where no policy guards the port: the mesh's default (the config's inbound.defaultPolicy) or the
 * Pod's own (MESHLET_DEFAULT_INBOUND_POLICY); `all` and `all-unauthenticated` allow any peer alike.
 */
export type DefaultAuthz = NonNullable<NonNullable<ProxyConfig['inbound']>['defaultPolicy']> | DefaultInboundPolicy;

export function authorize(policies: readonly AuthorizationPolicyConfig[], defaultPolicy: DefaultAuthz, req: AuthzRequest): AuthzDecision {
  let guarded = false;
  let names = '';
  // Worked out once, at the first rule with paths: most requests meet none (no policy, or identity-only rules).
  let forms: readonly string[] | undefined;
  for (const p of policies) {
    if (p.port !== undefined && p.port !== req.port) continue;
    guarded = true;
    names = names ? `${names},${p.name}` : p.name;
    for (const r of p.rules) {
      if (r.paths) forms ??= pathForms(req.path);
      if (ruleAllows(r, req, forms)) return { allowed: true, policy: p.name };
    }
  }
  const resolved = forms !== undefined && forms.length > 1 ? ` (resolved: ${forms.slice(1).join(', ')})` : '';
  if (guarded) {
    // A plaintext peer has no identity, and every rule names identities: a guarded port is mTLS-only, whatever the default.
    const who = req.identity || 'an unauthenticated (plaintext) peer';
    const plain = req.identity === '' ? ': a policy names identities, so it allows only meshed (mTLS) clients' : '';
    return { allowed: false, policy: names, reason: `no rule of ${names} allows ${who} to ${req.method} ${req.path}${resolved}${plain}` };
  }
  if (defaultPolicy === 'all' || defaultPolicy === 'all-unauthenticated') return { allowed: true, policy: `default:${defaultPolicy}` };
  if (defaultPolicy === 'all-authenticated' && req.identity !== '') return { allowed: true, policy: 'default:all-authenticated' };
  return { allowed: false, policy: `default:${defaultPolicy}`, reason: defaultPolicy === 'deny' ? 'the default policy (deny) denies requests no policy allows' : 'the default policy (all-authenticated) allows only authenticated (mTLS) peers' };
}
