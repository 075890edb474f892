// Route stage, first after the listener picked a service: which of its routes handles this request.
// Guarantees: routes are tried in order and the first whose every condition holds wins.
import type { HeaderMatch, Route, RouteMatch } from '../../api/proxy-config.ts';
import { listHas } from '../http1/field-list.ts';

/** Request fields by lower-case name; repeated fields joined with ", " or given as an array. */
export interface HeaderLookup {
  get(lower: string): string | readonly string[] | undefined;
}

export interface RequestHead {
  method: string;
  /** Request-target path WITHOUT query (see pathOf). */
  path: string;
  /** The request's fields (http1/head.ts Fields): looked up only when a route matches on headers. */
  headers: HeaderLookup;
}

/** A service's routes as the proxy tries them: absent, one catch-all route named `default`. */
export function routesOf(svc: { readonly routes?: readonly Route[] | undefined }): readonly Route[] {
  return svc.routes ?? DEFAULT_ROUTES;
}
const DEFAULT_ROUTES: readonly Route[] = Object.freeze([Object.freeze({ name: 'default' })]);

/** The first route whose match holds; a route without a match (or with an empty one) matches everything. */
export function matchRoute<R extends { match?: RouteMatch }>(routes: readonly R[], req: RequestHead): R | undefined {
  for (const route of routes) if (route.match === undefined || matches(route.match, req)) return route;
  return undefined;
}

/** Every condition present in m holds for req (AND). */
export function matches(m: RouteMatch, req: RequestHead): boolean {
  if (m.method !== undefined && m.method !== req.method) return false;
  const p = m.path;
  if (p !== undefined) {
    if ('exact' in p ? p.exact !== req.path : !prefixMatches(p.prefix, req.path)) return false;
  }
  if (m.headers !== undefined) for (const h of m.headers) if (!headerMatches(h, req.headers)) return false;
  return true;
}

/**
 * Gateway API PathPrefix: whole segments only. `/api` (or `/api/`) matches `/api`, `/api/`,
 * `/api/x`, not `/apix`; `/` matches every request target, `*` included.
 */
function prefixMatches(prefix: string, path: string): boolean {
  let n = prefix.length;
  while (n > 0 && prefix.charCodeAt(n - 1) === 47 /* / */) n--;
  if (n === 0) return true;
  if (path.length < n) return false;
  if (!path.startsWith(n === prefix.length ? prefix : prefix.slice(0, n))) return false;
  return path.length === n || path.charCodeAt(n) === 47;
}

/**
 * The header is present (and, when a value is given, one of its values equals it exactly).
 * Repeated headers come joined into one string with ", ", so a string value also matches when
 * any comma-separated element equals the wanted value; arrays match when any element does.
 */
function headerMatches(h: HeaderMatch, headers: HeaderLookup): boolean {
  const v = headers.get(h.name.toLowerCase());
  if (typeof v === 'string') return h.value === undefined || v === h.value || listHas(v, h.value);
  if (Array.isArray(v)) {
    if (h.value === undefined) return true;
    for (const e of v) if (e === h.value || listHas(e, h.value)) return true;
  }
  return false;
}


/**
 * The path of a request target, without query or fragment: `/a?b` -> `/a`,
 * `http://host:port/a?b` -> `/a`, `http://host?x` -> `/`, `*` -> `*`. An authority-form target
 * (CONNECT `host:443`) has no path: ''.
 */
export function pathOf(target: string): string {
  if (target.charCodeAt(0) === 47 /* / */) return cut(target, 0);
  if (target === '*') return '*';
  const scheme = target.indexOf('://');
  if (scheme === -1) return '';
  const authority = scheme + 3;
  for (let i = authority; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c === 47) return cut(target, i);
    if (c === 63 /* ? */ || c === 35 /* # */) break;
  }
  return '/';
}

/** target from `from` up to the first `?` or `#`. */
function cut(target: string, from: number): string {
  let end = from;
  while (end < target.length) {
    const c = target.charCodeAt(end);
    if (c === 63 || c === 35) break;
    end++;
  }
  return from === 0 && end === target.length ? target : target.slice(from, end);
}
