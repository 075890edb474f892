// Differential fuzz of proxy/http1/head.ts against Node's own parser (llhttp, strict mode): a few
// thousand seeded mutations of real requests. Wherever meshlet accepts a head, llhttp must accept
// it too and read the same method, target, Host and body framing; meshlet may refuse more (it is
// stricter on purpose), never less. Bounded: a fixed corpus, one connection per case.
import t from 'tap';
import http from 'node:http';
import net from 'node:net';
import { seededRandom } from '../../api/runtime.ts';
import { parseRequestHead, type RequestHead } from '../../proxy/http1/head.ts';

const BASES = [
  'GET /a?b=1 HTTP/1.1\r\nHost: api\r\nAccept: */*\r\n\r\n',
  'POST /upload HTTP/1.1\r\nHost: api:8080\r\nContent-Length: 5\r\n\r\nhello',
  'PUT /x HTTP/1.1\r\nHost: api\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
  'DELETE /y HTTP/1.0\r\nConnection: keep-alive\r\n\r\n',
  'GET http://api/abs HTTP/1.1\r\nHost: api\r\nX-Trace: 1\r\n\r\n',
];

/** Pieces a mutation inserts: the bytes smuggling attacks are made of. */
const PIECES = [' ', '\t', '\r', '\n', '\r\n', ':', ',', '\0', '\x7f', '\xff', 'chunked', 'Transfer-Encoding: chunked\r\n', 'Content-Length: 3\r\n', 'Content-Length: 5\r\n', 'Host: other\r\n', ' chunked', 'identity, ', '0', '+', 'x', '\r\n ', 'HTTP/1.1', '/'];

function mutate(base: string, random: () => number): string {
  const headEnd = base.indexOf('\r\n\r\n');
  let s = base;
  const n = 1 + Math.floor(random() * 3);
  for (let i = 0; i < n; i++) {
    const at = Math.floor(random() * (headEnd + 2));
    const r = random();
    if (r < 0.45) s = s.slice(0, at) + PIECES[Math.floor(random() * PIECES.length)] + s.slice(at);
    else if (r < 0.7) s = s.slice(0, at) + s.slice(at + 1);
    else if (r < 0.85) s = s.slice(0, at) + s.charAt(at).toUpperCase() + s.slice(at + 1);
    else s = s.slice(0, at) + PIECES[Math.floor(random() * PIECES.length)] + s.slice(at + 1);
  }
  return s;
}

interface NodeView {
  ok: boolean;
  method?: string;
  url?: string;
  host?: string;
  framing?: string;
}

/** What Node's server made of the bytes: its 400, or what it read. */
function nodeParse(port: number, bytes: string): Promise<NodeView> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let out = '';
    const done = () => {
      const body = out.slice(out.indexOf('\r\n\r\n') + 4);
      if (out.startsWith('HTTP/1.1 200 ')) {
        try {
          resolve({ ok: true, ...(JSON.parse(body) as Omit<NodeView, 'ok'>) });
          return;
        } catch {
          // fall through: an unreadable answer counts as a refusal
        }
      }
      resolve({ ok: false });
    };
    s.setTimeout(1000, () => s.destroy());
    s.on('data', (c: Buffer) => {
      out += c.toString('latin1');
      // The first response is all we want (Node may go on to parse pipelined leftovers).
      const end = out.indexOf('\r\n\r\n');
      const len = /content-length: (\d+)/i.exec(out);
      if (end !== -1 && len && out.length >= end + 4 + Number(len[1])) s.destroy();
    });
    s.on('close', done);
    s.on('error', () => {});
    s.end(bytes, 'latin1');
  });
}

function framingOf(h: RequestHead): string {
  return h.framing.kind === 'length' ? `length:${h.framing.length}` : h.framing.kind;
}

t.test('wherever meshlet accepts a request head, Node reads it the same way', async (t) => {
  const server = http.createServer((req, res) => {
    const te = req.headers['transfer-encoding'];
    const cl = req.headers['content-length'];
    const framing = te !== undefined ? 'chunked' : cl !== undefined && cl !== '0' ? `length:${cl}` : 'none';
    req.resume();
    const body = JSON.stringify({ method: req.method, url: req.url, host: req.headers.host ?? '', framing });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), connection: 'close' });
    res.end(body);
  });
  server.on('clientError', (_e, socket: net.Socket) => socket.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const port = (server.address() as net.AddressInfo).port;

  const random = seededRandom(2026);
  let accepted = 0;
  let stricter = 0;
  const disagreements: string[] = [];
  const stricterSamples: string[] = [];
  const CASES = 2000;
  for (let i = 0; i < CASES; i++) {
    const bytes = mutate(BASES[i % BASES.length]!, random);
    const end = bytes.indexOf('\r\n\r\n');
    if (end === -1) continue;
    let ours: RequestHead | undefined;
    try {
      // As the server hands it over: leading empty lines dropped, the head without its final CRLF CRLF.
      let start = 0;
      while (bytes.startsWith('\r\n', start)) start += 2;
      ours = parseRequestHead(bytes.slice(start, end));
    } catch {
      ours = undefined;
    }
    if (ours && !http.METHODS.includes(ours.method)) continue; // llhttp knows only registered methods; meshlet forwards any token
    // Node is sent the message as meshlet would delimit it (what follows would be a next request for both).
    const head = bytes.slice(0, end + 4);
    const f = ours?.framing;
    const message = !f || f.kind === 'none' ? head : f.kind === 'length' ? head + 'x'.repeat(f.length) : head + '0\r\n\r\n';
    const theirs = await nodeParse(port, message);
    if (!ours) {
      if (theirs.ok) {
        stricter++;
        if (stricterSamples.length < 5) stricterSamples.push(JSON.stringify(bytes.slice(0, end)));
      }
      continue;
    }
    accepted++;
    const mine = { method: ours.method, url: ours.target, host: ours.host, framing: framingOf(ours) };
    if (!theirs.ok || theirs.method !== mine.method || theirs.url !== mine.url || theirs.host !== mine.host || theirs.framing !== mine.framing) {
      disagreements.push(`${JSON.stringify(bytes)}: meshlet ${JSON.stringify(mine)}, node ${JSON.stringify(theirs)}`);
    }
  }
  t.ok(accepted > 300, `meshlet accepted ${accepted} mutated heads (enough to mean something)`);
  t.same(disagreements.slice(0, 10), [], `no head meshlet accepts is read differently or refused by llhttp (${disagreements.length} of ${accepted})`);
  t.comment(`meshlet refused ${stricter} heads llhttp accepted, e.g. ${stricterSamples.join(' | ')}`);
});
