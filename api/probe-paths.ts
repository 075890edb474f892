// The paths the kubelet probes over HTTP, by app port, as the injector hands them to the proxy
// (MESHLET_PROBE_PATHS, JSON `{"8080": ["/healthz", "/ready"]}`). Both sides run the same checks,
// so the injector never writes what the proxy would refuse at start (a sidecar that never starts).

/** App port → the paths (without query) its httpGet probes ask for. */
export type ProbePaths = ReadonlyMap<number, ReadonlySet<string>>;

export const NO_PROBES: ProbePaths = new Map();

/** Bounds: a container has at most 3 probes; these leave room and stop nonsense. */
export const MAX_PROBE_PATHS = 64;
export const MAX_PROBE_PATH_LENGTH = 1024;

/** A probe path as the proxy compares it to a request's path: the part before `?`, with a leading `/` (the kubelet adds one). */
export function probePathOf(path: string): string {
  const q = path.indexOf('?');
  const p = q < 0 ? path : path.slice(0, q);
  return p.startsWith('/') ? p : `/${p}`;
}

/** Bytes Go's url package leaves as they are in a path (url.shouldEscape false in encodePath mode). */
const isGoPathByte = (b: number): boolean =>
  (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || '-_.~$&+,/:;=@'.includes(String.fromCharCode(b));
/** A path Go takes as already escaped (url.validEncoded): these characters, `%` included, and nothing else. */
const GO_VALID_ENCODED = /^[A-Za-z0-9\-_.~!$&'()*+,;=:@[\]%/]*$/;

/** Go's url.escape(s, encodePath) of these bytes. */
function goEscape(bytes: Uint8Array): string {
  let out = '';
  for (const b of bytes) out += isGoPathByte(b) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

/** %XX sequences into bytes, as Go's url.unescape; undefined for a stray `%` (url.Parse fails on it). */
function goUnescape(s: string): Uint8Array | undefined {
  const raw = Buffer.from(s, 'utf8');
  const out: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] !== 0x25) {
      out.push(raw[i]!);
      continue;
    }
    const hex = raw.subarray(i + 1, i + 3).toString('latin1');
    if (!/^[0-9a-fA-F]{2}$/.test(hex)) return undefined;
    out.push(parseInt(hex, 16));
    i += 2;
  }
  return Uint8Array.from(out);
}

/**
 * The path of the request the kubelet sends for an httpGet probe's `path`, as the proxy will see
 * it: the kubelet (pkg/probe/http formatURL) runs it through Go's url.Parse and sends RequestURI(),
 * so a fragment is dropped, a validly escaped path goes as written, and any other is
 * percent-encoded (`/health check` → `/health%20check`, `/über` → `/%C3%BCber`; a stray `%` or a
 * control character fails the parse, and the whole text is encoded). Pure.
 */
export function kubeletProbePath(path: string): string {
  // eslint-disable-next-line no-control-regex
  const parsed = /[\x00-\x1f\x7f]/.test(path) ? undefined : path.slice(0, path.search(/[?#]|$/));
  const decoded = parsed === undefined ? undefined : goUnescape(parsed);
  if (parsed === undefined || decoded === undefined) return probePathOf(goEscape(Buffer.from(path, 'utf8')));
  return probePathOf(GO_VALID_ENCODED.test(parsed) ? parsed : goEscape(decoded));
}

/** The variable's value for these paths (ports and paths in order), '' for none. Pure. */
export function formatProbePaths(paths: ProbePaths): string {
  if (paths.size === 0) return '';
  return JSON.stringify(Object.fromEntries([...paths].toSorted(([a], [b]) => a - b).map(([port, set]) => [String(port), [...set]])));
}

const bad = (why: string) => new Error(`MESHLET_PROBE_PATHS: ${why}; want JSON such as {"8080":["/healthz"]} (the injector writes it from the Pod's httpGet probes)`);

/**
 * MESHLET_PROBE_PATHS into app port → paths. Unset or empty: none. Throws, naming the variable, on
 * anything else: not that shape, a port that is not one of the app's (`appPorts`: the proxy serves
 * no other), a path that does not start with `/`, over 64 paths, a path over 1024 characters. Pure.
 */
export function parseProbePaths(value: string | undefined, appPorts: readonly number[]): ProbePaths {
  if (value === undefined || value.trim() === '') return NO_PROBES;
  let doc: unknown;
  try {
    doc = JSON.parse(value);
  } catch (err) {
    throw bad(`not JSON (${(err as Error).message})`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw bad('not an object of port to paths');
  const out = new Map<number, ReadonlySet<string>>();
  let count = 0;
  for (const [key, paths] of Object.entries(doc)) {
    const port = /^[1-9][0-9]{0,4}$/.test(key) ? Number(key) : NaN;
    if (!(port <= 65535)) throw bad(`"${key}" is not a TCP port`);
    if (!appPorts.includes(port)) throw bad(`port ${port} is not one of the app's ports (${appPorts.join(', ')})`);
    if (!Array.isArray(paths)) throw bad(`port ${port}: not a list of paths`);
    const set = new Set<string>();
    for (const p of paths as unknown[]) {
      if (typeof p !== 'string' || !p.startsWith('/')) throw bad(`port ${port}: ${JSON.stringify(p)} is not a path starting with /`);
      if (p.length > MAX_PROBE_PATH_LENGTH) throw bad(`port ${port}: a path of ${p.length} characters (at most ${MAX_PROBE_PATH_LENGTH})`);
      if (++count > MAX_PROBE_PATHS) throw bad(`more than ${MAX_PROBE_PATHS} paths`);
      set.add(probePathOf(p));
    }
    out.set(port, set);
  }
  return out;
}
