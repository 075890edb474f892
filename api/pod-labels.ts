// A Pod's labels as the proxy reports them to the control plane: read from the downward-API file
// the injector mounts, checked against Kubernetes' label syntax, bounded, and sent in the stream's
// hello. Both sides run the same checks, so a proxy never sends what the control plane refuses.

/** At most this many labels (Kubernetes sets no count; a Pod with more is refused, never truncated). */
export const MAX_POD_LABELS = 64;
/** At most this many bytes on the wire (`k=v,k=v`): the hello is a request line, under Node's 16 KiB head limit. */
export const MAX_POD_LABELS_BYTES = 8192;

export type PodLabels = Readonly<Record<string, string>>;
export type LabelsResult = { ok: true; labels: PodLabels } | { ok: false; problem: string };

// Kubernetes' label syntax (apimachinery validation.IsQualifiedName / IsValidLabelValue): a name of
// 1-63 alphanumerics with `-_.` inside, an optional DNS-subdomain prefix (`app.kubernetes.io/`);
// a value of 0-63 of the same. Neither can hold `=`, `,` or `"`, so `k=v,k=v` is unambiguous.
const NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const PREFIX = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function isLabelKey(key: string): boolean {
  const slash = key.indexOf('/');
  if (slash === -1) return NAME.test(key);
  const prefix = key.slice(0, slash);
  return prefix.length <= 253 && PREFIX.test(prefix) && NAME.test(key.slice(slash + 1));
}

export function isLabelValue(value: string): boolean {
  return value === '' || NAME.test(value);
}

/** `labels` checked: syntax, count and wire size. */
export function checkLabels(labels: Readonly<Record<string, string>>): LabelsResult {
  const keys = Object.keys(labels);
  if (keys.length > MAX_POD_LABELS) return { ok: false, problem: `${keys.length} labels: at most ${MAX_POD_LABELS}` };
  for (const k of keys) {
    if (!isLabelKey(k)) return { ok: false, problem: `"${k.slice(0, 100)}" is not a label key` };
    if (!isLabelValue(labels[k]!)) return { ok: false, problem: `label ${k}: "${labels[k]!.slice(0, 100)}" is not a label value` };
  }
  const bytes = encodeLabels(labels).length;
  if (bytes > MAX_POD_LABELS_BYTES) return { ok: false, problem: `${bytes} bytes of labels: at most ${MAX_POD_LABELS_BYTES}` };
  return { ok: true, labels: Object.freeze(Object.fromEntries(keys.toSorted().map((k) => [k, labels[k]!]))) };
}

/**
 * The kubelet's downward-API file of `metadata.labels`: one `key="value"` a line, the value quoted
 * as Go's %q quotes it (label values need no escapes, so a backslash is malformed here).
 */
export function parseDownwardLabels(text: string): LabelsResult {
  // No prototype: a `__proto__` line must reach the syntax check, not set the object's prototype.
  const labels: Record<string, string> = Object.create(null) as Record<string, string>;
  const lines = text.split('\n');
  for (const [i, line] of lines.entries()) {
    if (line === '') continue;
    const m = /^([^=]+)="([^"\\]*)"$/.exec(line);
    if (!m) return { ok: false, problem: `line ${i + 1}: expected key="value", got ${JSON.stringify(line.slice(0, 100))}` };
    if (Object.hasOwn(labels, m[1]!)) return { ok: false, problem: `line ${i + 1}: label ${m[1]} is listed twice` };
    labels[m[1]!] = m[2]!;
  }
  return checkLabels(labels);
}

/** `k=v,k=v` in key order (what the hello carries). */
export function encodeLabels(labels: Readonly<Record<string, string>>): string {
  return Object.keys(labels)
    .toSorted()
    .map((k) => `${k}=${labels[k]}`)
    .join(',');
}

/** The hello's `labels` back to a map: every pair checked as the proxy checked it. */
export function decodeLabels(text: string): LabelsResult {
  if (text.length > MAX_POD_LABELS_BYTES) return { ok: false, problem: `${text.length} bytes of labels: at most ${MAX_POD_LABELS_BYTES}` };
  const labels: Record<string, string> = Object.create(null) as Record<string, string>;
  if (text === '') return checkLabels(labels);
  for (const pair of text.split(',')) {
    const eq = pair.indexOf('=');
    if (eq === -1) return { ok: false, problem: `"${pair.slice(0, 100)}" is not key=value` };
    const k = pair.slice(0, eq);
    if (Object.hasOwn(labels, k)) return { ok: false, problem: `label ${k.slice(0, 100)} is listed twice` };
    labels[k] = pair.slice(eq + 1);
  }
  return checkLabels(labels);
}

/**
 * A Service selector matches a Pod when it is non-empty and every pair of it is one of the Pod's
 * labels (Kubernetes: a Service without a selector selects nothing; its endpoints are managed by hand).
 */
export function selects(selector: Readonly<Record<string, string>> | undefined, labels: PodLabels | undefined): boolean {
  if (!selector || !labels) return false;
  const keys = Object.keys(selector);
  return keys.length > 0 && keys.every((k) => Object.hasOwn(labels, k) && labels[k] === selector[k]);
}
