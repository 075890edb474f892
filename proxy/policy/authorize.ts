// Inbound authorization decision, pure: which peer identity may use which method on which path
// of a port. A request is allowed when any rule of a policy guarding the port allows it;
// where no policy guards the port, the mesh-wide default decides.
import type { AuthorizationPolicyConfig, AuthorizationRule } from '../../api/proxy-config.ts';

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

export function ruleAllows(rule: AuthorizationRule, req: AuthzRequest): boolean {
  if (!rule.identities.some((p) => identityMatches(p, req.identity))) return false;
  if (rule.methods && !rule.methods.includes(req.method as never)) return false;
  if (rule.paths && !rule.paths.some((p) => pathMatches(p, req.path))) return false;
  return true;
}

export function authorize(policies: readonly AuthorizationPolicyConfig[], defaultPolicy: 'all-authenticated' | 'all' | 'deny', req: AuthzRequest): AuthzDecision {
  let guarded = false;
  let names = '';
  for (const p of policies) {
    if (p.port !== undefined && p.port !== req.port) continue;
    guarded = true;
    names = names ? `${names},${p.name}` : p.name;
    for (const r of p.rules) if (ruleAllows(r, req)) return { allowed: true, policy: p.name };
  }
  if (guarded) return { allowed: false, policy: names, reason: `no rule of ${names} allows ${req.identity || 'an unauthenticated peer'} to ${req.method} ${req.path}` };
  if (defaultPolicy === 'all') return { allowed: true, policy: 'default:all' };
  if (defaultPolicy === 'all-authenticated' && req.identity !== '') return { allowed: true, policy: 'default:all-authenticated' };
  return { allowed: false, policy: `default:${defaultPolicy}`, reason: defaultPolicy === 'deny' ? 'the mesh default denies requests no policy allows' : 'the mesh default allows only authenticated (mTLS) peers' };
}
