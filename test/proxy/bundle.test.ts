// What the proxy bundle loads at start. Node's HTTP client and server machinery, pulled in by a
// static `import ... from 'node:http'` (its ESM facade reads every export), costs a proxy
// 3-14 MB of RSS before it serves a request (README "Memory"): the proxy speaks HTTP/1.1 through
// its own engine and takes node:http lazily where it needs it (proxy/admin.ts).
import t from 'tap';
import { readFileSync } from 'node:fs';
import { PROXY_MAIN } from '../../proxy/launch.ts';

t.test('the proxy bundle imports no HTTP machinery of Node at start', async (t) => {
  const text = readFileSync(PROXY_MAIN, 'utf8');
  const staticImports = [...text.matchAll(/^import\b[^;]*?from "([^"]+)";$/gm)].map((m) => m[1]!);
  t.ok(staticImports.length > 5, `the bundle's static imports were found (${staticImports.join(', ')})`);
  for (const heavy of ['node:http', 'node:http2', 'node:zlib', 'undici']) {
    t.notOk(staticImports.includes(heavy), `no static import of ${heavy} (use process.getBuiltinModule where it is needed, and measure RSS)`);
  }
});
